"""What a stage notebook sees of nbtools: its inputs, its output folder, its MLflow run.

Every stage notebook starts with::

    import nbtools
    stage = nbtools.stage_context("train", globals())

Under the runner, the inputs, output folder and MLflow run are injected after the parameters
cell. Opened in JupyterLab, the same notebook works on its own: the context finds the project from
the working directory, applies the parameters ``pipeline.yaml`` sets for the stage (exactly as a
batch run would), takes its inputs from the latest successful run, running the upstream stages
first when there is none, and writes to a scratch folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow

from nbtools.errors import PipelineSpecError
from nbtools.pipeline.spec import Pipeline, find_project, load_pipeline
from nbtools.records.notify import post_event
from nbtools.records.runs import (
    MANIFEST,
    RECORDED_VALUES,
    WARNINGS,
    latest_outputs,
    stage_warnings,
)
from nbtools.records.tracking import Tracker, is_metric_value
from nbtools.runner.dask_executor import SCHEDULER_VARIABLE, dask_joblib_backend

INTERACTIVE_DIR = Path(".nbtools") / "interactive"
#: A stage says so when it removes more than this share of the rows...
ROWS_REMOVED_LIMIT = 0.05
#: ... or changes more than this share of one column's values.
VALUES_CHANGED_LIMIT = 0.01


@dataclass
class StageContext:
    """The handle a stage notebook uses to read its inputs and record what it produced.

    Parameters
    ----------
    name : str
        The stage name.
    project_dir : Path
        The project folder (holding ``pipeline.yaml``).
    output_dir : Path
        The only folder the stage writes to.
    inputs : dict of str to Path
        Output folder of each upstream stage, by stage name.
    seed : int
        The pipeline's seed.
    model_name : str
        Name of the model in the MLflow registry.
    tracking_uri : str
        The MLflow tracking URI; the stage's MLflow run is active.
    interactive : bool
        True when the notebook runs outside the nbtools runner.
    cluster : object or None
        The ``distributed.Client`` behind joblib's Dask backend, when the stage runs on a
        Dask cluster (scikit-learn searches then fan out over its workers).
    pipeline : Pipeline or None
        The loaded pipeline, whose ``notify`` section :meth:`notify` follows.
    """

    name: str
    project_dir: Path
    output_dir: Path
    inputs: dict[str, Path] = field(default_factory=dict)
    seed: int = 42
    model_name: str = "model"
    tracking_uri: str = ""
    interactive: bool = False
    cluster: Any = field(default=None, repr=False)
    pipeline: Pipeline | None = field(default=None, repr=False)

    def input(self, upstream: str) -> Path:
        """Return the output folder of the upstream stage ``upstream``.

        Raises
        ------
        PipelineSpecError
            When ``upstream`` is not one of this stage's declared inputs.
        """
        if upstream not in self.inputs:
            declared = ", ".join(self.inputs) or "none"
            raise PipelineSpecError(
                f"Stage '{self.name}' does not read from '{upstream}'. Its inputs are: "
                f"{declared}. Add '{upstream}' to its 'inputs' in pipeline.yaml."
            )
        return self.inputs[upstream]

    def output(self, filename: str) -> Path:
        """Return the path of an output file of this stage, inside its output folder."""
        return self.output_dir / filename

    def read_json(self, upstream: str, filename: str) -> Any:
        """Read a JSON file written by an upstream stage."""
        return json.loads((self.input(upstream) / filename).read_text(encoding="utf-8"))

    def write_json(self, filename: str, obj: Any) -> Path:
        """Write ``obj`` as JSON into this stage's output folder and return the path."""
        path = self.output(filename)
        path.write_text(json.dumps(obj, indent=2, default=str), encoding="utf-8")
        return path

    def record(self, name: str, value: Any) -> None:
        """Record a named value (a metric, a count, a path) for the run manifest and MLflow.

        Numbers become MLflow metrics; anything else JSON-serialisable is kept as text.
        """
        path = self.output(RECORDED_VALUES)
        values = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        values[name] = _plain(value)
        path.write_text(json.dumps(values, indent=2), encoding="utf-8")
        if self.interactive and is_metric_value(values[name]):
            mlflow.log_metric(name, values[name])

    def warn(self, message: str) -> None:
        """Say something the user must not miss, such as data the stage removed or changed.

        The message is printed in the notebook and kept as the recorded value ``warnings``: the
        runner prints it in ``nbtools run``'s output (also when the stage is reused from the
        cache), and the manifest and the stage's MLflow run (tag ``nbtools.recorded.warnings``)
        keep it. The same message twice is kept once.
        """
        path = self.output(RECORDED_VALUES)
        values = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        found = stage_warnings(values)
        if message not in found:
            self.record(WARNINGS, [*found, message])
            if self.interactive:
                mlflow.set_tag(f"nbtools.recorded.{WARNINGS}", json.dumps([*found, message]))
        print(f"Warning: {message}")

    def notify(self, event: str, text: str, **details: Any) -> bool:
        """Post ``event`` to the webhook of ``notify`` in ``pipeline.yaml``, if it lists it.

        The message names this stage and, under the runner, the run and its manifest
        (interactively, the stage's scratch folder). A message that cannot be posted becomes
        a warning of the stage (:meth:`warn`); the stage goes on.

        Parameters
        ----------
        event : str
            One of ``run-failed``, ``drift``, ``decay``, ``promoted``, ``rejected``.
        text : str
            What happened, in a sentence or two.
        **details
            More facts for the message (see :func:`nbtools.records.notify.post_event`).

        Returns
        -------
        bool
            Whether the webhook accepted the message.
        """
        if self.pipeline is None:
            return False
        run_dir = self.output_dir.parent
        in_run = not self.interactive and (run_dir / MANIFEST).is_file()
        return post_event(
            self.pipeline,
            event,
            text,
            run_id=run_dir.name if in_run else None,
            stage=self.name,
            record=run_dir / MANIFEST if in_run else self.output_dir,
            warn=self.warn,
            **details,
        )

    def report_rows_removed(
        self, removed: int, total: int, *, reason: str, hint: str = ""
    ) -> str | None:
        """Warn (see :meth:`warn`) when the stage removed more than 5 % of the rows.

        Parameters
        ----------
        removed, total : int
            Rows removed, and rows there were before.
        reason : str
            Why they were removed, e.g. ``"875 exact duplicates"``.
        hint : str, default=""
            What to do about it, e.g. ``"Set clean.drop_duplicates=false to keep them."``

        Returns
        -------
        str or None
            The warning, or None when the share is within the limit.
        """
        share = removed / total if total else 0.0
        if share <= ROWS_REMOVED_LIMIT:
            return None
        message = f"removed {removed:,} of {total:,} rows ({share:.1%}): {reason}."
        return self._warn_with(message, hint)

    def report_values_changed(
        self, column: str, changed: int, total: int, *, reason: str, hint: str = ""
    ) -> str | None:
        """Warn (see :meth:`warn`) when the stage changed more than 1 % of a column's values.

        Parameters
        ----------
        column : str
            The column.
        changed, total : int
            Values changed, and values the column had.
        reason : str
            How they changed, e.g. ``"clipped to the IQR fences"``.
        hint : str, default=""
            What to do about it.

        Returns
        -------
        str or None
            The warning, or None when the share is within the limit.
        """
        share = changed / total if total else 0.0
        if share <= VALUES_CHANGED_LIMIT:
            return None
        message = f"changed {changed:,} of {total:,} values ({share:.1%}) of column '{column}'"
        message += f": {reason}."
        return self._warn_with(message, hint)

    def _warn_with(self, message: str, hint: str) -> str:
        text = f"{message} {hint}".strip()
        self.warn(text)
        return text


def stage_context(name: str, namespace: MutableMapping[str, Any]) -> StageContext:
    """Set up the stage ``name`` of the notebook whose globals are ``namespace``.

    Parameters
    ----------
    name : str
        The stage name, as in ``pipeline.yaml``.
    namespace : mutable mapping
        The notebook's ``globals()``: the runner-injected names are read from it and,
        interactively, the parameters ``pipeline.yaml`` sets for the stage are written into it.

    Returns
    -------
    StageContext
        The stage's handle, with its MLflow run active.
    """
    if namespace.get("output_dir") is not None:
        return _batch_context(name, namespace)
    return _interactive_context(name, namespace)


def _batch_context(name: str, namespace: MutableMapping[str, Any]) -> StageContext:
    pipeline = load_pipeline(find_project())
    context = StageContext(
        name=name,
        project_dir=pipeline.project_dir,
        output_dir=Path(namespace["output_dir"]),
        inputs={k: Path(v) for k, v in (namespace.get("inputs") or {}).items()},
        seed=pipeline.seed,
        model_name=pipeline.model_name,
        tracking_uri=namespace.get("tracking_uri") or pipeline.tracking_uri,
        pipeline=pipeline,
    )
    context.output_dir.mkdir(parents=True, exist_ok=True)
    if os.environ.get(SCHEDULER_VARIABLE):
        context.cluster = dask_joblib_backend(os.environ[SCHEDULER_VARIABLE])
    _use_project_store(context.tracking_uri)
    if namespace.get("mlflow_run_id"):
        mlflow.start_run(run_id=namespace["mlflow_run_id"])
    return context


def _use_project_store(tracking_uri: str) -> None:
    """Point MLflow's tracking *and* registry at the project's store.

    MLflow takes the registry from ``MLFLOW_REGISTRY_URI`` whenever it is set, even for a
    client given a tracking URI, and ``mlflow.set_registry_uri`` in any parent process sets it
    for every child. A stage would then register its model in another registry than the one
    the pipeline's other stages read.
    """
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)


def _interactive_context(name: str, namespace: MutableMapping[str, Any]) -> StageContext:
    pipeline = load_pipeline(find_project())
    stage = pipeline.stage(name)
    for key, value in pipeline.resolve()[name].items():
        if namespace.get(key) != value:
            print(f"pipeline.yaml sets {key} = {value!r} for stage '{name}'.")
            namespace[key] = value
    context = StageContext(
        name=name,
        project_dir=pipeline.project_dir,
        output_dir=pipeline.project_dir / INTERACTIVE_DIR / name,
        inputs=_latest_inputs(pipeline, stage.inputs),
        seed=pipeline.seed,
        model_name=pipeline.model_name,
        tracking_uri=pipeline.tracking_uri,
        interactive=True,
        pipeline=pipeline,
    )
    context.output_dir.mkdir(parents=True, exist_ok=True)
    (context.output_dir / RECORDED_VALUES).unlink(missing_ok=True)
    tracker = Tracker(pipeline.tracking_uri, pipeline.name, pipeline.project_dir / "mlartifacts")
    _use_project_store(pipeline.tracking_uri)
    if mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.start_run(
        run_id=tracker.start_run(f"{name} (interactive)", tags={"nbtools.stage": name})
    )
    print(f"Working interactively: outputs go to {context.output_dir}.")
    return context


def _latest_inputs(pipeline: Pipeline, upstream: tuple[str, ...]) -> dict[str, Path]:
    """Return the upstream stages' outputs from the newest run that has them all.

    When no run has them, the upstream stages are run first.
    """
    found = latest_outputs(pipeline.runs_dir, upstream)
    if found is None:
        from nbtools.runner.run import run_pipeline  # only interactively: keep stage start light

        print(f"No earlier run has outputs of {', '.join(upstream)}: running them first.")
        result = run_pipeline(pipeline.project_dir, targets=upstream, echo=print)
        if result.error is not None:
            raise result.error
        found = latest_outputs(pipeline.runs_dir, upstream) or {}
    for name, path in found.items():
        print(f"Input '{name}': {path}")
    return found


def _plain(value: Any) -> Any:
    """Turn numpy scalars and paths into plain JSON values."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    json.dumps(value)  # fail here, in the notebook, rather than later in the runner
    return value

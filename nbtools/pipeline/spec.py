"""The pipeline spec: ``pipeline.yaml`` and the stage notebooks it names, checked as one graph.

A project is a folder holding ``pipeline.yaml`` and one notebook per stage. Loading it checks
everything that can be checked without starting a kernel: known keys, existing notebooks with
exactly one ``parameters`` cell, known inputs and no cycles.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from nbtools.errors import InvalidParameterError, PipelineSpecError, ProjectNotFoundError
from nbtools.params import Parameter, parse_parameters_cell, resolve_parameters
from nbtools.pipeline.deployment import (
    Notify,
    Resources,
    Secret,
    check_secret_references,
    parse_notify,
    parse_resources,
    parse_secrets,
)

PIPELINE_FILE = "pipeline.yaml"
_PIPELINE_KEYS = {
    "name",
    "model_name",
    "tracking_uri",
    "seed",
    "cell_timeout",
    "stages",
    "profiles",
    "sweep",
    "secrets",
    "notify",
}
_STAGE_KEYS = {"notebook", "inputs", "parameters", "timeout", "reads", "resources"}
#: What "registry" in a stage's ``reads`` stands for: the champion it compares against.
REGISTRY = "registry"
#: What a stage reads besides its inputs when ``pipeline.yaml`` does not say, by stage name: the
#: stages of the default template. Parameter names there are read only if the stage has them.
DEFAULT_READS: dict[str, tuple[str, ...]] = {
    "ingest": ("source",),
    "evaluate": (REGISTRY,),
    "deploy": (REGISTRY, "gate_data"),
    "monitor": (REGISTRY, "current", "labels"),
}


@dataclass(frozen=True)
class Stage:
    """One stage of a pipeline: a notebook, the stages it reads from, and its parameters.

    Parameters
    ----------
    name : str
        The stage name, unique in its pipeline.
    notebook : Path
        Absolute path of the stage notebook.
    inputs : tuple of str
        Names of the upstream stages whose outputs this stage reads.
    parameters : dict
        Values set for this stage in ``pipeline.yaml``.
    timeout : int
        Seconds one cell may run before the stage fails.
    reads : tuple of str or None
        What the stage reads besides its inputs, as declared in ``pipeline.yaml``: ``registry``
        and names of parameters holding a data source. None: :data:`DEFAULT_READS`.
    resources : Resources
        CPU, memory and GPUs one execution needs, for the exports and the Dask executor.
    """

    name: str
    notebook: Path
    inputs: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    timeout: int = 600
    reads: tuple[str, ...] | None = None
    resources: Resources = field(default_factory=Resources)

    @cached_property
    def schema(self) -> dict[str, Parameter]:
        """The typed parameters declared in the notebook's ``parameters`` cell."""
        return parse_parameters_cell(parameters_cell(self.notebook, self.name), self.name)

    @cached_property
    def read_sources(self) -> tuple[str, ...]:
        """The parameters whose value names a data source the stage reads (its cache keys on it).

        Raises
        ------
        PipelineSpecError
            When a declared ``reads`` entry is neither ``registry`` nor a parameter of the stage.
        """
        if self.reads is None:
            return tuple(n for n in DEFAULT_READS.get(self.name, ()) if n in self.schema)
        unknown = [n for n in self.reads if n != REGISTRY and n not in self.schema]
        if unknown:
            raise PipelineSpecError(
                f"'reads' of stage '{self.name}' names {', '.join(map(repr, unknown))}, which is "
                f"neither 'registry' nor a parameter of the stage. Parameters: "
                f"{', '.join(self.schema) or 'none'}."
            )
        return tuple(n for n in self.reads if n != REGISTRY)

    @property
    def reads_registry(self) -> bool:
        """Whether the stage's result depends on the champion in the model registry."""
        return REGISTRY in (DEFAULT_READS.get(self.name, ()) if self.reads is None else self.reads)


@dataclass(frozen=True)
class Pipeline:
    """A loaded, checked pipeline.

    Parameters
    ----------
    name : str
        Pipeline name; also the MLflow experiment name.
    project_dir : Path
        The folder holding ``pipeline.yaml``.
    stages : tuple of Stage
        The stages in an order where every stage comes after its inputs.
    model_name : str
        Name of the model in the MLflow registry.
    tracking_uri : str
        MLflow tracking URI, with a relative SQLite path made absolute.
    seed : int
        Seed handed to every stage.
    profiles : dict
        Named parameter sets.
    sweep : dict
        Parameter key to the list of values ``nbtools run --sweep`` runs a variant for.
    secrets : dict of str to Secret
        Credentials by reference: environment variable name to where Kubernetes keeps it.
    notify : Notify or None
        The webhook that hears about failed runs, drift, decay and gate decisions.
    """

    name: str
    project_dir: Path
    stages: tuple[Stage, ...]
    model_name: str
    tracking_uri: str
    seed: int = 42
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    secrets: dict[str, Secret] = field(default_factory=dict)
    notify: Notify | None = None

    @property
    def runs_dir(self) -> Path:
        """Folder holding one run record per pipeline run."""
        return self.project_dir / "runs"

    def stage(self, name: str) -> Stage:
        """Return the stage called ``name``.

        Raises
        ------
        PipelineSpecError
            When there is no such stage.
        """
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise PipelineSpecError(
            f"Pipeline '{self.name}' has no stage '{name}'. "
            f"Stages: {', '.join(s.name for s in self.stages)}."
        )

    def upstream(self, name: str) -> list[Stage]:
        """Return ``name`` and every stage it depends on, in run order."""
        needed = {name}
        for stage in reversed(self.stages):
            if stage.name in needed:
                needed.update(stage.inputs)
        return [s for s in self.stages if s.name in needed]

    def resolve(
        self, profile: str | None = None, overrides: Mapping[str, Any] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Resolve every stage's parameters: notebook < ``pipeline.yaml`` < profile < overrides.

        Raises
        ------
        InvalidParameterError
            For an unknown profile, stage or parameter, or a value that does not fit.
        """
        layers: list[Mapping[str, Any]] = [
            {f"{s.name}.{k}": v for k, v in s.parameters.items()} for s in self.stages
        ]
        if profile is not None:
            if profile not in self.profiles:
                known = ", ".join(self.profiles) or "none"
                raise InvalidParameterError(
                    f"Pipeline '{self.name}' has no profile '{profile}'. Profiles: {known}."
                )
            layers.append(self.profiles[profile])
        layers.append(overrides or {})
        return resolve_parameters({s.name: s.schema for s in self.stages}, layers)


def find_project(start: str | Path = ".") -> Path:
    """Return the nearest folder at or above ``start`` that holds ``pipeline.yaml``.

    Raises
    ------
    ProjectNotFoundError
        When neither ``start`` nor any parent holds one.
    """
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        if (folder / PIPELINE_FILE).is_file():
            return folder
    raise ProjectNotFoundError(
        f"No {PIPELINE_FILE} in {here} or its parents. Create a project with "
        "`nbtools new DIR`, or name the folder that holds it."
    )


def load_pipeline(project_dir: str | Path = ".") -> Pipeline:
    """Load and check the pipeline of the project at or above ``project_dir``.

    Raises
    ------
    ProjectNotFoundError
        When no ``pipeline.yaml`` is found.
    PipelineSpecError
        When the file or a stage notebook does not describe a valid pipeline.
    """
    root = find_project(project_dir)
    path = root / PIPELINE_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise PipelineSpecError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise PipelineSpecError(f"{path} must be a mapping with a 'stages' section.")
    _check_keys(raw, _PIPELINE_KEYS, f"{path}")
    stages_raw = raw.get("stages")
    if not isinstance(stages_raw, dict) or not stages_raw:
        raise PipelineSpecError(f"{path} must have a 'stages' mapping with at least one stage.")
    timeout = _positive_int(raw.get("cell_timeout", 600), "cell_timeout", path)
    stages = [_stage(name, body, root, timeout, path) for name, body in stages_raw.items()]
    sweep = raw.get("sweep") or {}
    if not isinstance(sweep, dict) or not all(isinstance(v, list) and v for v in sweep.values()):
        raise PipelineSpecError(
            f"'sweep' in {path} must map each parameter (NAME or STAGE.NAME) to a non-empty "
            f"list of values. Got {sweep!r} instead."
        )
    profiles = raw.get("profiles") or {}
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise PipelineSpecError(f"'profiles' in {path} must map each profile name to a mapping.")
    name = str(raw.get("name") or root.name)
    secrets = parse_secrets(raw.get("secrets"), path)
    for stage in stages:
        check_secret_references(stage.parameters, secrets, f"stage '{stage.name}' in {path}")
    for profile_name, values in profiles.items():
        check_secret_references(values, secrets, f"profile '{profile_name}' in {path}")
    return Pipeline(
        name=name,
        project_dir=root,
        stages=_in_run_order(stages, path),
        model_name=str(raw.get("model_name") or f"{name}-model"),
        tracking_uri=absolute_tracking_uri(
            str(raw.get("tracking_uri", "sqlite:///mlflow.db")), root
        ),
        seed=_positive_int(raw.get("seed", 42), "seed", path, allow_zero=True),
        profiles={str(k): dict(v) for k, v in profiles.items()},
        sweep={str(k): list(v) for k, v in sweep.items()},
        secrets=secrets,
        notify=parse_notify(raw.get("notify"), path),
    )


def absolute_tracking_uri(uri: str, project_dir: Path) -> str:
    """Make a relative ``sqlite:///`` path absolute against the project folder."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str((project_dir / uri[len(prefix) :]).resolve())
    return uri


def parameters_cell(notebook: Path, stage: str) -> str:
    """Return the source of the one cell tagged ``parameters`` in ``notebook``.

    Raises
    ------
    PipelineSpecError
        When the notebook is missing or unreadable, or has no or several ``parameters`` cells.
    """
    if not notebook.is_file():
        raise PipelineSpecError(f"Stage '{stage}' names notebook {notebook}, which does not exist.")
    # Plain JSON rather than nbformat: importing nbformat costs about a second (its schema
    # validator), paid again in every stage kernel, which loads the pipeline too.
    try:
        nb = json.loads(notebook.read_text(encoding="utf-8"))
        if nb.get("nbformat") != 4:
            raise ValueError(f"nbformat {nb.get('nbformat')!r} where 4 is expected")
        cells = [
            c
            for c in nb["cells"]
            if c["cell_type"] == "code" and "parameters" in c.get("metadata", {}).get("tags", [])
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PipelineSpecError(
            f"Notebook {notebook} of stage '{stage}' is unreadable: {exc}"
        ) from exc
    if len(cells) != 1:
        raise PipelineSpecError(
            f"Notebook {notebook} of stage '{stage}' must have exactly one code cell tagged "
            f"'parameters'; it has {len(cells)}."
        )
    source = cells[0]["source"]
    return "".join(source) if isinstance(source, list) else str(source)


def _stage(name: Any, body: Any, root: Path, timeout: int, path: Path) -> Stage:
    if not isinstance(body, dict) or "notebook" not in body:
        raise PipelineSpecError(f"Stage '{name}' in {path} must be a mapping with a 'notebook'.")
    _check_keys(body, _STAGE_KEYS, f"stage '{name}' in {path}")
    inputs = body.get("inputs") or []
    parameters = body.get("parameters") or {}
    reads = body.get("reads")
    if not isinstance(inputs, list) or not isinstance(parameters, dict):
        raise PipelineSpecError(
            f"Stage '{name}' in {path}: 'inputs' must be a list of stage names and "
            "'parameters' a mapping."
        )
    if reads is not None and not (
        isinstance(reads, list) and all(isinstance(r, str) for r in reads)
    ):
        raise PipelineSpecError(
            f"Stage '{name}' in {path}: 'reads' must be a list of 'registry' and names of "
            f"parameters that hold a data source, e.g. [source]. Got {reads!r} instead."
        )
    return Stage(
        name=str(name),
        notebook=(root / str(body["notebook"])).resolve(),
        inputs=tuple(str(i) for i in inputs),
        parameters=dict(parameters),
        timeout=_positive_int(body.get("timeout", timeout), f"stages.{name}.timeout", path),
        reads=None if reads is None else tuple(reads),
        resources=parse_resources(body.get("resources"), f"stage '{name}' in {path}"),
    )


def _in_run_order(stages: list[Stage], path: Path) -> tuple[Stage, ...]:
    by_name = {s.name: s for s in stages}
    for stage in stages:
        for name in stage.inputs:
            if name not in by_name:
                raise PipelineSpecError(
                    f"Stage '{stage.name}' in {path} reads from '{name}', which is not a stage. "
                    f"Stages: {', '.join(by_name)}."
                )
    ordered: list[Stage] = []
    visiting: list[str] = []

    def visit(stage: Stage) -> None:
        if stage in ordered:
            return
        if stage.name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(stage.name) :], stage.name])
            raise PipelineSpecError(f"The stages in {path} form a cycle: {cycle}.")
        visiting.append(stage.name)
        for name in stage.inputs:
            visit(by_name[name])
        visiting.pop()
        ordered.append(stage)

    for stage in stages:
        visit(stage)
    return tuple(ordered)


def _check_keys(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(map(str, raw)) - allowed)
    if unknown:
        raise PipelineSpecError(
            f"Unknown key(s) {', '.join(unknown)} in {where}. "
            f"Allowed: {', '.join(sorted(allowed))}."
        )


def _positive_int(value: Any, key: str, path: Path, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise PipelineSpecError(
            f"'{key}' in {path} must be a {'non-negative' if allow_zero else 'positive'} "
            f"integer. Got {value!r} instead."
        )
    return value

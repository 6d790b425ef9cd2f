"""Parameter sweeps: one pipeline run per combination of values, sharing unchanged stages.

A sweep comes from the command line (``-p train.C=0.1,1,10``) or from the ``sweep`` section of
``pipeline.yaml``. Each combination is an ordinary run, and the variants run at the same time
on one pool of stage slots (or one Dask cluster); the stage cache, and the claim a run holds
on a stage while it executes it, make every stage upstream of the swept parameters execute
once and be reused by the other variants.

The rule for ``-p NAME=A,B,C``: an unquoted value with commas is a sweep over the values,
unless the parameter it sets is a list or a mapping, where it keeps its YAML meaning
(``-p columns=[a, b]`` sets one list; quote a text value that contains commas).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nbtools.params import parse_assignment
from nbtools.pipeline.spec import Pipeline, load_pipeline
from nbtools.records.runs import RunResult
from nbtools.runner.run import run_pipeline
from nbtools.runner.scheduler import default_jobs, stage_pool

#: Recorded values with this prefix are the held-out metrics a comparison shows.
METRIC_PREFIX = "test_"
_STRUCTURED = ("list", "dict")


@dataclass(frozen=True)
class Variant:
    """One run of a sweep.

    Parameters
    ----------
    values : dict
        The swept parameters' values in this variant.
    result : RunResult
        The variant's run.
    """

    values: dict[str, Any]
    result: RunResult

    @property
    def metrics(self) -> dict[str, Any]:
        """The held-out metrics (``test_*``) the run's stages recorded."""
        found: dict[str, Any] = {}
        for stage in self.result.manifest["stages"].values():
            found.update(
                {k: v for k, v in stage["recorded"].items() if k.startswith(METRIC_PREFIX)}
            )
        return found


def parse_overrides(
    pipeline: Pipeline, assignments: Iterable[str]
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Split command-line ``-p`` assignments into fixed overrides and swept values.

    Returns
    -------
    overrides : dict
        ``NAME`` or ``STAGE.NAME`` to one value.
    swept : dict
        ``NAME`` or ``STAGE.NAME`` to the values to sweep over, in the order given.
    """
    overrides: dict[str, Any] = {}
    swept: dict[str, list[Any]] = {}
    for text in assignments:
        key, value = parse_assignment(text)
        raw = text.partition("=")[2].strip()
        if "," in raw and raw[0] not in "[{\"'" and not _structured(pipeline, key):
            swept[key] = [yaml.safe_load(part) for part in raw.split(",")]
        else:
            overrides[key] = value
    return overrides, swept


def _structured(pipeline: Pipeline, key: str) -> bool:
    stage, _, name = key.rpartition(".")
    kinds = [
        s.schema[name].kind
        for s in pipeline.stages
        if (not stage or s.name == stage) and name in s.schema
    ]
    return any(kind in _STRUCTURED for kind in kinds)


def variants(swept: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """Return every combination of the swept values, the first key varying slowest."""
    keys = list(swept)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*swept.values())]


def run_sweep(
    project_dir: str | Path,
    swept: Mapping[str, list[Any]] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    **options: Any,
) -> list[Variant]:
    """Run the pipeline once per combination of swept values, the variants at the same time.

    With more than one job (or on Dask) the variants run concurrently on one shared pool of
    ``jobs`` stage slots (or one cluster): a stage upstream of every swept parameter executes
    once, and the other variants wait for it and reuse it; the stages that differ run as
    parallel tasks. With one job the variants run one after the other.

    Parameters
    ----------
    project_dir : str or Path
        The project folder.
    swept : mapping, optional
        Parameter key to the values to sweep; the ``sweep`` section of ``pipeline.yaml``
        when omitted.
    overrides : mapping, optional
        Values fixed for every variant.
    **options
        Passed to :func:`~nbtools.runner.run.run_pipeline` (``profile``, ``jobs``,
        ``executor``, ``scheduler``, ``echo``, ...).

    Returns
    -------
    list of Variant
        One per combination, in order. Every combination is validated before any runs.

    Raises
    ------
    ClusterError
        When the Dask scheduler cannot be reached.
    """
    pipeline = load_pipeline(project_dir)
    combos = variants(pipeline.sweep if swept is None else swept)
    for combo in combos:  # every variant's parameters are checked before anything runs
        pipeline.resolve(options.get("profile"), {**(overrides or {}), **combo})
    fixed = dict(overrides or {})
    jobs = options.get("jobs") or default_jobs()
    executor = options.get("executor", "local")
    if len(combos) < 2 or (jobs < 2 and executor == "local"):
        return [
            Variant(combo, run_pipeline(project_dir, overrides={**fixed, **combo}, **options))
            for combo in combos
        ]
    pool = stage_pool(jobs, executor, options.get("scheduler"))
    pool.prepare(pipeline.project_dir)  # the first stage's kernel starts at once
    say = options.pop("echo", None) or (lambda _line: None)
    threads = ThreadPoolExecutor(len(combos), thread_name_prefix="nbtools-variant")
    try:
        futures = [
            threads.submit(
                run_pipeline,
                project_dir,
                overrides={**fixed, **combo},
                pool=pool,
                echo=_labelled(say, combo),
                **options,
            )
            for combo in combos
        ]
        results = [future.result() for future in futures]
    except BaseException:  # stop every stage kernel, so that the variants end at once
        pool.shutdown(wait=False, cancel_futures=True)
        threads.shutdown(wait=True, cancel_futures=True)
        raise
    threads.shutdown()
    pool.shutdown()
    return [Variant(combo, result) for combo, result in zip(combos, results, strict=True)]


def _labelled(say: Callable[[str], None], combo: Mapping[str, Any]) -> Callable[[str], None]:
    """Return ``say`` with each line prefixed by the variant's values (variants interleave)."""
    label = ", ".join(f"{key}={value}" for key, value in combo.items())
    return lambda line: say(f"[{label}] {line.strip()}")

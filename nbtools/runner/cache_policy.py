"""The cache policy of one run: each stage's key, whether an earlier execution can be reused,
and the reason a stage runs again or is reused, in the words the console and manifest show.

:mod:`nbtools.runner.cache` holds the key and the index on disk; this module decides with them.
A stage is reused when an earlier execution stored under the same key still has its outputs
(or, when resuming, when the resumed run finished it under that key); a forced stage runs anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbtools.errors import ModelRegistryError, PipelineSpecError
from nbtools.pipeline.sources import Fingerprint, champion_state
from nbtools.pipeline.spec import Pipeline, Stage
from nbtools.records.manifest import DONE, StageRecord
from nbtools.records.runs import list_runs, project_lock
from nbtools.runner.cache import CacheIndex, CacheKey, code_hash, environment_fingerprint, stage_key


def reuse_entry(
    run_id: str, record: Mapping[str, Any], runs_dir: Path | None = None
) -> dict[str, Any]:
    """Return what a later run needs to reuse a finished stage record (a cache entry).

    Parameters
    ----------
    run_id : str
        The run the record belongs to.
    record : mapping
        The stage's entry in that run's manifest.
    runs_dir : Path, optional
        The runs folder, to find the stage's folder when the record does not name it.
    """
    output_dir = record.get("output_dir")
    if output_dir is None and runs_dir is not None:
        output_dir = str(runs_dir / run_id / record["dir"])
    return {
        "run_id": record.get("reused_from") or run_id,
        "output_dir": output_dir,
        "recorded": record.get("recorded", {}),
        "output_hashes": record.get("output_hashes", {}),
        "executed_notebook": record.get("executed_notebook"),
        "html": record.get("html"),
        "mlflow_run_id": record.get("mlflow_run_id"),
    }


@dataclass
class CachePolicy:
    """Cache keys, lookups and reasons for the stages of one run.

    Parameters
    ----------
    pipeline : Pipeline
        The pipeline that runs.
    parameters : dict
        Each stage's resolved parameters.
    sources : dict
        The data sources each stage reads, fingerprinted once per run: stage to parameter to it.
    forced : set of str
        Stages executed even when their key matches.
    resumed : dict or None
        The manifest of the run being resumed, whose finished stages count as cached.
    """

    pipeline: Pipeline
    parameters: dict[str, dict[str, Any]]
    sources: dict[str, dict[str, Fingerprint]]
    forced: set[str] = field(default_factory=set)
    resumed: dict[str, Any] | None = None
    index: CacheIndex = field(init=False)
    environment: str = field(init=False, default_factory=environment_fingerprint)
    #: Each stage's key, once computed.
    keys: dict[str, CacheKey] = field(default_factory=dict)
    #: The registry state each registry-reading stage's key holds.
    registry: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The stored record of each executed stage's newest earlier execution, for "was N rows".
    earlier: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = CacheIndex(self.pipeline.project_dir)

    def key(self, stage: Stage, input_hashes: Mapping[str, Mapping[str, str]]) -> CacheKey:
        """Return the cache key of ``stage``, reading the registry state if the stage reads it."""
        if stage.reads_registry:
            with project_lock(self.pipeline.project_dir):  # a new database is not half-made
                self.registry[stage.name] = champion_state(
                    self.pipeline.tracking_uri, self.pipeline.model_name
                )
        key = stage_key(
            stage.name,
            code=code_hash(stage.notebook),
            parameters={
                "parameters": self.parameters[stage.name],
                "seed": self.pipeline.seed,
                "model_name": self.pipeline.model_name,
            },
            input_hashes=input_hashes,
            environment=self.environment,
            sources={name: found.digest for name, found in self.sources[stage.name].items()},
            registry=self.registry.get(stage.name),
        )
        self.keys[stage.name] = key
        return key

    def source_record(self, stage: str) -> dict[str, dict[str, Any]] | None:
        """Return the sources ``stage`` read, as its manifest entry keeps them (``None``: none)."""
        if not self.sources[stage]:
            return None
        return {
            name: {"source": found.source, "fingerprint": found.digest, "rows": found.rows}
            for name, found in self.sources[stage].items()
        }

    def lookup(self, key: CacheKey, *, shared: set[str] | None = None) -> dict[str, Any] | None:
        """Return the cache entry to reuse for ``key``, or ``None`` when the stage must run.

        A forced stage is never looked up, unless another run executed it under the same key
        at the same time (its digest is in ``shared``).
        """
        if key.stage in self.forced and key.digest not in (shared or set()):
            return None
        return self._find(key)

    def _find(self, key: CacheKey) -> dict[str, Any] | None:
        hit = self.index.lookup(key)
        if hit is None and self.resumed is not None:
            earlier = self.resumed["stages"].get(key.stage, {})
            if earlier.get("status") in DONE and earlier.get("cache", {}).get("key") == key.digest:
                hit = reuse_entry(self.resumed["run_id"], earlier)
        return hit

    def outside_selection(self, stage: Stage, key: CacheKey) -> tuple[dict[str, Any], str]:
        """Return the entry to reuse for a stage outside the selection, and why.

        Raises
        ------
        PipelineSpecError
            When neither the cache nor any earlier run has the stage's outputs.
        """
        hit = self._find(key)  # forced or not: the stage is not to run
        if hit is not None:
            return hit, "unchanged, outside the selection"
        for manifest in list_runs(self.pipeline.runs_dir):
            record = manifest["stages"].get(stage.name)
            if record and record["status"] in DONE:
                entry = reuse_entry(manifest["run_id"], record, self.pipeline.runs_dir)
                if Path(entry["output_dir"]).is_dir():
                    return entry, "outside the selection; its newest outputs"
        raise PipelineSpecError(
            f"The selected stages need the outputs of stage '{stage.name}', which has no "
            f"finished run. Run '{stage.name}' and the stages it needs first, or widen the "
            "selection."
        )

    def why_reused(self, stage: str) -> str:
        """Say why a stage whose key matched is reused: "unchanged" and the sources it read."""
        if not self.sources[stage]:
            return "unchanged"
        return f"unchanged; source unchanged: {self._source_names(stage)}"

    def why_run(self, stage: str, key: CacheKey) -> str:
        """Say why ``stage`` executes: forced, never ran, which key parts changed, or outputs gone.

        Also remembers the stage's newest earlier execution for :meth:`source_outcome`.
        """
        self.earlier[stage] = self.index.latest_record(stage)
        if stage in self.forced:
            return "forced"
        earlier = self.index.latest_parts(stage)
        if earlier is None:
            return "no earlier execution"
        changed = key.changed_since(earlier)
        if "source" in changed:
            return f"{', '.join(changed)} changed: {self._source_names(stage)}"
        return f"{', '.join(changed)} changed" if changed else "its cached outputs are gone"

    def source_outcome(self, record: StageRecord, stage: str) -> str | None:
        """Say what a re-read source held: "source changed: x.csv, 1,000 rows, was 2,000".

        Call it before :meth:`store`, which makes this execution the newest.
        """
        key, earlier = self.keys[stage], self.earlier.get(stage)
        if not self.sources[stage] or earlier is None:
            return None
        parts = self.index.latest_parts(stage) or {}
        changed = "changed" if parts.get("source") != key.parts["source"] else "unchanged"
        line = f"source {changed}: {self._source_names(stage)}"
        rows, was = record.recorded.get("rows"), earlier.get("recorded", {}).get("rows")
        if isinstance(rows, int):
            line += f", {rows:,} rows" + (f", was {was:,}" if isinstance(was, int) else "")
        if record.output_hashes == earlier.get("output_hashes"):
            line += "; its outputs are unchanged"
        return line

    def store(self, stage: str, run_id: str, record: StageRecord) -> None:
        """Remember a successful execution of ``stage`` under its key."""
        self.index.store(self.keys[stage], reuse_entry(run_id, record.to_dict()))

    def own_registry_changes(self, run_id: str, stages: Mapping[str, StageRecord]) -> None:
        """Key the registry-reading stages also on the champion this run itself deployed.

        See :func:`store_under_own_champion`.
        """
        keys = {name: self.keys[name] for name in self.registry}
        store_under_own_champion(self.pipeline, self.index, run_id, stages, keys)

    def _source_names(self, stage: str) -> str:
        return ", ".join(found.source for found in self.sources[stage].values())


def store_under_own_champion(
    pipeline: Pipeline,
    index: CacheIndex,
    run_id: str,
    stages: Mapping[str, StageRecord],
    keys: Mapping[str, CacheKey],
) -> None:
    """Key the registry-reading stages also on the champion their run itself deployed.

    A stage's key holds the champion it compared against. When the run's deploy made its own
    model the champion, the stages are stored under that new state too, so that running the
    unchanged pipeline again reuses them; a champion set anywhere else re-runs them.

    Parameters
    ----------
    pipeline : Pipeline
        The pipeline that ran.
    index : CacheIndex
        The project's cache index.
    run_id : str
        The run.
    stages : mapping
        The run's stage records.
    keys : mapping
        The key of each registry-reading stage, as it was computed.
    """
    if not keys:
        return
    try:
        with project_lock(pipeline.project_dir):
            now = champion_state(pipeline.tracking_uri, pipeline.model_name)
    except ModelRegistryError:
        return  # unreadable now: the next run reads it again and decides then
    own = {record.mlflow_run_id for record in stages.values()} - {None}
    if now["champion"] is None or now["champion"]["run_id"] not in own:
        return
    for name, key in keys.items():
        record, moved = stages[name], key.with_registry(now)
        if moved.digest != key.digest and record.status in DONE:
            index.store(moved, reuse_entry(run_id, record.to_dict()))

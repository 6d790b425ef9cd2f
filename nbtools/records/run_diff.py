"""Two run records compared: parameters, recorded values, which stages re-ran and why, and each
stage's executed notebooks cell by cell.

:func:`diff_runs` builds the comparison from the two manifests and notebooks on disk;
:func:`summary_text` says it in a few lines and :func:`report_html` renders it as one
self-contained HTML page (:func:`write_report` writes it). ``nbtools runs diff``, the
``%nbtools diff`` magic and the JupyterLab sidebar's Compare all show the same comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbtools.records._diff_report import render, short_value
from nbtools.records._notebook_diff import (
    CellDiff,
    OutputDiff,
    compare_cells,
    read_cells,
    volatile_marks,
)
from nbtools.records.history import compare_runs, metrics
from nbtools.records.runs import load_run

__all__ = [
    "CellDiff",
    "OutputDiff",
    "RunDiff",
    "StageDiff",
    "default_report_path",
    "diff_runs",
    "report_html",
    "summary_text",
    "write_report",
]

#: Where ``nbtools runs diff`` writes its report, relative to the project folder.
REPORTS_DIR = "diffs"
_EXECUTED = ("succeeded", "failed")


@dataclass
class StageDiff:
    """One stage in both runs.

    Parameters
    ----------
    name : str
        The stage.
    status, why, reused_from : tuple
        Each run's status of the stage, the reason it ran or was reused (as the run said it),
        and the run whose execution it reused (``None`` where the run lacks the stage).
    same_execution : bool
        Both runs hold the very same execution (one reused the other's, or both one earlier run's).
    key_changes : list of str
        The parts of the stage's cache key that differ between the two runs (``parameters``,
        ``inputs``, ``code``, ...): why the second run's execution differs from the first's.
    parameters : list of dict
        The stage's parameters that differ, as rows of
        :func:`~nbtools.records.history.compare_runs`.
    outputs_changed : list of str
        Output files (relative to the stage folder) whose content differs, or that only one run has.
    cells : list of CellDiff or None
        The executed notebooks compared cell by cell; ``None`` when not compared (see ``note``).
    note : str
        Why the notebooks were not compared, when they were not.
    """

    name: str
    status: tuple[str | None, str | None]
    why: tuple[str | None, str | None]
    reused_from: tuple[str | None, str | None]
    same_execution: bool
    key_changes: list[str] = field(default_factory=list)
    parameters: list[dict[str, Any]] = field(default_factory=list)
    outputs_changed: list[str] = field(default_factory=list)
    cells: list[CellDiff] | None = None
    note: str = ""

    @property
    def changed_cells(self) -> list[CellDiff]:
        """The cells a reader sees differ."""
        return [cell for cell in self.cells or [] if cell.changed]

    @property
    def changed(self) -> bool:
        """Whether anything of the stage differs between the two runs."""
        if self.same_execution:
            return False
        return bool(
            self.key_changes
            or self.parameters
            or self.outputs_changed
            or self.changed_cells
            or self.status[0] != self.status[1]
        )


@dataclass
class RunDiff:
    """Two runs compared; build it with :func:`diff_runs`.

    ``runs`` holds the two manifests, ``parameters`` and ``values`` the rows of
    :func:`~nbtools.records.history.compare_runs`, ``metrics`` the held-out metrics side by side
    and ``stages`` a :class:`StageDiff` per stage, in pipeline order.
    """

    runs: tuple[dict[str, Any], dict[str, Any]]
    parameters: list[dict[str, Any]]
    values: list[dict[str, Any]]
    metrics: list[dict[str, Any]]
    stages: list[StageDiff]

    @property
    def ids(self) -> tuple[str, str]:
        """The two run ids."""
        return str(self.runs[0]["run_id"]), str(self.runs[1]["run_id"])

    def stage(self, name: str) -> StageDiff:
        """Return the comparison of stage ``name``."""
        return next(stage for stage in self.stages if stage.name == name)

    def __repr__(self) -> str:
        return f"RunDiff({self.ids[0]!r}, {self.ids[1]!r})"

    def _repr_html_(self) -> str:
        return report_html(self, standalone=False)

    def __str__(self) -> str:
        return summary_text(self)


def diff_runs(runs_dir: Path, first: str, second: str) -> RunDiff:
    """Compare two runs of a project.

    Parameters
    ----------
    runs_dir : Path
        The project's ``runs`` folder.
    first, second : str
        The two run ids (a unique prefix is enough).

    Returns
    -------
    RunDiff

    Raises
    ------
    RunNotFoundError
        When an id matches no run, or more than one.
    """
    manifests = load_run(runs_dir, first), load_run(runs_dir, second)
    table = compare_runs(*manifests)
    marks = volatile_marks(manifests[0], runs_dir), volatile_marks(manifests[1], runs_dir)
    names = list(manifests[0].get("stages", {}))
    names += [n for n in manifests[1].get("stages", {}) if n not in names]
    stages = [_stage(name, manifests, table["parameters"], marks, runs_dir) for name in names]
    a, b = metrics(manifests[0]), metrics(manifests[1])
    metric_rows = [
        {"name": name, "values": [a.get(name), b.get(name)], "differs": a.get(name) != b.get(name)}
        for name in sorted({*a, *b})
    ]
    return RunDiff(manifests, table["parameters"], table["values"], metric_rows, stages)


def _stage(
    name: str,
    manifests: tuple[dict[str, Any], dict[str, Any]],
    parameter_rows: list[dict[str, Any]],
    marks: Any,
    runs_dir: Path,
) -> StageDiff:
    records = [m.get("stages", {}).get(name) or {} for m in manifests]
    folders = [
        _folder(record, manifest, runs_dir)
        for record, manifest in zip(records, manifests, strict=True)
    ]
    same = folders[0] is not None and folders[0] == folders[1]
    diff = StageDiff(
        name=name,
        status=(records[0].get("status"), records[1].get("status")),
        why=(records[0].get("why"), records[1].get("why")),
        reused_from=(records[0].get("reused_from"), records[1].get("reused_from")),
        same_execution=same,
        key_changes=_key_changes(records[0], records[1]),
        parameters=[r for r in parameter_rows if r["differs"] and r["name"].startswith(f"{name}.")],
        outputs_changed=_outputs_changed(records[0], records[1]),
    )
    if same:
        diff.note = "the same execution in both runs"
        return diff
    cells = [read_cells(record.get("executed_notebook")) for record in records]
    missing = [manifests[i]["run_id"] for i in (0, 1) if cells[i] is None]
    if missing:
        diff.note = f"no executed notebook in run {' and '.join(missing)}"
        return diff
    assert cells[0] is not None and cells[1] is not None
    diff.cells = compare_cells(cells[0], cells[1], marks)
    return diff


def _folder(record: Mapping[str, Any], manifest: Mapping[str, Any], runs_dir: Path) -> Path | None:
    if record.get("output_dir"):
        return Path(str(record["output_dir"])).resolve()
    if record.get("dir") and record.get("status") in _EXECUTED:
        return (runs_dir / str(manifest["run_id"]) / str(record["dir"])).resolve()
    return None


def _key_changes(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[str]:
    parts = [(record.get("cache") or {}).get("parts") or {} for record in (first, second)]
    if not parts[0] or not parts[1]:
        return []
    names = list(parts[0]) + [p for p in parts[1] if p not in parts[0]]
    return [p for p in names if parts[0].get(p) != parts[1].get(p)]


def _outputs_changed(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[str]:
    hashes = [record.get("output_hashes") or {} for record in (first, second)]
    return sorted(p for p in {*hashes[0], *hashes[1]} if hashes[0].get(p) != hashes[1].get(p))


def summary_text(diff: RunDiff, report: Path | None = None) -> str:
    """Say in a few lines what differs between the two runs (and where the report is)."""
    first, second = diff.ids
    lines = [f"Run {first} -> run {second}"]
    params = [row for row in diff.parameters if row["differs"]]
    lines.append(f"Parameters that differ: {len(params) or 'none'}")
    lines += [f"  {r['name']}: {_change(r['values'])}" for r in params]
    if diff.metrics:
        lines.append("Held-out metrics:")
        lines += [
            f"  {r['name']}: {_change(r['values'])}" + ("" if r["differs"] else " (same)")
            for r in diff.metrics
        ]
    values = [r for r in diff.values if r["differs"]]
    lines.append(f"Recorded values that differ: {len(values)} of {len(diff.values)}")
    lines.append("Stages:")
    width = max((len(s.name) for s in diff.stages), default=0)
    lines += [f"  {s.name:<{width}}  {stage_line(s, second)}" for s in diff.stages]
    if report is not None:
        lines.append(f"Report: {report}")
    return "\n".join(lines)


def stage_line(stage: StageDiff, second: str) -> str:
    """Say in one line how a stage differs between the runs: re-ran or not, why, what changed."""
    if stage.same_execution:
        source = stage.reused_from[1] or stage.reused_from[0]
        origin = f" (run {source}'s execution)" if source else ""
        return f"same execution in both{origin}"
    if None in stage.status:
        which = "first" if stage.status[1] is None else "second"
        return f"only in the {which} run"
    ran = stage.status[1] in _EXECUTED
    head = f"re-ran in {second}" if ran else f"{stage.status[1]} in {second}"
    why = stage.why[1] or ""
    parts = f"; key differs in {', '.join(stage.key_changes)}" if stage.key_changes else ""
    line = f"{head} ({why}){parts}" if why else f"{head}{parts}"
    if stage.cells is not None:
        line += f"; {len(stage.changed_cells)} of {len(stage.cells)} cells changed"
    elif stage.note:
        line += f"; {stage.note}"
    if stage.outputs_changed:
        line += f"; outputs changed: {', '.join(stage.outputs_changed)}"
    return line


def report_html(diff: RunDiff, *, standalone: bool = True) -> str:
    """Return the comparison as HTML with its style inline and images embedded (no network).

    ``standalone=False`` gives a fragment for a notebook's output (its style scoped to it),
    otherwise a whole page.
    """
    lines = {stage.name: stage_line(stage, diff.ids[1]) for stage in diff.stages}
    return render(diff, summary_text(diff), lines, standalone=standalone)


def default_report_path(project_dir: Path, diff: RunDiff) -> Path:
    """Return where the report of ``diff`` goes by default: ``diffs/<first>_<second>.html``."""
    first, second = diff.ids
    return project_dir / REPORTS_DIR / f"{first}_{second}.html"


def write_report(diff: RunDiff, path: Path) -> Path:
    """Write the self-contained HTML report of ``diff`` to ``path`` (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(diff), encoding="utf-8")
    return path


def _change(values: list[Any]) -> str:
    """``A -> B``, each side cut short for a terminal line."""
    return f"{short_value(values[0], 60)} -> {short_value(values[1], 60)}"

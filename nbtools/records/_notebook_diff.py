"""Two executed notebooks of one stage compared cell by cell, volatile metadata left out.

What counts is what a reader sees: a cell's source and its outputs. Left out: execution counts,
cell and notebook metadata (Papermill's timings and status, widget state), output metadata, the
ids of widget views, the random ids of pandas' styled tables, and the marks each run leaves on
its own outputs (its run id, its record folders, its MLflow run ids, and timestamps that fall
within the run itself). A date outside the run's own time, a number, a path elsewhere: all of
those still count.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

#: The tag Papermill gives the parameters cell it injects (a new cell id in every execution).
INJECTED = "injected-parameters"
#: Lines of context around each change of a text diff.
CONTEXT_LINES = 3
#: Mime types shown as images.
IMAGE_TYPES = ("image/png", "image/jpeg")
#: Mime types read as text, in the order a diff prefers them.
TEXT_TYPES = ("text/plain", "text/markdown", "text/latex", "application/json", "text/html")
_WIDGET = "application/vnd.jupyter.widget-view+json"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STYLER_ID = re.compile(r"\bT_[0-9a-f]{5}(?=[_\s\"'])")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")
#: How far around a run's start and end a timestamp counts as the run's own clock.
_CLOCK_MARGIN = timedelta(minutes=1)


@dataclass(frozen=True)
class Volatile:
    """The marks one run leaves on its outputs, replaced by placeholders before comparing.

    Parameters
    ----------
    replacements : dict of str to str
        Literal strings (run id, record folders, MLflow run ids) and their placeholders.
    started, finished : datetime or None
        The run's own time span: a timestamp inside it (give or take a minute) is its clock.
    """

    replacements: dict[str, str] = field(default_factory=dict)
    started: datetime | None = None
    finished: datetime | None = None

    def clean(self, text: str) -> str:
        """Return ``text`` with this run's marks replaced by placeholders."""
        text = _ANSI.sub("", text)
        for literal in sorted(self.replacements, key=len, reverse=True):
            text = text.replace(literal, self.replacements[literal])
        text = _STYLER_ID.sub("T_<id>", text)
        return _TIMESTAMP.sub(self._timestamp, text)

    def _timestamp(self, match: re.Match[str]) -> str:
        when = _parse_time(match.group(0))
        if when is None or self.started is None:
            return match.group(0)
        finished = self.finished or self.started
        inside = self.started - _CLOCK_MARGIN <= when <= finished + _CLOCK_MARGIN
        return "<time of the run>" if inside else match.group(0)


def volatile_marks(manifest: Mapping[str, Any], runs_dir: Path) -> Volatile:
    """Return the marks of one run: its id, record folders, MLflow runs and time span."""
    run_id = str(manifest["run_id"])
    replacements = {str((runs_dir / run_id).resolve()): "<run folder>", run_id: "<run id>"}
    parent = (manifest.get("mlflow") or {}).get("parent_run_id")
    if parent:
        replacements[str(parent)] = "<mlflow run>"
    for record in manifest.get("stages", {}).values():
        if record.get("output_dir"):
            replacements[str(record["output_dir"])] = "<stage folder>"
        if record.get("mlflow_run_id"):
            replacements[str(record["mlflow_run_id"])] = "<mlflow run>"
        if record.get("reused_from"):
            replacements[str(record["reused_from"])] = "<run id>"
    return Volatile(
        replacements,
        _parse_time(manifest.get("started_at")),
        _parse_time(manifest.get("finished_at")),
    )


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else None  # a naive time cannot be placed in the run's span


@dataclass
class OutputDiff:
    """One output of a cell in both notebooks.

    ``kind`` is ``"text"`` or ``"image"``; ``status`` is ``"unchanged"``, ``"changed"``,
    ``"added"`` (only in the second notebook) or ``"removed"`` (only in the first). ``text`` holds
    the unified diff of a changed text output, or its text when unchanged, added or removed;
    ``images`` the base64 PNG or JPEG of each side (``None`` on a side without it).
    """

    kind: str
    status: str
    text: list[str] = field(default_factory=list)
    images: tuple[str | None, str | None] = (None, None)
    mime: str = "text/plain"


@dataclass
class CellDiff:
    """One cell in both notebooks, with its position in each (``None`` where it is missing)."""

    cell_type: str
    status: str
    positions: tuple[int | None, int | None]
    source: str
    source_diff: list[str] = field(default_factory=list)
    outputs: list[OutputDiff] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether a reader sees anything different in this cell."""
        return self.status != "unchanged"


def read_cells(path: str | Path | None) -> list[dict[str, Any]] | None:
    """Return the cells of an executed notebook, or ``None`` when there is no such file."""
    if not path or not Path(path).is_file():
        return None
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    return list(notebook.get("cells", []))


def compare_cells(
    first: list[dict[str, Any]],
    second: list[dict[str, Any]],
    marks: tuple[Volatile, Volatile],
) -> list[CellDiff]:
    """Pair the cells of two executions of a stage notebook and compare each pair.

    Cells pair by id (Papermill's injected parameters cell, new in every execution, by its tag),
    in order, so an inserted or deleted cell shows as added or removed. Cells without ids (notebooks
    before nbformat 4.5) pair by source, and an edited one by its position among the others.
    """
    keys = [[_cell_key(cell) for cell in cells] for cells in (first, second)]
    matcher = difflib.SequenceMatcher(a=keys[0], b=keys[1], autojunk=False)
    found: list[CellDiff] = []
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and a1 - a0 == b1 - b0 and not _ids(first[a0:a1])):
            for i, j in zip(range(a0, a1), range(b0, b1), strict=True):
                found.append(_pair(first[i], second[j], (i, j), marks))
            continue
        found.extend(_alone(first[i], (i, None), "removed", marks[0]) for i in range(a0, a1))
        found.extend(_alone(second[j], (None, j), "added", marks[1]) for j in range(b0, b1))
    return found


def _ids(cells: list[dict[str, Any]]) -> bool:
    return any(cell.get("id") for cell in cells)


def _cell_key(cell: Mapping[str, Any]) -> str:
    tags = (cell.get("metadata") or {}).get("tags") or []
    if INJECTED in tags:
        return INJECTED
    return str(cell.get("id") or _text(cell.get("source")))


def _pair(
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    positions: tuple[int, int],
    marks: tuple[Volatile, Volatile],
) -> CellDiff:
    sources = _text(a.get("source")), _text(b.get("source"))
    if _cell_key(b) == INJECTED:  # written by the runner: it names each run's own folders
        sources = marks[0].clean(sources[0]), marks[1].clean(sources[1])
    source_diff = [] if sources[0] == sources[1] else _unified(*sources)
    outputs = [
        _output_pair(x, y) for x, y in _zip_longest(_outputs(a, marks[0]), _outputs(b, marks[1]))
    ]
    changed = source_diff or any(o.status != "unchanged" for o in outputs)
    return CellDiff(
        cell_type=str(b.get("cell_type")),
        status="changed" if changed else "unchanged",
        positions=positions,
        source=sources[1],
        source_diff=source_diff,
        outputs=outputs,
        tags=list((b.get("metadata") or {}).get("tags") or []),
    )


def _alone(
    cell: Mapping[str, Any], positions: tuple[int | None, int | None], status: str, mark: Volatile
) -> CellDiff:
    removed = status == "removed"
    outputs = [
        _output_pair(shown, None) if removed else _output_pair(None, shown)
        for shown in _outputs(cell, mark)
    ]
    return CellDiff(
        cell_type=str(cell.get("cell_type")),
        status=status,
        positions=positions,
        source=_text(cell.get("source")),
        outputs=outputs,
        tags=list((cell.get("metadata") or {}).get("tags") or []),
    )


@dataclass(frozen=True)
class _Shown:
    """An output as a reader sees it: its comparable form and what to show of it."""

    kind: str
    mime: str
    text: str
    image: str | None
    comparable: str


def _outputs(cell: Mapping[str, Any], mark: Volatile) -> list[_Shown]:
    return [_shown(output, mark) for output in cell.get("outputs") or []]


def _shown(output: Mapping[str, Any], mark: Volatile) -> _Shown:
    kind = output.get("output_type")
    if kind == "stream":
        text = mark.clean(_text(output.get("text")))
        return _Shown("text", f"stream/{output.get('name')}", text, None, f"stream:{text}")
    if kind == "error":
        text = mark.clean("\n".join(output.get("traceback") or []))
        text = text or f"{output.get('ename')}: {output.get('evalue')}"
        return _Shown("text", "error", text, None, f"error:{text}")
    data = dict(output.get("data") or {})
    if _WIDGET in data:  # the view's model id is new in every execution
        view = {k: v for k, v in dict(data[_WIDGET]).items() if k != "model_id"}
        data[_WIDGET] = view
    for mime in IMAGE_TYPES:
        if mime in data:
            image = "".join(_text(data[mime]).split())
            return _Shown("image", mime, _text(data.get("text/plain")), image, f"{mime}:{image}")
    shown_mime = next((m for m in TEXT_TYPES if m in data), None)
    cleaned = {
        mime: mark.clean(_json(value) if isinstance(value, dict) else _text(value))
        for mime, value in data.items()
    }
    shown = cleaned.get(shown_mime, "") if shown_mime else _json(cleaned)
    return _Shown("text", shown_mime or "data", shown, None, _json(cleaned))


def _output_pair(a: _Shown | None, b: _Shown | None) -> OutputDiff:
    shown = b or a
    assert shown is not None
    status = (
        "added"
        if a is None
        else "removed"
        if b is None
        else "unchanged"
        if a.comparable == b.comparable
        else "changed"
    )
    if shown.kind == "image" or (a and a.kind == "image") or (b and b.kind == "image"):
        images = (a.image if a else None, b.image if b else None)
        return OutputDiff("image", status, images=images, mime=shown.mime)
    if status == "changed" and a and b:
        text = _unified(a.text, b.text) or _unified(a.comparable, b.comparable)
    else:
        text = shown.text.splitlines()
    return OutputDiff("text", status, text=text, mime=shown.mime)


def _unified(first: str, second: str) -> list[str]:
    lines = difflib.unified_diff(
        first.splitlines(),
        second.splitlines(),
        "first run",
        "second run",
        n=CONTEXT_LINES,
        lineterm="",
    )
    return list(lines)


def _zip_longest(
    first: list[_Shown], second: list[_Shown]
) -> Iterable[tuple[_Shown | None, _Shown | None]]:
    for index in range(max(len(first), len(second))):
        yield (
            first[index] if index < len(first) else None,
            second[index] if index < len(second) else None,
        )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return str(value)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)

"""The HTML of a run comparison: one page, style inline, images embedded, no script, no network.

Unchanged cells are folded (``<details>``), changed ones open; text outputs show as a unified
diff and images side by side. Everything from the notebooks is escaped: no output's own HTML is
rendered, so a report is safe to open whatever the notebooks held.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbtools.records._notebook_diff import CellDiff, OutputDiff
    from nbtools.records.run_diff import RunDiff, StageDiff

#: Every rule is scoped to the report's root: shown inside JupyterLab, it styles only itself.
_STYLE = """
.nbd{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1f2328;
background:#fff;padding:8px;max-width:1400px}
.nbd h1{font-size:22px;margin:0 0 8px}.nbd h2{font-size:18px;margin:28px 0 8px;
border-bottom:1px solid #d0d7de;padding-bottom:4px}.nbd h3{font-size:16px;margin:20px 0 6px}
.nbd table{border-collapse:collapse;margin:6px 0}.nbd th,.nbd td{border:1px solid #d0d7de;
padding:3px 8px;text-align:left;vertical-align:top}.nbd th{background:#f6f8fa}
.nbd tr.nbd-differs td{background:#fff8c5}.nbd pre{margin:0;padding:6px 8px;overflow-x:auto;
background:#f6f8fa;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;white-space:pre}
.nbd pre.nbd-summary{background:#eef6ff;border:1px solid #b6d4fe;white-space:pre-wrap}
.nbd .nbd-add{background:#dafbe1;display:block}.nbd .nbd-del{background:#ffebe9;display:block}
.nbd .nbd-hunk{color:#8250df;display:block}
.nbd details{border:1px solid #d0d7de;border-radius:4px;margin:4px 0}
.nbd details>summary{cursor:pointer;padding:3px 8px;background:#f6f8fa}
.nbd details.nbd-changed{border-color:#d4a72c}.nbd details.nbd-changed>summary{background:#fff8c5}
.nbd details.nbd-added>summary{background:#dafbe1}
.nbd details.nbd-removed>summary{background:#ffebe9}
.nbd .nbd-cell-body{padding:6px 8px}.nbd .nbd-output{margin:6px 0}
.nbd .nbd-label{font-size:12px;color:#59636e;margin:2px 0}
.nbd .nbd-images{display:flex;gap:12px;align-items:flex-start}
.nbd .nbd-images figure{margin:0;flex:1 1 0;min-width:0}
.nbd .nbd-images img{max-width:100%;border:1px solid #d0d7de}
.nbd .nbd-missing{color:#59636e;font-style:italic;padding:8px}
.nbd .nbd-tag{font-size:11px;background:#ddf4ff;border-radius:8px;padding:0 6px;margin-left:6px}
"""


def render(
    diff: RunDiff, summary: str, stage_lines: Mapping[str, str], *, standalone: bool = True
) -> str:
    """Return the report of ``diff``: a whole page, or a fragment for a notebook's output."""
    first, second = diff.ids
    body = [
        f"<h1>Run {escape(first)} → run {escape(second)}</h1>",
        f'<pre class="nbd-summary">{escape(summary)}</pre>',
        _runs_table(diff),
        "<h2>Parameters that differ</h2>",
        _value_table(
            [r for r in diff.parameters if r["differs"]], diff.ids, "No parameter differs."
        ),
        "<h2>Held-out metrics</h2>",
        _value_table(diff.metrics, diff.ids, "Neither run recorded a held-out metric."),
        "<h2>Recorded values</h2>",
        _folded_values(diff),
        "<h2>Stages: which re-ran and why</h2>",
        _stages_table(diff, stage_lines),
        *(_stage_section(stage, diff.ids) for stage in diff.stages if stage.cells is not None),
    ]
    fragment = f'<div class="nbd"><style>{_STYLE}</style>{"".join(body)}</div>'
    if not standalone:
        return fragment
    title = escape(f"nbtools: run {first} vs run {second}")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title></head><body>{fragment}</body></html>\n"
    )


def _runs_table(diff: RunDiff) -> str:
    rows: list[tuple[str, ...]] = [("", "first run", "second run")]
    for key in ("run_id", "status", "started_at", "duration_s", "profile", "overrides"):
        rows.append((key, *(short_value(run.get(key)) for run in diff.runs)))
    git = [(run.get("environment") or {}).get("git") or {} for run in diff.runs]
    commits = (short_value(g.get("commit")) + (" (dirty)" if g.get("dirty") else "") for g in git)
    rows.append(("git commit", *commits))
    head, *rest = rows
    return _table(head, rest)


def _value_table(rows: list[dict[str, Any]], ids: tuple[str, str], empty: str) -> str:
    if not rows:
        return f"<p>{escape(empty)}</p>"
    body = "".join(
        f'<tr class="{"nbd-differs" if r["differs"] else ""}"><td>{escape(r["name"])}</td>'
        + "".join(f"<td>{escape(short_value(v))}</td>" for v in r["values"])
        + "</tr>"
        for r in rows
    )
    head = f"<tr><th>name</th><th>{escape(ids[0])}</th><th>{escape(ids[1])}</th></tr>"
    return f"<table>{head}{body}</table>"


def _folded_values(diff: RunDiff) -> str:
    differs = [r for r in diff.values if r["differs"]]
    same = [r for r in diff.values if not r["differs"]]
    parts = [_value_table(differs, diff.ids, "No recorded value differs.")]
    if same:
        parts.append(
            f"<details><summary>{_count(len(same), 'recorded value')} the same in both runs"
            "</summary>"
            f'<div class="nbd-cell-body">{_value_table(same, diff.ids, "")}</div></details>'
        )
    return "".join(parts)


def _stages_table(diff: RunDiff, lines: Mapping[str, str]) -> str:
    head = ("stage", f"in {diff.ids[0]}", f"in {diff.ids[1]}", "between the runs")
    rows = []
    for stage in diff.stages:
        cells = [_how(stage.status[i], stage.why[i], stage.reused_from[i]) for i in (0, 1)]
        rows.append((stage.name, *cells, lines[stage.name]))
    marks = ["nbd-differs" if stage.changed else "" for stage in diff.stages]
    return _table(head, rows, marks)


def _how(status: str | None, why: str | None, reused_from: str | None) -> str:
    if status is None:
        return "not in this run"
    text = status + (f": {why}" if why else "")
    return text + (f" (from run {reused_from})" if reused_from else "")


def _stage_section(stage: StageDiff, ids: tuple[str, str]) -> str:
    cells = stage.cells or []
    changed = len(stage.changed_cells)
    head = (
        f'<h3 id="stage-{escape(stage.name)}">Stage {escape(stage.name)}: '
        f"{changed} of {len(cells)} cells changed</h3>"
    )
    return head + "".join(_cell(cell, ids) for cell in cells)


def _cell(cell: CellDiff, ids: tuple[str, str]) -> str:
    where = " / ".join("-" if p is None else str(p) for p in cell.positions)
    first_line = next((line for line in cell.source.splitlines() if line.strip()), "")
    tags = "".join(f'<span class="nbd-tag">{escape(t)}</span>' for t in cell.tags)
    title = f"{cell.status}: {cell.cell_type} cell {where} — {first_line[:100]}"
    opened = " open" if cell.changed else ""
    body = [_source(cell)]
    body += [_output(output, ids) for output in cell.outputs]
    return (
        f'<details class="nbd-cell nbd-{cell.status}"{opened}>'
        f"<summary>{escape(title)}{tags}</summary>"
        f'<div class="nbd-cell-body">{"".join(body)}</div></details>'
    )


def _source(cell: CellDiff) -> str:
    if cell.source_diff:
        return '<div class="nbd-label">source (diff)</div>' + _diff_pre(cell.source_diff)
    return f"<pre>{escape(cell.source)}</pre>"


def _output(output: OutputDiff, ids: tuple[str, str]) -> str:
    label = f'<div class="nbd-label">output ({escape(output.mime)}): {output.status}</div>'
    if output.kind == "image":
        return f'<div class="nbd-output">{label}{_images(output, ids)}</div>'
    if output.status == "changed":
        return f'<div class="nbd-output">{label}{_diff_pre(output.text)}</div>'
    return f'<div class="nbd-output">{label}<pre>{escape(chr(10).join(output.text))}</pre></div>'


def _images(output: OutputDiff, ids: tuple[str, str]) -> str:
    if output.status == "unchanged":
        return _figure(output.images[1], output.mime, "the same in both runs")
    figures = (
        _figure(image, output.mime, run) for image, run in zip(output.images, ids, strict=True)
    )
    return f'<div class="nbd-images">{"".join(figures)}</div>'


def _figure(image: str | None, mime: str, caption: str) -> str:
    if image is None:
        shown = '<div class="nbd-missing">no image in this run</div>'
    else:
        shown = f'<img alt="{escape(caption)}" src="data:{escape(mime)};base64,{escape(image)}">'
    return f'<figure>{shown}<figcaption class="nbd-label">{escape(caption)}</figcaption></figure>'


def _diff_pre(lines: Iterable[str]) -> str:
    spans = []
    for line in lines:
        kind = (
            "nbd-hunk"
            if line.startswith("@@")
            else ""
            if line.startswith(("+++", "---"))
            else "nbd-add"
            if line.startswith("+")
            else "nbd-del"
            if line.startswith("-")
            else ""
        )
        spans.append(f'<span class="{kind}">{escape(line)}</span>' if kind else escape(line) + "\n")
    return f"<pre>{''.join(spans)}</pre>"


def _table(
    head: Iterable[str], rows: Iterable[Iterable[str]], marks: list[str] | None = None
) -> str:
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        f'<tr class="{(marks or [])[i] if marks else ""}">'
        + "".join(f"<td>{escape(str(c))}</td>" for c in row)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><tr>{header}</tr>{body}</table>"


def _count(number: int, thing: str) -> str:
    return f"1 {thing} is" if number == 1 else f"{number} {thing}s are"


def short_value(value: Any, width: int = 200) -> str:
    """``value`` as report text: ``-`` for None, 4 significant digits for a float, and text
    cut to ``width`` characters."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."

"""Checks a user can run on their own stage notebooks, as scikit-learn ships ``check_estimator``.

A stage notebook must declare typed parameters in exactly one ``parameters`` cell, leave the
runner-injected names to the runner, open its stage context, and be stored without outputs. A
built-in template whose parameters are declared in Python must also hold exactly the cell that
its declaration renders (:func:`nbtools.params.render_parameters_cell`).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

import nbformat

from nbtools.errors import NbtoolsError, PipelineSpecError
from nbtools.params import RESERVED_NAMES, parse_parameters_cell
from nbtools.pipeline.spec import PIPELINE_FILE, Pipeline, load_pipeline

#: A generated parameters cell: the declaring classes' names and the cell they render.
Declared = tuple[str, str]


def check_notebook(
    path: Path, stage: str | None = None, declared: Declared | None = None
) -> list[str]:
    """Return the problems found in a notebook (an empty list when it passes).

    Every notebook is checked for stored outputs. A notebook with a cell tagged ``parameters``
    is checked as a stage notebook; ``stage``, when given, is the name it must open its context
    with; ``declared``, when given, names the declaration its parameters cell is generated from
    and the cell it must hold.
    """
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises several unrelated types for a broken file
        return [f"{path}: not a readable notebook ({exc})"]
    problems = [
        f"{path}: cell {i} is stored with outputs; clear them before committing"
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.execution_count)
    ]
    tagged = [
        c
        for c in nb.cells
        if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    if tagged:
        problems += [f"{path}: {p}" for p in _stage_problems(nb, tagged, stage, path.stem)]
    if declared is not None and len(tagged) == 1:
        problem = declared_cell_problem(str(tagged[0].source), *declared)
        problems += [f"{path}: {problem}"] if problem else []
    return problems


def declared_cell_problem(source: str, declaration: str, expected: str) -> str | None:
    """Say how a parameters cell differs from the cell its declaration renders, if it does.

    Parameters
    ----------
    source : str
        The notebook's parameters cell.
    declaration : str
        The classes that declare the parameters, as people should look them up.
    expected : str
        The cell they render.
    """
    if source == expected:
        return None
    found, wanted = source.splitlines(), expected.splitlines()
    line = next(
        (i for i, (a, b) in enumerate(zip(found, wanted, strict=False)) if a != b),
        min(len(found), len(wanted)),
    )
    got = found[line] if line < len(found) else "(end of cell)"
    want = wanted[line] if line < len(wanted) else "(end of cell)"
    return (
        f"the parameters cell differs from its declaration in {declaration}: line {line + 1} "
        f"is {got!r} but the declaration gives {want!r}. Change the declaration, not the cell, "
        "then regenerate the cell from it."
    )


def _stage_problems(
    nb: nbformat.NotebookNode, tagged: list, stage: str | None, label: str
) -> list[str]:
    if len(tagged) != 1:
        return [f"has {len(tagged)} cells tagged 'parameters'; a stage needs exactly one"]
    problems = []
    source = str(tagged[0].source)
    try:
        parse_parameters_cell(source, stage or label)
    except PipelineSpecError as exc:
        problems.append(str(exc))
        return problems
    assigned = {
        n.targets[0].id: n.value
        for n in ast.parse(source).body
        if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
    }
    for name in RESERVED_NAMES:
        value = assigned.get(name)
        if not (isinstance(value, ast.Constant) and value.value is None):
            problems.append(
                f"the parameters cell must end with '{name} = None' (the runner fills it in)"
            )
    names = _context_names(nb)
    if not names:
        problems.append('no cell calls nbtools.stage_context("<stage>", globals())')
    elif stage is not None and stage not in names:
        problems.append(f"opens stage_context({names[0]!r}, ...) but is stage '{stage}'")
    return problems


def _context_names(nb: nbformat.NotebookNode) -> list[str]:
    names = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(str(cell.source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", None) == "stage_context"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.append(str(node.args[0].value))
    return names


def check_paths(paths: list[Path], declared: Mapping[Path, Declared] | None = None) -> list[str]:
    """Check every notebook in ``paths`` (files or folders); return all problems found.

    In a folder holding ``pipeline.yaml``, each stage notebook is also checked against the name
    the pipeline gives it. ``declared`` maps the resolved path of a notebook whose parameters
    cell is generated to its declaration and expected cell (see :func:`check_notebook`).
    """
    declared = declared or {}
    problems: list[str] = []
    for path in paths:
        if path.is_dir():
            stages = {}
            if (path / PIPELINE_FILE).is_file():
                pipeline = load_pipeline(path)
                stages = {s.notebook: s.name for s in pipeline.stages}
                problems += _reads_problems(pipeline)
            for notebook in sorted(path.rglob("*.ipynb")):
                if not _recorded(notebook, path):
                    resolved = notebook.resolve()
                    problems += check_notebook(
                        notebook, stages.get(resolved), declared.get(resolved)
                    )
        else:
            problems += check_notebook(path, declared=declared.get(path.resolve()))
    return problems


def _reads_problems(pipeline: Pipeline) -> list[str]:
    """Return a problem for each stage whose declared ``reads`` names no parameter of it."""
    problems = []
    for stage in pipeline.stages:
        if stage.reads is None:
            continue
        try:
            _ = stage.schema
        except NbtoolsError:
            continue  # the notebook's own problems are reported with it
        try:
            _ = stage.read_sources
        except PipelineSpecError as exc:
            problems.append(str(exc))
    return problems


#: Folders of a project that hold executed notebooks (run records, MLflow artifacts, scratch):
#: outputs there are the point, not a mistake.
RECORD_FOLDERS = frozenset({"runs", "mlartifacts", "mlruns", ".nbtools"})


def _recorded(notebook: Path, top: Path) -> bool:
    """Whether ``notebook``, found under ``top``, is a checkpoint or lies in a project's records."""
    if ".ipynb_checkpoints" in notebook.parts:
        return True
    folders = notebook.relative_to(top).parents
    return any(
        (top / f).name in RECORD_FOLDERS and (top / f).parent.joinpath(PIPELINE_FILE).is_file()
        for f in folders
        if f != Path(".")
    )

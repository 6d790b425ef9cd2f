"""Creating a project: ``pipeline.yaml`` and the stage notebooks, copied from the templates.

The templates are the one source of truth for stage notebooks. In an installed wheel they live in
``nbtools/templates``; in a source checkout, in ``templates/`` at the repository root.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from nbtools.core.data import make_churn
from nbtools.core.errors import DataSourceError, NbtoolsError
from nbtools.core.spec import PIPELINE_FILE

DEMO_DATA = Path("data") / "churn.csv"
TASKS = ("auto", "classification", "regression", "clustering")


def templates_dir() -> Path:
    """Return the folder holding the template ``pipeline.yaml`` and stage notebooks."""
    packaged = Path(str(resources.files("nbtools") / "templates"))
    if (packaged / PIPELINE_FILE).is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates"


def create_project(
    directory: str | Path,
    *,
    data: str | None = None,
    target: str | None = None,
    task: str = "auto",
    table: str | None = None,
    query: str | None = None,
) -> Path:
    """Create a new project folder with a pipeline over ``data`` (or the bundled demo data).

    Parameters
    ----------
    directory : str or Path
        The folder to create; it must not exist or be empty.
    data : str, optional
        A CSV or Parquet path, a SQLAlchemy URL (with ``table`` or ``query``), or an http(s) URL
        returning JSON records. Without it the project gets the bundled churn demo data.
    target : str, optional
        The column to predict; required with ``data`` unless ``task`` is ``clustering``.
    task : str
        ``auto`` (decided from the target), ``classification``, ``regression`` or
        ``clustering``.
    table, query : str, optional
        For a SQL source, the table to read or the query to run.

    Returns
    -------
    Path
        The project folder.

    Raises
    ------
    NbtoolsError
        When the folder is not empty, the task is unknown or a target is missing.
    DataSourceError
        When a local data file does not exist.
    """
    root = Path(directory).resolve()
    if root.exists() and any(root.iterdir()):
        raise NbtoolsError(f"{root} is not empty. Choose a new folder for the project.")
    if task not in TASKS:
        raise NbtoolsError(f"--task must be one of {', '.join(TASKS)}. Got {task!r} instead.")
    ingest = _ingest_parameters(data, target, task, table, query)
    templates = templates_dir()
    root.mkdir(parents=True, exist_ok=True)
    for notebook in sorted(templates.glob("*.ipynb")):
        shutil.copy2(notebook, root / notebook.name)
    yaml = YAML()
    spec = yaml.load((templates / PIPELINE_FILE).read_text(encoding="utf-8"))
    if data is None:  # the demo data as a file of the project's own, to look at and edit
        (root / DEMO_DATA).parent.mkdir()
        make_churn().to_csv(root / DEMO_DATA, index=False)
        spec["stages"]["ingest"]["parameters"]["source"] = DEMO_DATA.as_posix()
    else:
        spec["name"] = root.name
        spec["model_name"] = f"{root.name}-model"
        spec["stages"]["ingest"]["parameters"] = ingest
        del spec["stages"]["clean"]["parameters"]  # the demo data's rules, not the user's
    with (root / PIPELINE_FILE).open("w", encoding="utf-8") as handle:
        yaml.dump(spec, handle)
    (root / ".gitignore").write_text(
        "runs/\nmlruns/\nmlartifacts/\nmlflow.db\n.nbtools/\n", encoding="utf-8"
    )
    return root


def _ingest_parameters(
    data: str | None, target: str | None, task: str, table: str | None, query: str | None
) -> dict[str, Any]:
    if data is None:
        return {}
    if target is None and task != "clustering":
        raise NbtoolsError(
            "--target is required with --data: name the column to predict "
            "(or use --task clustering)."
        )
    source = data
    if "://" not in data:
        path = Path(data).expanduser().resolve()
        if not path.is_file():
            raise DataSourceError(f"Data file {path} does not exist. Check the --data path.")
        source = str(path)
    parameters: dict[str, Any] = {"source": source, "target": target, "task": task}
    if table is not None:
        parameters["table"] = table
    if query is not None:
        parameters["query"] = query
    return parameters

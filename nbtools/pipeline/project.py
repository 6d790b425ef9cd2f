"""Creating a project: ``pipeline.yaml`` and the stage notebooks, copied from the templates.

The templates are the one source of truth for stage notebooks. In an installed wheel they live in
``nbtools/templates``; in a source checkout, in ``templates/`` at the repository root.
"""

from __future__ import annotations

import difflib
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet
from ruamel.yaml import YAML

from nbtools.demo import make_churn
from nbtools.errors import DataSourceError, InvalidParameterError, NbtoolsError, ProjectExistsError
from nbtools.pipeline.spec import PIPELINE_FILE
from nbtools.tables import load_source, redact_source, source_kind

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
    ProjectExistsError
        When the folder is not empty.
    InvalidParameterError
        When the task is unknown, or a data source comes without its target.
    DataSourceError
        When a local data file does not exist or cannot be read.
    InvalidParameterError
        When the data has no column ``target`` (the message suggests the nearest name).
        Nothing is created then.
    """
    root = Path(directory).resolve()
    if root.exists() and any(root.iterdir()):
        raise ProjectExistsError(f"{root} is not empty. Choose a new folder for the project.")
    if task not in TASKS:
        raise InvalidParameterError(
            f"The task of a new project must be one of {', '.join(TASKS)}. Got {task!r} instead."
        )
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
        "runs/\ndiffs/\nmlruns/\nmlartifacts/\nmlflow.db\n.nbtools/\n", encoding="utf-8"
    )
    return root


def _ingest_parameters(
    data: str | None, target: str | None, task: str, table: str | None, query: str | None
) -> dict[str, Any]:
    if data is None:
        return {}
    if target is None and task != "clustering":
        raise InvalidParameterError(
            "A project on a data source needs its target: name the column to predict "
            "(or make the task 'clustering')."
        )
    source = data
    if "://" not in data:
        path = Path(data).expanduser().resolve()
        if not path.is_file():
            raise DataSourceError(f"Data file {path} does not exist. Check the path.")
        source = str(path)
    parameters: dict[str, Any] = {"source": source, "target": target, "task": task}
    if table is not None:
        parameters["table"] = table
    if query is not None:
        parameters["query"] = query
    if target is not None:
        columns = source_columns(source, table=table, query=query)
        if columns is not None:
            check_target(target, columns, source)
    return parameters


def source_columns(
    source: str, *, table: str | None = None, query: str | None = None
) -> list[str] | None:
    """Read the column names of a data source without reading all of it, where that is cheap.

    A CSV file's header, a Parquet file's schema, a SQL table's or query's column list (the
    query runs, but no row is fetched), a JSON file's or an HTTP source's records.

    Returns
    -------
    list of str or None
        The column names; None when a SQL or HTTP source cannot be read now (the ingest stage
        reports that when the pipeline runs).

    Raises
    ------
    DataSourceError
        When a local file cannot be read.
    """
    kind = source_kind(source)
    if kind == "csv":
        sep = "\t" if source.lower().endswith(".tsv") else ","
        try:
            return [str(c) for c in pd.read_csv(source, sep=sep, nrows=0).columns]
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataSourceError(f"Cannot read the header of CSV file '{source}': {exc}") from exc
    if kind == "parquet":
        try:
            return list(pyarrow.parquet.read_schema(source).names)
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise DataSourceError(f"'{source}' is not a readable Parquet file: {exc}") from exc
    if kind == "sql":
        return _sql_columns(source, table, query)
    try:
        return [str(c) for c in load_source(source, timeout=10.0).columns]
    except NbtoolsError:
        if kind == "json":
            raise
        return None


def _sql_columns(url: str, table: str | None, query: str | None) -> list[str] | None:
    import sqlalchemy as sa

    try:
        parsed = sa.engine.make_url(url)
        database = parsed.database
        local = parsed.drivername.startswith("sqlite") and database not in (None, "", ":memory:")
        if local and not Path(str(database)).expanduser().is_file():
            return None  # connecting would create an empty database
        engine = sa.create_engine(parsed)
        try:
            with engine.connect() as connection:
                if query is not None:
                    names = connection.execute(sa.text(query)).keys()
                    return [str(name) for name in names]
                if table is None:
                    return None
                return [c["name"] for c in sa.inspect(connection).get_columns(table)]
        finally:
            engine.dispose()
    except Exception:  # any problem with the database is the ingest stage's to report
        return None


def check_target(target: str, columns: list[str], source: str) -> None:
    """Fail when ``target`` is not among ``columns``, suggesting the nearest column name.

    The nearest name is the same name in another case (``Survived`` for ``survived``), else the
    closest spelling (:func:`difflib.get_close_matches`, case-insensitive).

    Raises
    ------
    InvalidParameterError
        Naming the target, the nearest column (when one is close) and the columns.
    """
    if target in columns:
        return
    lowered = {column.lower(): column for column in reversed(columns)}
    nearest = lowered.get(target.lower())
    if nearest is None:
        close = difflib.get_close_matches(target.lower(), list(lowered), n=1, cutoff=0.6)
        nearest = lowered[close[0]] if close else None
    shown = ", ".join(columns[:30]) + (f" ... ({len(columns)} in all)" if len(columns) > 30 else "")
    hint = f" Did you mean '{nearest}'?" if nearest else ""
    raise InvalidParameterError(
        f"The target column '{target}' is not in {redact_source(source)}.{hint} "
        f"Its columns: {shown}. Nothing was created."
    )

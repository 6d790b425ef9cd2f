"""The prediction log: every prediction a served model made, as Parquet part-files.

``nbtools serve`` appends one part-file per batch of requests under a folder (by default
``<project>/predictions/``); this module is the reading side, for the monitoring stage and for
anyone looking at what the service saw. Each row is one predicted input row:

=================  ==========================================================================
column             content
=================  ==========================================================================
``timestamp``      when the request was answered (UTC)
``model_name``     registered model name
``model_version``  registry version that made the prediction
``request_id``     id of the request (the ``X-Request-ID`` response header), shared by its rows
``request_row``    position of the row in its request (0 for the first), added when read back
input columns      the row as the model received it, named as in the model signature
``prediction``     the model's prediction
``proba_<class>``  class probabilities, only for requests that asked for them
=================  ==========================================================================

Part-files are named ``part-<UTC time>-<process id>-<sequence>.parquet`` so that several
serving workers can write to the same folder, and sort by time.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

#: Glob pattern of the prediction log's part-files.
PART_PATTERN = "part-*.parquet"

#: Columns every prediction log row has, before the input columns.
META_COLUMNS = ("timestamp", "model_name", "model_version", "request_id")

#: Name of the prediction column, after the input columns.
PREDICTION_COLUMN = "prediction"

#: Prefix of the class-probability columns.
PROBA_PREFIX = "proba_"

#: Column added on reading: the row's position in its request. With ``request_id`` it names a
#: prediction, so labels that arrive later can be joined to it.
ROW_COLUMN = "request_row"


def part_files(directory: str | Path) -> list[Path]:
    """Return the prediction log's part-files under ``directory``, oldest first.

    Parameters
    ----------
    directory : str or Path
        The prediction log folder; a folder that does not exist holds no parts.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return []
    return sorted(folder.glob(PART_PATTERN))


def read_predictions(
    directory: str | Path,
    *,
    model_version: str | None = None,
    since: pd.Timestamp | str | None = None,
) -> pd.DataFrame:
    """Read the prediction log back as one DataFrame, oldest row first.

    Parameters
    ----------
    directory : str or Path
        The prediction log folder, e.g. ``<project>/predictions``.
    model_version : str, optional
        Keep only the rows predicted by this registry version.
    since : Timestamp or str, optional
        Keep only the rows at or after this time (UTC when no zone is given).

    Returns
    -------
    DataFrame
        The columns described in the module docstring; an empty frame with the metadata
        columns when nothing was logged yet. Filters apply after ``request_row`` is numbered.
    """
    parts = part_files(directory)
    if not parts:
        return pd.DataFrame(columns=[*META_COLUMNS, ROW_COLUMN, PREDICTION_COLUMN])
    table = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    # A request's rows are written together and in order, so their rank is their position.
    table.insert(len(META_COLUMNS), ROW_COLUMN, table.groupby("request_id", sort=False).cumcount())
    if model_version is not None:
        table = table[table["model_version"] == str(model_version)]
    if since is not None:
        start = pd.Timestamp(since)
        start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
        table = table[table["timestamp"] >= start]
    return table.sort_values("timestamp", kind="stable").reset_index(drop=True)


def input_columns(log: pd.DataFrame) -> list[str]:
    """Return the model-input columns of a prediction log frame (neither metadata nor outputs).

    Parameters
    ----------
    log : DataFrame
        A frame from :func:`read_predictions`.
    """
    return [
        c
        for c in log.columns
        if c not in (*META_COLUMNS, ROW_COLUMN, PREDICTION_COLUMN)
        and not c.startswith(PROBA_PREFIX)
    ]

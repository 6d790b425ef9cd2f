"""Write a panel's choices into ``pipeline.yaml``, keeping the user's comments and layout.

The file is edited with ruamel.yaml in round-trip mode: only the stage's ``parameters`` mapping
changes, everything else (comments, key order, quoting, other stages, profiles) is kept. The values
are validated against the stage's parameters cell first, the new file is checked by loading the
pipeline from it, and it replaces the old one atomically, so a bad value never reaches the file.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from nbtools.errors import NbtoolsError
from nbtools.pipeline.spec import load_pipeline


def save_parameters(project_dir: str | Path, stage: str, values: Mapping[str, Any]) -> Path:
    """Set parameters of one stage in ``pipeline.yaml``.

    Parameters
    ----------
    project_dir : str or Path
        The project folder holding ``pipeline.yaml``.
    stage : str
        The stage whose ``parameters`` mapping receives the values.
    values : mapping
        Parameter names to values; other parameters already in the file are left as they are.

    Returns
    -------
    pathlib.Path
        The path of ``pipeline.yaml``.

    Raises
    ------
    InvalidParameterError
        When a name is not a parameter of the stage or a value does not fit it; the file is
        then unchanged.
    PipelineSpecError
        When the stage is not in the pipeline.
    """
    pipeline = load_pipeline(project_dir)
    pipeline.stage(stage)
    checked = {name: _plain(value) for name, value in values.items()}
    # the same validation as `nbtools run -p STAGE.NAME=VALUE`: unknown names, types, ranges
    pipeline.resolve(overrides={f"{stage}.{name}": value for name, value in checked.items()})
    path = pipeline.project_dir / "pipeline.yaml"
    yaml = YAML()  # round-trip mode
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap the user's long lines
    document = yaml.load(path.read_text(encoding="utf-8"))
    body = document["stages"][stage]
    if body.get("parameters") is None:
        body["parameters"] = CommentedMap()
    parameters = body["parameters"]
    for name, value in checked.items():
        parameters[name] = _flow(value)
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    _replace_checked(path, buffer.getvalue())
    return path


def _plain(value: Any) -> Any:
    """Return ``value`` as plain Python (numpy scalars and tuples become int/float/list)."""
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _flow(value: Any) -> Any:
    """Lists and mappings are written inline (``[a, b]``), as people write parameters by hand."""
    if isinstance(value, list):
        seq = CommentedSeq(_flow(v) for v in value)
        seq.fa.set_flow_style()
        return seq
    if isinstance(value, dict):
        mapping = CommentedMap((k, _flow(v)) for k, v in value.items())
        mapping.fa.set_flow_style()
        return mapping
    return value


def _replace_checked(path: Path, text: str) -> None:
    """Write ``text`` beside ``path``, load the pipeline from it, then rename it over ``path``."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".pipeline.", suffix=".yaml")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        backup = path.read_text(encoding="utf-8")
        os.replace(temporary, path)
        try:
            load_pipeline(path.parent).resolve()
        except NbtoolsError:  # the new file must load and resolve, or the old one comes back
            path.write_text(backup, encoding="utf-8")
            raise
    finally:
        Path(temporary).unlink(missing_ok=True)

"""The content-addressed stage cache: a stage whose key is unchanged is not executed again.

A stage's cache key is the SHA-256 over six parts, each hashed on its own so that a re-run can
say which part changed:

``code``
    the source of the notebook's code cells (outputs, execution counts and markdown left out);
``parameters``
    the stage's resolved parameters with the pipeline settings a stage reads (seed, model name);
``inputs``
    the content hashes of every upstream stage's outputs;
``environment``
    Python's version, the versions of the packages that decide what a stage computes, and a hash
    of nbtools' own files (so an edit in an editable install counts);
``source``
    the fingerprints of the data sources the stage reads (see :mod:`nbtools.pipeline.sources`): a
    file's content, a query's result, an HTTP resource's validator or content;
``registry``
    the registry state the stage compares against: the champion's version and run.

The index lives in ``<project>/.nbtools/cache/``: ``keys/<key>.json`` holds the record of the
stage execution that produced the key (its output folder, recorded values and output hashes),
``latest/<stage>.json`` the key parts (and the key) of the stage's newest execution, for "why it
ran"; ``fingerprints.json`` the file hashes and HTTP validators of the sources.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from nbtools.pipeline.sources import code_fingerprint
from nbtools.records.environment import package_versions

CACHE_DIR = Path(".nbtools") / "cache"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the installed nbtools package
#: The parts of a cache key, in the order "why it ran" names them.
KEY_PARTS = ("code", "parameters", "inputs", "environment", "source", "registry")


@dataclass(frozen=True)
class CacheKey:
    """The cache key of one stage execution and the hashes of its parts.

    Parameters
    ----------
    stage : str
        The stage name.
    parts : dict of str to str
        The SHA-256 of each part named in :data:`KEY_PARTS`.
    """

    stage: str
    parts: dict[str, str]

    @property
    def digest(self) -> str:
        """The key itself: the SHA-256 over the stage name and its parts."""
        return _sha256({"stage": self.stage, **self.parts})

    def with_registry(self, state: Mapping[str, Any]) -> CacheKey:
        """Return the same key with another registry state in its ``registry`` part."""
        return CacheKey(self.stage, {**self.parts, "registry": _sha256(dict(state))})

    def changed_since(self, earlier: Mapping[str, str] | None) -> list[str]:
        """Return the names of the parts that differ from an earlier key's parts, in order."""
        if earlier is None:
            return []
        return [part for part in KEY_PARTS if earlier.get(part) != self.parts[part]]


def code_hash(notebook: Path) -> str:
    """Return the SHA-256 of the code cells' sources of a notebook, outputs stripped."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    sources = [
        "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for cell in nb.get("cells", [])
        if cell.get("cell_type") == "code"
    ]
    return _sha256(sources)


@cache
def environment_fingerprint() -> str:
    """Return the SHA-256 of the Python version, the key package versions and nbtools' files.

    Computed once per process: the files of the installed nbtools package are read then.
    """
    return _sha256(
        {
            "python": sys.version.split()[0],
            "packages": package_versions(),
            "nbtools_code": code_fingerprint(_PACKAGE_DIR),
        }
    )


def stage_key(
    stage: str,
    *,
    code: str,
    parameters: Mapping[str, Any],
    input_hashes: Mapping[str, Mapping[str, str]],
    environment: str,
    sources: Mapping[str, str] | None = None,
    registry: Mapping[str, Any] | None = None,
) -> CacheKey:
    """Build the cache key of a stage.

    Parameters
    ----------
    stage : str
        The stage name.
    code : str
        :func:`code_hash` of its notebook.
    parameters : mapping
        Its resolved parameters and the pipeline settings it reads.
    input_hashes : mapping
        For each upstream stage, the content hashes of its output files.
    environment : str
        :func:`environment_fingerprint`.
    sources : mapping, optional
        For each parameter naming a data source the stage reads, the source's fingerprint digest.
    registry : mapping, optional
        The registry state the stage reads (:func:`~nbtools.pipeline.sources.champion_state`).

    Returns
    -------
    CacheKey
    """
    return CacheKey(
        stage,
        {
            "code": code,
            "parameters": _sha256(dict(parameters)),
            "inputs": _sha256({k: dict(v) for k, v in sorted(input_hashes.items())}),
            "environment": environment,
            "source": _sha256(dict(sources or {})),
            "registry": _sha256(dict(registry or {})),
        },
    )


class CacheIndex:
    """The cache index of one project: cache key to the record of the execution that made it.

    Parameters
    ----------
    project_dir : Path
        The project folder; the index lives in ``.nbtools/cache`` below it.
    """

    def __init__(self, project_dir: Path) -> None:
        self.root = project_dir / CACHE_DIR

    def lookup(self, key: CacheKey) -> dict[str, Any] | None:
        """Return the stage record stored for ``key``, or ``None`` when its outputs are gone."""
        entry = _read_json(self.root / "keys" / f"{key.digest}.json")
        if entry is None or not Path(entry["output_dir"]).is_dir():
            return None
        return entry

    def latest_parts(self, stage: str) -> dict[str, str] | None:
        """Return the key parts of the newest execution of ``stage``, if it ever ran."""
        latest = _read_json(self.root / "latest" / f"{stage}.json")
        return None if latest is None else {k: v for k, v in latest.items() if k in KEY_PARTS}

    def latest_record(self, stage: str) -> dict[str, Any] | None:
        """Return the stored record of the newest execution of ``stage``, if it is still known."""
        latest = _read_json(self.root / "latest" / f"{stage}.json")
        if latest is None or "key" not in latest:
            return None
        return _read_json(self.root / "keys" / f"{latest['key']}.json")

    def store(self, key: CacheKey, record: Mapping[str, Any]) -> None:
        """Remember a successful stage execution under its key (atomically, safe across runs)."""
        _write_json(self.root / "keys" / f"{key.digest}.json", dict(record))
        _write_json(self.root / "latest" / f"{key.stage}.json", {**key.parts, "key": key.digest})


def _sha256(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(value, handle, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

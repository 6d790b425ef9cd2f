"""Fingerprints of what a stage reads besides its inputs: data sources and the model registry.

A stage's cache key covers the data behind a source, not the source string: a file edited in
place, new rows in a SQL table or new records behind an HTTP URL must run the stage again. Each
fingerprint is as cheap as the source allows:

- a file, a folder or a glob of files: size, modification and change time, with a SHA-256 of
  the content whenever those changed (remembered per project, so an unchanged large file is not
  read again, and a file touched without a change keeps its fingerprint);
- a SQL source (SQLAlchemy URL with a table or query): the query runs and its result is hashed;
- an HTTP(S) URL: a conditional request with the ETag or Last-Modified the server gave last
  time (``304 Not Modified`` keeps the fingerprint), otherwise a hash of the body;
- ``"demo"``: generated data, which depends only on the nbtools code (in the environment part).

The registry state is the ``champion`` alias of a model: its version and the run that logged it.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbtools import tables
from nbtools.errors import DataSourceError
from nbtools.pipeline.spec import Stage

#: Where a project remembers file fingerprints and HTTP validators, below its folder.
MEMO_FILE = Path(".nbtools") / "cache" / "fingerprints.json"
_GLOB_CHARS = frozenset("*?[")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Fingerprint:
    """What a data source holds right now, in a form a cache key can include.

    Parameters
    ----------
    source : str
        The source as shown to the user (a URL's password hidden).
    digest : str
        SHA-256 of the content (or the server's validator for an unchanged HTTP resource).
    rows : int or None
        Number of rows, when fingerprinting found it at no extra cost (SQL, HTTP JSON).
    """

    source: str
    digest: str
    rows: int | None = None


class FingerprintMemo:
    """A project's memory of earlier fingerprints: file stats and hashes, HTTP validators.

    Parameters
    ----------
    project_dir : Path
        The project folder; the memo lives in :data:`MEMO_FILE` below it.
    """

    def __init__(self, project_dir: Path) -> None:
        self.path = project_dir / MEMO_FILE
        self._lock = threading.Lock()
        try:
            self._entries: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            self._entries = {}
        self._dirty = False

    def get(self, name: str) -> dict[str, Any] | None:
        """Return what was remembered about ``name`` (a file path or a URL)."""
        with self._lock:
            entry = self._entries.get(name)
        return dict(entry) if isinstance(entry, dict) else None

    def put(self, name: str, entry: Mapping[str, Any]) -> None:
        """Remember ``entry`` for ``name``; :meth:`save` writes it."""
        with self._lock:
            self._entries[name] = dict(entry)
            self._dirty = True

    def save(self) -> None:
        """Write the memo atomically when it changed (a lost update only costs a re-hash)."""
        with self._lock:
            if not self._dirty:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(self._entries, handle, sort_keys=True)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self._dirty = False


def fingerprint_source(
    source: str,
    *,
    base_dir: Path,
    memo: FingerprintMemo,
    table: str | None = None,
    query: str | None = None,
    timeout: float = 30.0,
) -> Fingerprint:
    """Fingerprint the data behind a source string, as cheaply as the kind of source allows.

    Parameters
    ----------
    source : str
        ``"demo"``, a file / folder / glob path (relative to ``base_dir``), a SQLAlchemy URL
        or an http(s) URL, as the stage's parameter holds it.
    base_dir : Path
        The project folder, which relative paths are resolved against.
    memo : FingerprintMemo
        The project's remembered file hashes and HTTP validators.
    table, query : str, optional
        The table or query of a SQL source.
    timeout : float, default=30.0
        Seconds to wait for an HTTP source.

    Returns
    -------
    Fingerprint

    Raises
    ------
    DataSourceError
        If the source cannot be reached (a missing file, a database or server that does not
        answer); the message names it.
    """
    text = source.strip()
    shown = tables.redact_source(text)
    if text == "demo":
        return Fingerprint(shown, _sha256(b"demo"))
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("http", "https"):
        try:
            return _fingerprint_http(tables.expand_secrets(text), shown, memo, timeout)
        except DataSourceError as exc:  # the chain quotes the opened URL: keep the message
            raise DataSourceError(tables.hide_secrets(str(exc), text)) from None
    if scheme:
        try:
            frame = tables.load_source(text, base_dir=base_dir, table=table, query=query)
        except DataSourceError as exc:
            raise DataSourceError(f"Data source '{shown}' cannot be reached: {exc}") from exc
        return Fingerprint(shown, tables.content_hash(frame), rows=len(frame))
    return Fingerprint(shown, _fingerprint_files(text, base_dir, memo))


def fingerprint_stages(
    stages: Iterable[Stage],
    parameters: Mapping[str, Mapping[str, Any]],
    project_dir: Path,
    *,
    required: Collection[str],
) -> dict[str, dict[str, Fingerprint]]:
    """Fingerprint every data source the stages declare they read (their ``read_sources``).

    Parameters
    ----------
    stages : iterable of Stage
        The stages whose sources to fingerprint.
    parameters : mapping
        Each stage's resolved parameters; a source parameter set to None reads nothing, and a
        SQL source takes the stage's ``table`` and ``query`` parameters.
    project_dir : Path
        The project folder: relative paths, and the memo in :data:`MEMO_FILE`.
    required : collection of str
        Stages whose unreachable source is an error; for the others it only makes their cache
        miss (its digest is ``"unreachable"``).

    Returns
    -------
    dict
        Stage name to parameter name to :class:`Fingerprint`.

    Raises
    ------
    DataSourceError
        When a required stage's source cannot be reached.
    PipelineSpecError
        When a stage declares a read that is not one of its parameters.
    """
    memo = FingerprintMemo(project_dir)
    found: dict[str, dict[str, Fingerprint]] = {}
    try:
        for stage in stages:
            values = parameters[stage.name]
            found[stage.name] = {}
            for name in stage.read_sources:
                value = values.get(name)
                if not isinstance(value, str):
                    continue  # None: the stage reads nothing there this time
                try:
                    found[stage.name][name] = fingerprint_source(
                        value,
                        base_dir=project_dir,
                        memo=memo,
                        table=values.get("table"),
                        query=values.get("query"),
                    )
                except DataSourceError:
                    if stage.name in required:
                        raise
                    found[stage.name][name] = Fingerprint(
                        tables.redact_source(value), "unreachable"
                    )
    finally:
        memo.save()
    return found


def file_digest(path: Path, memo: FingerprintMemo) -> str:
    """Return the SHA-256 of a file's content, re-read only when its size or times changed.

    Parameters
    ----------
    path : Path
        An existing file.
    memo : FingerprintMemo
        Where the stat and hash of the last reading are kept.
    """
    stat = path.stat()
    name = str(path.resolve())
    # The change time and inode too: a copy that kept the old mtime (cp -p, rsync -t) still counts.
    seen = {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "inode": stat.st_ino,
    }
    known = memo.get(name)
    if known and all(known.get(k) == v for k, v in seen.items()):
        return str(known["sha256"])
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    memo.put(name, {**seen, "sha256": digest.hexdigest()})
    return digest.hexdigest()


def code_fingerprint(package_dir: Path) -> str:
    """Return the SHA-256 over the files of an installed package (bytecode caches left out).

    Parameters
    ----------
    package_dir : Path
        The package folder, e.g. the folder of ``nbtools/__init__.py``.
    """
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
            continue
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def champion_state(tracking_uri: str, model_name: str) -> dict[str, Any]:
    """Return the registry state a stage comparing against the champion reads.

    Parameters
    ----------
    tracking_uri : str
        The MLflow tracking (and registry) URI of the project.
    model_name : str
        The registered model's name.

    Returns
    -------
    dict
        ``{"model": model_name, "champion": None}`` when there is no champion (or no registry
        yet), else the champion's ``version`` and the ``run_id`` that logged it.

    Raises
    ------
    ModelRegistryError
        If the registry cannot be read.
    """
    state: dict[str, Any] = {"model": model_name, "champion": None}
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix) and not Path(tracking_uri[len(prefix) :]).is_file():
        return state  # no database yet: nothing registered, and nothing to create here
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from nbtools.errors import ModelRegistryError

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        version = client.get_model_version_by_alias(model_name, "champion")
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return state
        raise ModelRegistryError(
            f"Cannot read the champion of model '{model_name}' from the registry at "
            f"{tracking_uri}: {exc.message}. Check that the registry is reachable."
        ) from exc
    state["champion"] = {"version": str(version.version), "run_id": version.run_id}
    return state


def _fingerprint_files(text: str, base_dir: Path, memo: FingerprintMemo) -> str:
    path = Path(text).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if _GLOB_CHARS & set(text):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not files:
            raise DataSourceError(
                f"Data source '{text}' cannot be reached: the pattern matches no file "
                f"(looked for {path}). Check the path, or put the files there."
            )
        root = base_dir
    elif path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        root = path
    elif path.is_file():
        return file_digest(path, memo)
    else:
        raise DataSourceError(
            f"Data source '{text}' cannot be reached: no such file or folder (looked for {path}). "
            "Check the 'source' parameter, or put the file there."
        )
    parts = {_relative(p, root): file_digest(p, memo) for p in files}
    return _sha256(json.dumps(parts, sort_keys=True).encode())


def _fingerprint_http(url: str, shown: str, memo: FingerprintMemo, timeout: float) -> Fingerprint:
    known = memo.get(shown) or {}
    headers = {"Accept": "application/json", "User-Agent": "nbtools"}
    if known.get("etag"):
        headers["If-None-Match"] = known["etag"]
    if known.get("last_modified"):
        headers["If-Modified-Since"] = known["last_modified"]
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
            etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
    except urllib.error.HTTPError as exc:
        if exc.code == 304 and known.get("digest"):
            return Fingerprint(shown, str(known["digest"]), known.get("rows"))
        raise DataSourceError(
            f"Data source '{shown}' cannot be reached: it answered HTTP {exc.code} {exc.reason}."
        ) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataSourceError(
            f"Data source '{shown}' cannot be reached: {reason}. Check that the server is up "
            "and the URL is right; the recorded runs are unchanged."
        ) from exc
    rows = None
    with contextlib.suppress(ValueError, DataSourceError):  # ingest reports a bad body itself
        rows = len(tables.records_to_frame(json.loads(body), where=shown))
    digest = _sha256(body)
    if etag or modified:
        memo.put(shown, {"etag": etag, "last_modified": modified, "digest": digest, "rows": rows})
    return Fingerprint(shown, digest, rows)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()

"""Claims on stage executions, shared by the runs going on in one process (a sweep's variants).

A run that executes a stage claims it by its cache key first. Another run that needs the same
key meanwhile does not execute it again: it waits for the claim to be released, then finds the
outputs in the cache and reuses them. This is how a sweep executes every stage upstream of the
swept parameters once.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

#: Stage executions in progress in this process, by project and cache key.
_CLAIMS: dict[tuple[str, str], Future[None]] = {}
_CLAIMS_LOCK = threading.Lock()


@dataclass
class Claims:
    """The claims of one run: those it holds, and those of other runs it waits for.

    Parameters
    ----------
    project_dir : Path
        The project folder; claims are per project.
    """

    project_dir: Path
    #: Stage name to (cache key, released when its execution is done).
    held: dict[str, tuple[str, Future[None]]] = field(default_factory=dict)
    #: Claims of other runs this run waits for.
    borrowed: set[Future[None]] = field(default_factory=set)
    #: Cache keys another run executed while this run waited for them.
    shared: set[str] = field(default_factory=set)

    def claim(self, stage: str, digest: str, *, can_run: bool) -> bool:
        """Claim the execution of ``stage`` under its cache key ``digest``.

        Returns ``True`` when this run now holds the claim and executes the stage; ``False``
        when another run of this process executes it now (this run then waits for it, see
        :attr:`borrowed`) or when ``can_run`` is false (no free job).
        """
        key = (str(self.project_dir), digest)
        with _CLAIMS_LOCK:
            other = _CLAIMS.get(key)
            if other is None and can_run:
                mine: Future[None] = Future()
                _CLAIMS[key] = mine
                self.held[stage] = (digest, mine)
                return True
        if other is not None:
            self.borrowed.add(other)
            self.shared.add(digest)
        return False

    def release(self, stage: str) -> None:
        """Let runs waiting for this run's execution of ``stage`` look it up again."""
        digest, claim = self.held.pop(stage)
        with _CLAIMS_LOCK:
            _CLAIMS.pop((str(self.project_dir), digest), None)
        claim.set_result(None)

    def release_all(self) -> None:
        """Release every claim this run still holds (it stops, done or not)."""
        for stage in list(self.held):
            self.release(stage)

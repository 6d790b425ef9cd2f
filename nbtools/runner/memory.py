"""How much memory a run may use, and so how many stage kernels it starts ahead.

A stage kernel that has imported pandas, scikit-learn and MLflow and opened the MLflow store
holds about 280 MB of resident memory before its stage does anything, and about 300 MB or more
while a stage of the demo runs; the runner's own process about 270 MB. Starting kernels
ahead of their stages saves about 2 s a stage, but on a small machine (a Binder session has
2 GB, shared with JupyterLab and the notebook kernels) the spares are what pushes a run over.
:func:`kernels_ahead` therefore starts as many spares as the memory allows, and
:func:`default_jobs` runs fewer stages at once when memory is short.

The memory available is, in this order: ``NBTOOLS_MEMORY_LIMIT`` (for example ``2G``,
``1536M`` or a number of bytes), the limit of the process's cgroup (``memory.max`` in cgroup v2,
``memory.limit_in_bytes`` in v1; ``max`` or an enormous number means none), else the machine's
physical memory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from nbtools.errors import InvalidParameterError

#: Environment variable that sets the memory limit a run plans for, e.g. ``2G``.
MEMORY_VARIABLE = "NBTOOLS_MEMORY_LIMIT"
#: Resident memory of a stage kernel: 230 MB with pandas, scikit-learn and MLflow imported,
#: 280 MB with the MLflow store open, up to about 370 MB while a demo stage works (measured).
KERNEL_BYTES = 370 * 2**20
#: Resident memory of the runner's process during a run (measured on the demo).
RUNNER_BYTES = 280 * 2**20
#: Share of the limit a run plans to use: the rest is left to JupyterLab, notebook kernels and
#: the stages' own data.
RUN_SHARE = 0.5

_CGROUP = Path("/sys/fs/cgroup")
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
#: cgroup v1 reports "no limit" as a huge number (the largest page-aligned 64-bit value).
_UNLIMITED = 2**60


def parse_size(text: str) -> int:
    """Return a size such as ``2G``, ``1536M``, ``512MiB`` or ``1073741824`` in bytes.

    Raises
    ------
    InvalidParameterError
        If the text is not a size.
    """
    match = _SIZE.match(text)
    if match is None:
        raise InvalidParameterError(
            f"{MEMORY_VARIABLE} must be a size such as 2G, 1536M or a number of bytes. "
            f"Got {text!r} instead."
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def cgroup_limit(root: Path = _CGROUP) -> int | None:
    """Return the memory limit of this process's cgroup in bytes, or None when there is none.

    Reads cgroup v2's ``memory.max`` or else cgroup v1's ``memory/memory.limit_in_bytes``
    under ``root``.
    """
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        try:
            text = path.read_text(encoding="ascii").strip()
        except OSError:
            continue
        if text == "max":
            return None
        try:
            value = int(text)
        except ValueError:
            continue
        return None if value >= _UNLIMITED else value
    return None


def physical_memory() -> int | None:
    """Return the machine's physical memory in bytes, or None when the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def memory_limit(root: Path = _CGROUP) -> int | None:
    """Return the memory a run may plan for: the variable, the cgroup limit, or all RAM.

    Raises
    ------
    InvalidParameterError
        If ``NBTOOLS_MEMORY_LIMIT`` is set but is not a size.
    """
    text = os.environ.get(MEMORY_VARIABLE, "").strip()
    if text:
        return parse_size(text)
    limit = cgroup_limit(root)
    machine = physical_memory()
    if limit is None:
        return machine
    return limit if machine is None else min(limit, machine)


def kernel_budget(limit: int | None) -> int | None:
    """Return how many stage kernels fit beside the runner in :data:`RUN_SHARE` of ``limit``.

    None when the limit is unknown (treated as plenty).
    """
    if limit is None:
        return None
    return max(0, int((limit * RUN_SHARE - RUNNER_BYTES) // KERNEL_BYTES))


def default_jobs(cores: int, limit: int | None) -> int:
    """Return how many stages run at once by default: the cores, fewer when memory is short.

    Half the kernel budget runs stages and the other half may wait ahead, so with a 2 GB limit
    one stage runs at a time (with one kernel ahead); from about 4 GB, two.
    """
    budget = kernel_budget(limit)
    return cores if budget is None else max(1, min(cores, budget // 2))


def kernels_ahead(jobs: int, limit: int | None) -> int:
    """Return how many stage kernels may wait, started ahead, beside ``jobs`` running ones.

    With plenty of memory, ``jobs + 1`` (one for each running stage's successor, and one
    more); otherwise what is left of :func:`kernel_budget` once the running kernels are
    counted: with two jobs, three from about 6 GB, two at 4 GB, none at 2 GB; with one job,
    one at 2 GB.

    Parameters
    ----------
    jobs : int
        Stages that run at once.
    limit : int or None
        Bytes of memory available (:func:`memory_limit`); None means unknown, as plenty.
    """
    budget = kernel_budget(limit)
    most = jobs + 1
    return most if budget is None else max(0, min(most, budget - jobs))

"""Monitoring a served model: data drift, performance decay, and the check that combines them.

- :mod:`~nbtools.ops.monitoring.drift`: the training reference and per-column drift tests;
- :mod:`~nbtools.ops.monitoring.decay`: labels joined to served predictions, metrics per window;
- :mod:`~nbtools.ops.monitoring.check`: one monitoring check, window by window, and its breach
  rule;
- :mod:`~nbtools.ops.monitoring.report`: the check as one self-contained HTML page.

The submodules are imported on first use (``monitoring.drift``), so importing one part does not
load the others.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbtools.ops.monitoring import check, decay, drift, report

__all__ = ["check", "decay", "drift", "report"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return import_module(f"{__name__}.{name}")

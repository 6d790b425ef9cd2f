"""Per-phase timings of ``/invocations``: parse, queue, predict, respond.

========  ====================================================================================
phase     from ... until ...
========  ====================================================================================
parse     the handler starts ... the rows are checked and converted (body read, JSON, schema)
queue     the request joins the batch queue ... its batch starts predicting
predict   its batch starts ... its batch's predictions are back (shared by the batch's requests)
respond   predictions are back ... the response body is built (probabilities, prediction log, JSON)
========  ====================================================================================

Each response carries them in a ``Server-Timing`` header (milliseconds, readable in a browser's
developer tools); :class:`PhaseStats` sums them for ``/metrics`` (Prometheus text format), and a
request slower than :data:`SLOW_SECONDS` is logged with its phases.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

logger = logging.getLogger("nbtools.serving")

PHASES = ("parse", "queue", "predict", "respond")

#: Upper bounds (seconds) of the latency histogram buckets in ``/metrics``.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: A request taking longer than this (seconds) is logged with its phases.
SLOW_SECONDS = 1.0


@dataclass
class Timing:
    """The phases of one request, in seconds."""

    parse: float = 0.0
    queue: float = 0.0
    predict: float = 0.0
    respond: float = 0.0

    @property
    def total(self) -> float:
        """All phases together."""
        return self.parse + self.queue + self.predict + self.respond

    def header(self) -> str:
        """The ``Server-Timing`` header value (durations in ms)."""
        return ", ".join(f"{p};dur={getattr(self, p) * 1000:.3f}" for p in PHASES)


@dataclass
class PhaseStats:
    """Counts and sums per phase, a latency histogram, and outcome counters."""

    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    count: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    in_flight: int = 0

    def add(self, timing: Timing, request_id: str, rows: int) -> None:
        """Count one answered request; log it if it was slow."""
        self.count += 1
        for phase in PHASES:
            self.sums[phase] += getattr(timing, phase)
        total = timing.total
        for i, bound in enumerate(BUCKETS):
            if total <= bound:
                self.buckets[i] += 1
        if total > SLOW_SECONDS:
            logger.warning(
                "Slow request %s (%d rows): %.0f ms = parse %.0f + queue %.0f + predict %.0f "
                "+ respond %.0f ms.",
                request_id,
                rows,
                total * 1000,
                *(getattr(timing, p) * 1000 for p in PHASES),
            )

    def status(self, code: int) -> None:
        """Count one answer with HTTP status ``code``."""
        self.statuses[code] = self.statuses.get(code, 0) + 1

    def prometheus(self, others: dict[str, tuple[str, str, float]]) -> str:
        """The statistics and ``others`` (name: (help, type, value)) in Prometheus text format."""
        lines = [
            "# HELP nbtools_serve_phase_seconds Time spent per phase of answered predictions.",
            "# TYPE nbtools_serve_phase_seconds summary",
        ]
        for phase in PHASES:
            lines.append(f'nbtools_serve_phase_seconds_sum{{phase="{phase}"}} {self.sums[phase]}')
            lines.append(f'nbtools_serve_phase_seconds_count{{phase="{phase}"}} {self.count}')
        lines += [
            "# HELP nbtools_serve_request_seconds Latency of answered predictions (all phases).",
            "# TYPE nbtools_serve_request_seconds histogram",
        ]
        for bound, n in zip(BUCKETS, self.buckets, strict=True):
            lines.append(f'nbtools_serve_request_seconds_bucket{{le="{bound:g}"}} {n}')
        lines.append(f'nbtools_serve_request_seconds_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"nbtools_serve_request_seconds_sum {sum(self.sums.values())}")
        lines.append(f"nbtools_serve_request_seconds_count {self.count}")
        lines += [
            "# HELP nbtools_serve_responses_total Answers to /invocations by HTTP status.",
            "# TYPE nbtools_serve_responses_total counter",
        ]
        for code, n in sorted(self.statuses.items()):
            lines.append(f'nbtools_serve_responses_total{{status="{code}"}} {n}')
        for name, (help_text, kind, value) in others.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return "\n".join(lines) + "\n"

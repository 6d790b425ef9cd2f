"""Which stages a run executes: all of them, one or a few (``--only``), a stage and everything
downstream of it (``--from``), a stage and everything it depends on (``--to``), or a range.
"""

from __future__ import annotations

from collections.abc import Iterable

from nbtools.errors import PipelineSpecError
from nbtools.pipeline.spec import Pipeline


def downstream(pipeline: Pipeline, name: str) -> list[str]:
    """Return ``name`` and every stage that depends on it, directly or not, in run order."""
    found = {pipeline.stage(name).name}
    for stage in pipeline.stages:
        if found.intersection(stage.inputs):
            found.add(stage.name)
    return [s.name for s in pipeline.stages if s.name in found]


def select_stages(
    pipeline: Pipeline,
    *,
    only: Iterable[str] | None = None,
    start: str | None = None,
    stop: str | None = None,
    targets: Iterable[str] | None = None,
) -> list[str]:
    """Return the names of the stages a run executes, in run order.

    Parameters
    ----------
    pipeline : Pipeline
        The loaded pipeline.
    only : iterable of str, optional
        Exactly these stages.
    start : str, optional
        This stage and everything downstream of it.
    stop : str, optional
        This stage and everything upstream of it; with ``start``, the stages between the two.
    targets : iterable of str, optional
        These stages and everything upstream of them.

    Raises
    ------
    PipelineSpecError
        For an unknown stage name, ``only`` combined with a range, or an empty range.
    """
    names = [s.name for s in pipeline.stages]
    if only is not None:
        only = list(only)
        if start is not None or stop is not None:
            raise PipelineSpecError(
                "Stages chosen one by one (only: "
                f"{', '.join(only)}) cannot be combined with a range of stages (a first or a "
                "last stage): use one or the other."
            )
        chosen = {pipeline.stage(name).name for name in only}
        return [n for n in names if n in chosen]
    chosen = set(names)
    if targets is not None:
        chosen &= {s.name for t in targets for s in pipeline.upstream(pipeline.stage(t).name)}
    if start is not None:
        chosen &= set(downstream(pipeline, start))
    if stop is not None:
        chosen &= {s.name for s in pipeline.upstream(pipeline.stage(stop).name)}
    if not chosen:
        raise PipelineSpecError(
            f"No stage lies between '{start}' and '{stop}': '{stop}' does not depend "
            f"on '{start}'. Stages in run order: {', '.join(names)}."
        )
    return [n for n in names if n in chosen]

"""What a project declares: its pipeline, its stages' parameters and its data sources.

- :mod:`~nbtools.pipeline.spec`: ``pipeline.yaml`` read into a validated :class:`Pipeline`;
- :mod:`~nbtools.pipeline.stage_selection`: which stages a run executes (``--only``, ``--from``,
  ``--to``);
- :mod:`~nbtools.pipeline.sources`: fingerprints of the data a stage reads, for the cache;
- :mod:`~nbtools.pipeline.checks`: ``nbtools check`` on a project's own stage notebooks;
- :mod:`~nbtools.pipeline.project`: ``nbtools new``, a project scaffolded from the templates.

Stage parameters themselves are typed in :mod:`nbtools.params`.
"""

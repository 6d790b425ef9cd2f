"""The engine that executes a pipeline: where a stage is run.

- :mod:`~nbtools.runner.run`: :func:`~nbtools.runner.run.run_pipeline`, the entry point (stage
  selection, resuming, the run record);
- :mod:`~nbtools.runner.graph`: the scheduling loop over the stage graph, which uses the parts
  below and the run record of :mod:`nbtools.records.manifest`;
- :mod:`~nbtools.runner.cache`: cache keys and the index on disk;
  :mod:`~nbtools.runner.cache_policy`: whether a stage is reused, and why it re-runs;
- :mod:`~nbtools.runner.pool`: the stage-pool protocol that the local and the Dask pool implement;
- :mod:`~nbtools.runner.claims`: runs in one process (a sweep's variants) executing a stage once;
- :mod:`~nbtools.runner.mlflow_runs`: the MLflow parent run and a child run per stage;
- :mod:`~nbtools.runner.scheduler`, :mod:`~nbtools.runner.executor`,
  :mod:`~nbtools.runner.kernels`: stage notebooks executed through Papermill in kernels started
  ahead, on this machine;
- :mod:`~nbtools.runner.dask_executor`: the same on a Dask cluster;
- :mod:`~nbtools.runner.memory`: how many kernels the machine's memory allows;
- :mod:`~nbtools.runner.sweep`: one pipeline over a grid of parameters;
- :mod:`~nbtools.runner.context`: the stage context a notebook records its results through.
"""

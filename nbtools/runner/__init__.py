"""The engine that executes a pipeline: where a stage is run.

- :mod:`~nbtools.runner.run`: :func:`~nbtools.runner.run.run_pipeline`, the entry point (stage
  selection, resuming, the run record);
- :mod:`~nbtools.runner.graph`: the scheduling loop over the stage graph, with cache reuse and
  MLflow parent and child runs;
- :mod:`~nbtools.runner.cache`: cache keys and why a stage re-runs;
- :mod:`~nbtools.runner.scheduler`, :mod:`~nbtools.runner.executor`,
  :mod:`~nbtools.runner.kernels`: stage notebooks executed through Papermill in kernels started
  ahead, on this machine;
- :mod:`~nbtools.runner.dask_executor`: the same on a Dask cluster;
- :mod:`~nbtools.runner.memory`: how many kernels the machine's memory allows;
- :mod:`~nbtools.runner.sweep`: one pipeline over a grid of parameters;
- :mod:`~nbtools.runner.context`: the stage context a notebook records its results through.
"""

"""Operations: what happens to a model after training.

- :mod:`~nbtools.ops.registry`: the MLflow model registry, the champion and the deploy gate;
- :mod:`~nbtools.ops.model_card`: the card of a deployed version (data, metrics, importance,
  gate decision, environment, limitations);
- :mod:`~nbtools.ops.shipping`: a registered model as a self-contained folder or image;
- :mod:`~nbtools.ops.predictions`: the log of every prediction a served model made;
- :mod:`~nbtools.ops.monitoring`: drift and performance decay of new data, window by window;
- :mod:`~nbtools.ops.retraining`: a monitoring check that retrains and redeploys on a breach;
- :mod:`~nbtools.ops.simulation`: drifted demo data for teaching and testing monitoring;
- :mod:`~nbtools.ops.tensorboard`: the training curves of runs in TensorBoard.

Operations sit on top of the engine (:mod:`nbtools.runner`) and the ML library
(:mod:`nbtools.ml`); only the faces (command line, Jupyter, panels, serving) sit above them.
"""

"""The machine-learning library the stage notebooks call: public API for template authors.

Each module is one step of the lifecycle, usable on its own in any notebook:

- :mod:`~nbtools.ml.data`: checks on a table (required columns, the task, a dataset report)
  and the ingest stage's snapshot;
- :mod:`~nbtools.ml.cleaning`, :mod:`~nbtools.ml.encoding`: the leakage-free preprocessing
  (missing values, outliers, encodings) fitted inside the model pipeline;
- :mod:`~nbtools.ml.features`, :mod:`~nbtools.ml.selectors`: created features and feature
  selection;
- :mod:`~nbtools.ml.splitting`: train, validation and test splits (random, stratified, group,
  time);
- :mod:`~nbtools.ml.modeling`, :mod:`~nbtools.ml.tuning`, :mod:`~nbtools.ml.model_choice`: model
  families, hyperparameter search and the train stage's choice within a time budget;
- :mod:`~nbtools.ml.evaluation`, :mod:`~nbtools.ml.diagnostics`, :mod:`~nbtools.ml.bootstrap`:
  metrics, plots, learning curves and how sure a score difference is;
- :mod:`~nbtools.ml.explanation`, :mod:`~nbtools.ml.slicing`: what a model relies on
  (permutation importance, partial dependence) and its metrics by slice;
- :mod:`~nbtools.ml.exploration`: the tables and plots of a first look at the data.
- :mod:`~nbtools.ml.stage_params`: the declared parameters of the ingest and evaluate stages
  (the others sit beside the code that applies them, such as ``cleaning.CleaningParams``).

Each module lists its public names in ``__all__``: those are kept stable for people who edit
the stage templates. This layer knows nothing of pipelines, runs or MLflow runs: it imports only
:mod:`nbtools.errors`, :mod:`nbtools.params`, :mod:`nbtools.tables` and scientific libraries.
"""

"""Schedules without an orchestrator: the user's crontab, or a Kubernetes CronJob.

- :mod:`~nbtools.ops.scheduling.schedule`: what a schedule runs (``nbtools run`` or
  ``nbtools monitor``), when (a checked cron expression), and which environment variables it
  needs;
- :mod:`~nbtools.ops.scheduling.crontab`: the entry in the current user's crontab, installed,
  listed and removed through the ``crontab`` command;
- :mod:`~nbtools.ops.scheduling.cronjob`: a ``batch/v1`` CronJob manifest running the same
  command in a container, its secrets taken from Kubernetes secrets.
"""

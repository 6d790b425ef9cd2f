"""The core layer: spec, parameters, runner, records, tracking and the ML building blocks."""

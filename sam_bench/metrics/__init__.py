"""Metrics: per-image statistics during a run, aggregated at the end.

One module per task (``instance`` for automatic mask generation, ...). Every metric states in its
docstring which published definition it follows (see ``docs/metrics.md``).
"""

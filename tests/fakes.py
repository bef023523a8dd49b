"""Helpers for tests that write result records by hand (reports, summaries, objectives):
the catalogue snapshot and task declaration every real record carries (schema 2)."""

from __future__ import annotations

from typing import Any


def amg_record_fields(metrics: dict[str, Any]) -> dict[str, Any]:
    """``task``, ``task_spec`` and ``metric_info`` of an AMG job reporting ``metrics``."""
    from sam_bench.metrics.catalogue import CATALOGUE
    from sam_bench.tasks.amg import AMGTask

    return {
        "schema_version": 2,
        "task": "amg",
        "task_spec": AMGTask.spec.to_dict(),
        "metric_info": CATALOGUE.snapshot([*AMGTask.spec.catalogue_names(), *metrics]),
    }

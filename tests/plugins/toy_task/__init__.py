"""A task that exists only in the tests, as one package outside ``sam_bench/``: its task and
writer (``task.py``), its metrics (``metrics.py``) and its config (``tests/plugins/conf/task/
toy.yaml``), registered through the public API when ``plugins=[toy_task]`` imports it. It shows
that a new task needs no edit anywhere else: summary, console, report, MLflow, the objective
and the regression check (its declared ``label_png`` output) all take it as it is."""

from sam_bench.registry import register_task

register_task("toy", "toy_task.task:ToyTask", metrics=["toy_task.metrics"])

from toy_task.task import ToyTask  # noqa: E402  (after registration: tests import it)

__all__ = ["ToyTask"]

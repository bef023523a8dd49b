"""The metric catalogue as a sweep's records describe it.

Every ``result.json`` carries the catalogue entries of its metrics (``metric_info``) and its
task's declaration (``task_spec``: headline columns, objective, Pareto axes). The summary,
console table, report and plots read them through :class:`MetricView`, so they show any task's
metrics -- including a task registered by a plugin -- without naming one. Records written
before the catalogue existed (schema 1) fall back to the entries known to this process.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sam_bench.metrics.cost  # noqa: F401  (declares the cost metrics every task reports)
from sam_bench.metrics.catalogue import CATALOGUE, Metric

#: Column order in tables: accuracy first, then counts, cost, bookkeeping.
KIND_ORDER = ("accuracy", "count", "cost", "info")
#: Largest categorical series (e.g. object sizes) that the all-jobs table still lists.
MAX_TABLE_GROUP = 4


@dataclass
class TaskView:
    """What a task declared (from a record's ``task_spec``)."""

    name: str
    headline: list[str] = field(default_factory=list)
    objective: str | None = None
    pareto: tuple[str, str] | None = None
    metrics: list[str] = field(default_factory=list)
    empty_when: tuple[str, float] | None = None
    """``(metric, value)``: a job with that value predicted nothing (``TaskSpec.empty_when``)."""
    empty_hint: str = ""

    @staticmethod
    def from_spec(name: str, spec: dict[str, Any]) -> TaskView:
        pareto = spec.get("pareto")
        empty = spec.get("empty_when")
        return TaskView(
            empty_when=(str(empty[0]), float(empty[1])) if empty and len(empty) == 2 else None,
            empty_hint=str(spec.get("empty_hint") or ""),
            name=name,
            headline=[str(m) for m in spec.get("headline") or []],
            objective=spec.get("objective"),
            pareto=(str(pareto[0]), str(pareto[1])) if pareto and len(pareto) == 2 else None,
            metrics=[str(m) for m in spec.get("metrics") or []],
        )


@dataclass
class MetricView:
    """The metrics and tasks of a set of records, in display order."""

    metrics: dict[str, Metric] = field(default_factory=dict)
    tasks: dict[str, TaskView] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    """Metric names in first-seen order over the records."""

    @staticmethod
    def from_records(records: Iterable[dict[str, Any]]) -> MetricView:
        view = MetricView()
        for rec in records:
            info = rec.get("metric_info") or {}
            for name in [*(rec.get("metrics") or {}), *info]:
                if name in view.metrics or name in view.seen:
                    continue
                entry: Metric | None = None
                if isinstance(info.get(name), dict):
                    try:
                        entry = Metric.from_dict(info[name])
                    except (TypeError, ValueError):
                        entry = None
                entry = entry or CATALOGUE.get(name)
                view.seen.append(name)
                if entry is not None:
                    view.metrics[name] = entry
            task = rec.get("task")
            spec = rec.get("task_spec")
            if task and isinstance(spec, dict) and spec and task not in view.tasks:
                view.tasks[str(task)] = TaskView.from_spec(str(task), spec)
        return view

    # ----------------------------------------------------------------------- per metric

    def get(self, name: str) -> Metric | None:
        return self.metrics.get(name)

    def direction(self, name: str) -> bool | None:
        """``True`` higher is better, ``False`` lower, ``None`` neither or unknown."""
        m = self.metrics.get(name)
        return None if m is None else m.higher_is_better

    def is_accuracy(self, name: str) -> bool:
        """Whether ``name`` only means something with trained weights."""
        m = self.metrics.get(name)
        return m is not None and m.kind == "accuracy"

    def label(self, name: str) -> str:
        m = self.metrics.get(name)
        return m.label if m is not None else name

    def fmt(self, name: str) -> str:
        m = self.metrics.get(name)
        return m.fmt if m is not None else "{:.4g}"

    def axis_label(self, name: str) -> str:
        """``label (unit, higher is better)`` for a plot axis."""
        m = self.metrics.get(name)
        if m is None:
            return name
        goal = {"higher": "higher is better", "lower": "lower is better"}.get(m.direction, "")
        extra = ", ".join(p for p in (m.unit, goal) if p)
        return f"{m.label} ({extra})" if extra else m.label

    # ----------------------------------------------------------------------- lists

    def _ordered(self, names: Iterable[str]) -> list[str]:
        names = list(dict.fromkeys(names))
        rank = {k: i for i, k in enumerate(KIND_ORDER)}
        pos = {n: i for i, n in enumerate(self.seen)}
        return sorted(
            names,
            key=lambda n: (
                rank.get(self.metrics[n].kind if n in self.metrics else "info", len(rank)),
                pos.get(n, len(pos)),
            ),
        )

    def columns(self) -> list[str]:
        """Every metric, for ``summary.csv``: accuracy, counts, cost, bookkeeping."""
        return self._ordered(self.seen)

    def headline(self) -> list[str]:
        """The tasks' headline metrics (console table), in their declared order."""
        names: list[str] = []
        for task in self.tasks.values():
            names.extend(m for m in task.headline if m not in names)
        if not names:  # records without a spec: the first accuracy metrics and latency
            names = [n for n in self.columns() if n in self.metrics][:6]
        return names

    def best_metrics(self) -> list[str]:
        """Metrics with a direction, for "best configuration per metric": every accuracy
        metric that is not part of a curve, then the cost metrics of the headline."""
        acc = [
            n
            for n in self.columns()
            if self.is_accuracy(n)
            and self.direction(n) is not None
            and not self._in_curve(n)
            and n != "objective"
        ]
        cost = [
            n
            for n in self.headline()
            if n in self.metrics
            and self.metrics[n].kind == "cost"
            and self.direction(n) is not None
        ]
        return [*acc, *(c for c in cost if c not in acc)]

    def table_metrics(self) -> list[str]:
        """Columns of the report's all-jobs table: the headline, then the other accuracy and
        count metrics (small categorical series included, curves left to their plots), then
        the stage times."""
        rest = [
            n
            for n in self.columns()
            if n in self.metrics
            and self.metrics[n].kind in ("accuracy", "count")
            and not self._in_curve(n)
            and not self._in_big_group(n)
        ]
        stages = [n for n in self.columns() if n.endswith("_ms_mean") and n in self.metrics]
        return list(dict.fromkeys([*self.headline(), *rest, *stages]))

    def _in_curve(self, name: str) -> bool:
        m = self.metrics.get(name)
        return m is not None and m.group is not None and not isinstance(m.group_x, str)

    def _in_big_group(self, name: str) -> bool:
        m = self.metrics.get(name)
        if m is None or m.group is None:
            return False
        return len(self.groups().get(m.group, [])) > MAX_TABLE_GROUP

    def groups(self) -> dict[str, list[Metric]]:
        """Series of metrics (``group``), members in order of their position."""
        out: dict[str, list[Metric]] = {}
        for name in self.columns():
            m = self.metrics.get(name)
            if m is not None and m.group is not None:
                out.setdefault(m.group, []).append(m)
        for members in out.values():
            if all(isinstance(m.group_x, int | float) for m in members):
                members.sort(key=lambda m: float(m.group_x))  # type: ignore[arg-type]
        return out

    def pareto_axes(self) -> list[tuple[str, str, str]]:
        """``(task, x, y)`` for every task with declared Pareto axes."""
        return [(t.name, *t.pareto) for t in self.tasks.values() if t.pareto is not None]

    def main_accuracy(self) -> str | None:
        """The accuracy metric of the first task's Pareto axes (heatmaps, overlays)."""
        for task in self.tasks.values():
            if task.pareto is not None:
                return task.pareto[1]
        acc = [n for n in self.columns() if self.is_accuracy(n)]
        return acc[0] if acc else None

    def main_cost(self) -> str | None:
        """The cost metric of the first task's Pareto axes."""
        for task in self.tasks.values():
            if task.pareto is not None:
                return task.pareto[0]
        return "latency_ms_p50" if "latency_ms_p50" in self.metrics else None

    def empty_result(self, row: dict[str, Any]) -> str | None:
        """Why a job's result is empty (it predicted nothing on any item: its task's declared
        ``empty_when`` holds), with the likely causes; ``None`` when it is not (or its task
        declares no such check). ``row``: a summary row (numbers or CSV strings)."""
        if row.get("status") not in ("ok", "partial"):
            return None
        task = self.tasks.get(str(row.get("task") or ""))
        if task is None and len(self.tasks) == 1:
            task = next(iter(self.tasks.values()))
        if task is None or task.empty_when is None:
            return None
        metric, value = task.empty_when
        try:
            got = float(row.get(metric))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        if got != value:
            return None
        items = row.get("n_items_ok")
        on = f"any of its {int(float(str(items)))} items" if _is_number(items) else "any item"
        why = f"; likely {task.empty_hint}" if task.empty_hint else ""
        return f"predicted nothing on {on} ({self.label(metric)} = {value:g}){why}"

    def default_objective(self) -> str | None:
        for task in self.tasks.values():
            if task.objective:
                return task.objective
        return self.main_accuracy()


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return value is not None and value != ""

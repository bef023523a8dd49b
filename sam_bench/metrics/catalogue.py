"""The metric catalogue: every metric sam_bench reports is declared once, here or next to the
code that computes it, with what a reader needs to use it.

A :class:`Metric` names its direction (``higher`` / ``lower`` / ``neither``), display label,
unit and format, a one-line description, the reference definition it follows, the task(s) it
belongs to and its kind (``accuracy``, ``cost``, ``count``, ``info``). Metrics that belong to a
series (``mIoU after k clicks``, ``AR@1000 by object size``) name the series and their position
in it (``group`` / ``group_x``), so plots can be drawn from the declaration alone.

Producers declare their metrics at import time (:func:`declare`; families of names such as
``<stage>_ms_mean`` with :func:`declare_family`). Every job's ``result.json`` carries a
snapshot of the entries of the metrics it reports (``metric_info``), so the summary, console
table, report, plots, tracking and regression comparison read the catalogue from the records
alone, without importing task or model code.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Direction = Literal["higher", "lower", "neither"]
Kind = Literal["accuracy", "cost", "count", "info"]
DIRECTIONS: tuple[str, ...] = ("higher", "lower", "neither")
KINDS: tuple[str, ...] = ("accuracy", "cost", "count", "info")
ALL_TASKS = "*"
"""``tasks`` entry of a metric every task reports (latency, memory, objective...)."""


@dataclass(frozen=True)
class Metric:
    """One aggregate metric (a key of ``result.json`` ``metrics`` and a ``summary.csv`` column)."""

    name: str
    """Key in ``result.json`` and column in ``summary.csv``."""
    direction: Direction
    """Which way is better: ``higher``, ``lower``, or ``neither`` (a descriptive statistic)."""
    label: str
    """Short label for table headers and plot axes."""
    description: str
    """One line stating the definition followed."""
    reference: str = "sam_bench"
    """The published definition / reference implementation it follows."""
    unit: str = ""
    """Unit (``ms``, ``MB``, ``img/s``, ``clicks``...); empty for fractions and counts."""
    fmt: str = "{:.3f}"
    """Python format of one value in tables."""
    tasks: tuple[str, ...] = (ALL_TASKS,)
    """Tasks reporting it (``"*"``: every task)."""
    kind: Kind = "accuracy"
    """``accuracy`` (meaningless with untrained weights), ``cost`` (time, memory),
    ``count`` (mask counts, coverage) or ``info`` (bookkeeping)."""
    group: str | None = None
    """Series this metric belongs to (e.g. ``"AR@1000 by object size"``); ``None``: none."""
    group_x: str | float | None = None
    """Position in the series: a number (a curve, e.g. clicks) or a category (``"small"``)."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.name):
            raise ValueError(f"metric name {self.name!r} is not an identifier")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"metric {self.name}: direction {self.direction!r}")
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name}: kind {self.kind!r}")
        self.fmt.format(1.0)  # a broken format fails at declaration, not in a report

    @property
    def higher_is_better(self) -> bool | None:
        """``True`` / ``False``, or ``None`` for a descriptive statistic."""
        return {"higher": True, "lower": False}.get(self.direction)

    def applies_to(self, task: str) -> bool:
        """Whether ``task`` reports this metric."""
        return ALL_TASKS in self.tasks or task in self.tasks

    def format(self, value: Any) -> str:
        """``value`` in this metric's format; ``-`` for a missing or non-numeric value."""
        return format_value(value, self.fmt)

    def to_dict(self) -> dict[str, Any]:
        """The snapshot stored in ``result.json`` ``metric_info``."""
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Metric:
        """Rebuild an entry from a record's snapshot (unknown keys ignored)."""
        known = {f.name for f in fields(Metric)}
        kw = {k: v for k, v in data.items() if k in known}
        kw["tasks"] = tuple(kw.get("tasks") or (ALL_TASKS,))
        return Metric(**kw)


def format_value(value: Any, fmt: str = "{:.4g}") -> str:
    """A number for a table: ``-`` when missing, NaN or not a number."""
    if value is None or value == "" or isinstance(value, bool):
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "-" if math.isnan(v) else fmt.format(v)


@dataclass
class _Family:
    pattern: re.Pattern[str]
    make: Callable[[re.Match[str]], Metric]

    @property
    def anchor(self) -> str:
        """The family's anchor in ``docs/metrics.md``: its pattern with each named group
        written as its name (``(?P<stage>...)_ms_mean`` -> ``stage_ms_mean``)."""
        return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"\1", self.pattern.pattern)


#: The repository's metric definitions (one anchor per metric, :meth:`Catalogue.anchor`).
METRICS_DOC = "docs/metrics.md"


@dataclass
class Catalogue:
    """Metric entries by name, in declaration order, plus name families."""

    entries: dict[str, Metric] = field(default_factory=dict)
    families: list[_Family] = field(default_factory=list)
    loaded: set[str] = field(default_factory=set)
    """The metric modules already imported (:meth:`load_all`)."""
    declared: set[str] = field(default_factory=set)
    """Names declared one by one (not made by a family on first use)."""

    def load_all(self) -> None:
        """Import the metric declarations of every registered task
        (:func:`sam_bench.registry.metric_modules`) not imported yet: every lookup does this
        first, so what the catalogue holds never depends on what was imported before."""
        import importlib

        from sam_bench import registry

        for module in registry.metric_modules():
            if module not in self.loaded:
                self.loaded.add(module)  # first: the module declares into this catalogue
                try:
                    importlib.import_module(module)
                except BaseException:
                    self.loaded.discard(module)
                    raise

    def declare(self, *metrics: Metric) -> tuple[Metric, ...]:
        """Add entries. Declaring the same name twice with another definition is an error."""
        for m in metrics:
            old = self.entries.get(m.name)
            if old is not None and old != m:
                raise ValueError(f"metric {m.name!r} is already declared differently: {old}")
            self.entries[m.name] = m
            self.declared.add(m.name)
        return metrics

    def declare_family(self, pattern: str, make: Callable[[re.Match[str]], Metric]) -> None:
        """Names matching ``pattern`` (a full match) are declared by ``make(match)`` on first
        use (e.g. ``(?P<stage>\\w+)_ms_mean`` for the stages a task adds)."""
        self.families.append(_Family(re.compile(pattern), make))

    def get(self, name: str) -> Metric | None:
        """The entry of ``name`` (families included), or ``None``."""
        self.load_all()
        if name in self.entries:
            return self.entries[name]
        for fam in self.families:
            match = fam.pattern.fullmatch(name)
            if match:
                metric = fam.make(match)
                self.entries[name] = metric
                return metric
        return None

    def anchor(self, name: str) -> str | None:
        """The anchor of ``name``'s definition in :data:`METRICS_DOC`: the name itself for a
        metric declared by name, the family's anchor (``class_iou_cls``, ``miou_clicks_k``,
        ``stage_ms_mean``) for one a family makes; ``None`` for an unknown name."""
        self.load_all()
        if name in self.declared:
            return name
        for fam in self.families:
            if fam.pattern.fullmatch(name):
                return fam.anchor
        return None

    def anchors(self) -> dict[str, str]:
        """Every anchor :data:`METRICS_DOC` must hold: declared names and family anchors,
        each with what it documents."""
        self.load_all()
        out = {n: n for n in self.entries if n in self.declared}
        out.update({f.anchor: f.pattern.pattern for f in self.families})
        return out

    def require(self, name: str, task: str | None = None) -> Metric:
        """The entry of ``name``; ``KeyError`` with a suggestion when unknown or, with
        ``task``, when that task does not report it."""
        metric = self.get(name)
        names = self.names(task)
        if metric is None or (task is not None and not metric.applies_to(task)):
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = f" of task {task!r}" if task else ""
            raise KeyError(f"unknown metric {name!r}{where}{hint}")
        return metric

    def names(self, task: str | None = None) -> list[str]:
        """Declared names (of ``task``'s metrics when given), in declaration order."""
        self.load_all()
        return [n for n, m in self.entries.items() if task is None or m.applies_to(task)]

    def snapshot(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        """``metric_info`` for a record: the entries of the known ``names``."""
        out = {}
        for name in names:
            metric = self.get(name)
            if metric is not None:
                out[name] = metric.to_dict()
        return out


CATALOGUE = Catalogue()
"""The process-wide catalogue every producer declares into."""


def declare(*metrics: Metric) -> tuple[Metric, ...]:
    """Declare metrics in :data:`CATALOGUE`."""
    return CATALOGUE.declare(*metrics)


def metric_maker(tasks: tuple[str, ...], reference: str) -> Callable[..., Metric]:
    """A :class:`Metric` constructor for one module's metrics: ``make(name, direction, label,
    description, **fields)`` with ``tasks`` set and ``reference`` as the default reference."""

    def make(name: str, direction: str, label: str, description: str, **kw: Any) -> Metric:
        kw.setdefault("reference", reference)
        return Metric(name, direction, label, description, tasks=tasks, **kw)  # type: ignore[arg-type]

    return make


def declare_family(pattern: str, make: Callable[[re.Match[str]], Metric]) -> None:
    """Declare a family of metric names in :data:`CATALOGUE`."""
    CATALOGUE.declare_family(pattern, make)


# ---------------------------------------------------------------------------------------------
# metrics every task reports (the runner computes them)

declare(
    Metric(
        "objective", "higher", "objective",
        "the job's value for Hydra's sweepers: the objective metric (negated when lower is "
        "better), or objective.penalty for a failed or over-budget job",
        kind="info", fmt="{:.4g}",
    ),
    Metric(
        "peak_rss_mb", "lower", "RSS MB",
        "peak resident memory of the process over the job (Linux VmHWM reset per job); the "
        "group's peak when jobs ran grouped",
        unit="MB", kind="cost", fmt="{:.0f}",
    ),
    Metric(
        "model_build_s", "lower", "build s",
        "seconds to build the model and load its weights (synchronised clock)",
        unit="s", kind="cost", fmt="{:.1f}",
    ),
    Metric("n_items_ok", "neither", "items ok", "items (images or videos) scored",
           kind="info", fmt="{:.0f}"),
    Metric("n_item_errors", "lower", "item errors",
           "items that could not be read or processed (see image_errors)", kind="info",
           fmt="{:.0f}"),
)  # fmt: skip

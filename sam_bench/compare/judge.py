"""Verdicts of one matched configuration: its status and every metric of its task.

Verdicts: ``better``, ``same``, ``worse`` (in the bad direction, within the tolerance),
``regression`` (in the bad direction beyond the tolerance; the command exits 1), ``changed``
(a metric without a direction moved), ``inconclusive`` (too few per-image figures to judge
timing) and ``not judged`` (no value on one side, no direction known, a tolerance set to
``off``, or outputs that are not comparable).

* **accuracy and count metrics** are deterministic for a fixed model, data and code: any
  change beyond floating-point noise is a change, judged against the tolerance.
* **cost metrics** that aggregate per-image figures (``latency_ms_*``, ``<stage>_ms_mean``,
  throughput, ``peak_gpu_mem_mb``) are judged from ``per_image.csv`` with the paired
  bootstrap of :mod:`~sam_bench.compare.stats`; without per-image figures they are not
  judged. Other cost figures (``peak_rss_mb``: one value per job; a stage whose per-item
  column ``per_image.csv`` lacks) are judged on their value against the tolerance.
* **status**: a configuration that succeeded in the baseline and fails now (or loses items
  that worked) is a regression.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam_bench.compare.jobs import Job
from sam_bench.compare.stats import RatioEstimate, bootstrap_ratio, ratio_verdict
from sam_bench.compare.tolerances import Settings, Tolerance
from sam_bench.metrics.catalogue import Metric
from sam_bench.report.view import MetricView

VERDICTS = (
    "regression", "worse", "changed", "inconclusive", "better", "same", "not judged",
)  # fmt: skip
JUDGED_KINDS = ("accuracy", "count", "cost")
_STAGE_MEAN = re.compile(r"(?P<col>[a-z][a-z0-9_]*_ms)_mean")
#: Cost metrics computed from a per-image column: metric -> (column, statistic, inverted).
PER_IMAGE: dict[str, tuple[str, str, bool]] = {
    "latency_ms_p50": ("latency_ms", "median", False),
    "latency_ms_p90": ("latency_ms", "p90", False),
    "peak_gpu_mem_mb": ("gpu_peak_mb", "max", False),
}


def per_image_source(metric: str, per_s: str | None) -> tuple[str, str, bool] | None:
    """``(column, statistic, inverted)`` of a cost metric aggregated from ``per_image.csv``
    (``inverted``: the metric is 1000 / the statistic, a throughput), or ``None``."""
    if metric in PER_IMAGE:
        return PER_IMAGE[metric]
    if metric == per_s or metric == "images_per_s":
        return ("latency_ms", "mean", True)
    m = _STAGE_MEAN.fullmatch(metric)
    return (m.group("col"), "mean", False) if m else None


@dataclass
class MetricResult:
    """One row of a configuration's table."""

    metric: str
    label: str
    kind: str
    direction: str
    baseline: float | None
    current: float | None
    delta: float | None
    ratio: float | None
    interval: tuple[float, float] | None
    n_images: int | None
    tolerance: str
    verdict: str
    note: str = ""
    basis: str = "value"
    """``value`` (the aggregate itself), ``per-image`` (bootstrap) or ``status``."""
    band: float | None = None
    """The largest change within the tolerance, in the metric's unit (value rows)."""
    ratio_limit: float | None = None
    """The ratio beyond which a change exceeds the tolerance (per-image rows)."""
    fmt: str = "{:.4g}"
    output: str | None = None
    """The output kind of a saved-output agreement row (``instance_rle``, ``label_png``,
    ``palette_png_sequence``); ``None`` for metrics and status."""

    def to_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["interval"] = list(self.interval) if self.interval else None
        d.pop("fmt")
        return d


def number(value: Any) -> float | None:
    """A finite float, or ``None``."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _isclose(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def point_verdict(
    base: float, cur: float, direction: str, tol: Tolerance, *, exact: bool
) -> tuple[str, str]:
    """Verdict of one value against another. ``exact``: the figure is deterministic, so
    any change beyond floating-point noise counts (``worse`` within tolerance); otherwise a
    change within tolerance is ``same``."""
    delta = cur - base
    if _isclose(base, cur):
        return "same", ""
    beyond = tol.exceeded(delta, base)
    if direction == "neither":
        return ("changed", "") if beyond or exact else ("same", "within tolerance")
    good = delta > 0 if direction == "higher" else delta < 0
    if good:
        return ("better", "") if beyond or exact else ("same", "within tolerance")
    if beyond:
        return "regression", f"beyond tolerance {tol.describe()}"
    return ("worse", "within tolerance") if exact else ("same", "within tolerance")


def _paired_values(
    base_rows: list[dict[str, str]], cur_rows: list[dict[str, str]], column: str
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The column's finite positive values of the items that worked, paired by image id when
    at least half of the images are on both sides (then only those are used)."""

    def values(rows: list[dict[str, str]]) -> dict[str, float]:
        out = {}
        for r in rows:
            if (r.get("error") or "").strip():
                continue
            v = number(r.get(column))
            if v is not None and v > 0:
                out[str(r.get("image_id"))] = v
        return out

    vb, vc = values(base_rows), values(cur_rows)
    common = [k for k in vb if k in vc]
    if common and len(common) >= 0.5 * max(len(vb), len(vc)):
        return (
            np.array([vb[k] for k in common]),
            np.array([vc[k] for k in common]),
            True,
        )
    return np.array(list(vb.values())), np.array(list(vc.values())), False


def judge_per_image(
    name: str,
    entry: Metric,
    source: tuple[str, str, bool],
    pair_rows: tuple[list[dict[str, str]], list[dict[str, str]]],
    base: float | None,
    cur: float | None,
    tol: Tolerance,
    settings: Settings,
) -> MetricResult:
    """A cost metric judged from per-image figures (see the module docstring)."""
    column, statistic, inverted = source
    vb, vc, paired = _paired_values(*pair_rows, column)
    n = min(vb.size, vc.size)
    row = _row(name, entry, base, cur, tol, basis="per-image")
    row.n_images = n
    t = settings.timing
    if n == 0:
        row.verdict, row.note = "not judged", f"not measured (no {column} figures)"
        return row
    if n < t.min_images:
        row.verdict = "inconclusive"
        row.note = f"{n} images, fewer than {t.min_images}: no timing verdict"
        return row
    try:
        est: RatioEstimate = bootstrap_ratio(
            vb, vc, statistic, paired=paired, resamples=t.resamples,
            confidence=t.confidence, seed=t.seed,
        )  # fmt: skip
    except ValueError as e:
        row.verdict, row.note = "not judged", str(e)
        return row
    if inverted:
        est = est.inverted()
    row.ratio, row.interval = est.ratio, (est.low, est.high)
    reference = base if base is not None else 1.0
    bound = tol.ratio_bound(reference)
    row.ratio_limit = 1.0 - bound if entry.direction == "higher" else 1.0 + bound
    row.verdict = ratio_verdict(est, entry.direction != "higher", bound)
    row.note = "paired by image" if paired else "unpaired (the sides measured other images)"
    return row


def _row(
    name: str, entry: Metric, base: float | None, cur: float | None, tol: Tolerance, basis: str
) -> MetricResult:
    delta = cur - base if base is not None and cur is not None else None
    ratio = cur / base if base and cur is not None else None
    return MetricResult(
        band=tol.band(base) if base is not None and tol.judge else None,
        metric=name, label=entry.label, kind=entry.kind, direction=entry.direction,
        baseline=base, current=cur, delta=delta, ratio=ratio, interval=None, n_images=None,
        tolerance=tol.describe(), verdict="not judged", basis=basis, fmt=entry.fmt,
    )  # fmt: skip


def judge_metric(
    name: str,
    entry: Metric,
    pair: tuple[Job, Job],
    settings: Settings,
    *,
    per_s: str | None,
    outputs_comparable: bool,
) -> MetricResult:
    """The verdict of metric ``name`` for one matched configuration."""
    b_job, c_job = pair
    base, cur = number(b_job.metrics.get(name)), number(c_job.metrics.get(name))
    tol = settings.tolerance(name, entry.kind)
    if entry.kind == "cost":
        source = per_image_source(name, per_s)
        if source is not None:
            rows_b, rows_c = b_job.per_image(), c_job.per_image()
            if rows_b is None or rows_c is None:
                row = _row(name, entry, base, cur, tol, basis="per-image")
                row.note = "no per-image figures (" + (
                    "baseline" if rows_b is None else "current"
                ) + "): timing is not judged"  # fmt: skip
                return row
            if not tol.judge:
                row = _row(name, entry, base, cur, tol, basis="per-image")
                row.note = "tolerance off"
                return row
            column = source[0]
            if any(column in r for r in rows_b) and any(column in r for r in rows_c):
                return judge_per_image(
                    name, entry, source, (rows_b, rows_c), base, cur, tol, settings
                )
            # the task keeps these figures elsewhere: judged on the value, like peak_rss_mb
    row = _row(name, entry, base, cur, tol, basis="value")
    if base is None or cur is None:
        if base is None and cur is None:
            row.note = "no value on either side"
        else:
            row.note = "no value in the " + ("baseline" if base is None else "current run")
        return row
    if not tol.judge:
        row.note = "tolerance off"
        return row
    if entry.kind in ("accuracy", "count") and not outputs_comparable:
        row.note = "weights differ: outputs are not comparable"
        return row
    row.verdict, row.note = point_verdict(
        base, cur, entry.direction, tol, exact=entry.kind != "cost"
    )
    if entry.kind == "cost":
        row.note = "; ".join(p for p in ("one figure per job", row.note) if p)
    return row


def judge_status(b_job: Job, c_job: Job) -> MetricResult:
    """A configuration that worked and fails now, or loses items, is a regression."""

    def errors(job: Job) -> float:
        counted = number(job.metrics.get("n_item_errors"))
        return counted if counted is not None else float(len(job.record.get("item_errors") or []))

    row = MetricResult(
        metric="status", label="status", kind="status", direction="higher",
        baseline=None, current=None, delta=None, ratio=None, interval=None, n_images=None,
        tolerance="", verdict="same", basis="status",
    )  # fmt: skip
    sb, sc = b_job.status, c_job.status
    eb, ec = errors(b_job), errors(c_job)
    if b_job.succeeded and not c_job.succeeded:
        row.verdict = "regression"
        row.note = f"{sb} -> {sc}: fails now: {c_job.record.get('error') or 'no reason recorded'}"
    elif not b_job.succeeded and c_job.succeeded:
        row.verdict, row.note = "better", f"{sb} -> {sc}: works now"
    elif not b_job.succeeded:
        row.verdict, row.note = "same", f"fails on both sides ({sc})"
    elif ec > eb:
        row.verdict = "regression"
        row.note = f"{sb} -> {sc}: {ec:.0f} items fail now (baseline: {eb:.0f})"
    elif ec < eb:
        row.verdict, row.note = "better", f"{sb} -> {sc}: {eb - ec:.0f} fewer items fail"
    else:
        row.note = sc
    row.baseline, row.current = eb, ec
    return row


def metrics_to_judge(view: MetricView, pair: tuple[Job, Job]) -> list[str]:
    """The metrics of a pair's table: accuracy, count and cost metrics either side reports,
    in the catalogue's display order."""
    present = set(pair[0].metrics) | set(pair[1].metrics)
    return [
        n
        for n in view.columns()
        if n in present and (m := view.get(n)) is not None and m.kind in JUDGED_KINDS
    ]


def unknown_metrics(view: MetricView, pair: tuple[Job, Job]) -> list[str]:
    """Metrics a pair reports that no catalogue entry describes (shown, not judged)."""
    present = [*pair[1].metrics, *(k for k in pair[0].metrics if k not in pair[1].metrics)]
    return [n for n in present if view.get(n) is None]

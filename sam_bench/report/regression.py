"""``python -m sam_bench.report compare BASELINE CURRENT``: is the current sweep worse than a
baseline beyond noise?

Each side is a sweep directory, a ``summary.csv`` or an MLflow run (``runs:/<id>``, or a run
id with ``--tracking-uri``). Configurations are matched by ``config_id`` (then by resolved
settings; never by job number); unmatched ones are listed. What differs between the sides is
shown first; a difference that makes the comparison meaningless (dataset, weights, model,
device, dtype) stops it. Every matched configuration gets a verdict per metric of its task
(directions from the catalogue entries the records carry, tolerances from
``conf/regression/default.yaml`` and ``--tol``), timing and memory from its per-image figures
with a paired bootstrap, saved masks compared when both sides have them.

Outputs ``regression.md``, a self-contained ``regression.html`` and ``regression.json`` (in
``--out``, default the current sweep's folder), one line per regression on stdout, and the exit
status: 0 no regression, 1 regression, 2 could not compare (the reason on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sam_bench.report.compare.fairness import (
    Difference,
    assess,
    nothing_matched_reason,
    pair_flags,
)
from sam_bench.report.compare.judge import (
    MetricResult,
    judge_metric,
    judge_status,
    metrics_to_judge,
    point_verdict,
    unknown_metrics,
)
from sam_bench.report.compare.masks import (
    LabelComparison,
    MaskComparison,
    MaskFileError,
    compare_label_folders,
    compare_predictions,
)
from sam_bench.report.compare.matching import (
    Pair,
    closest_pair,
    identity_of,
    match,
    resolve_across,
)
from sam_bench.report.compare.sources import CompareError, Job, Side, load_side
from sam_bench.report.compare.tolerances import (
    Settings,
    apply_overrides,
    check_timing,
    load_settings,
)
from sam_bench.report.summary import override_dict
from sam_bench.report.view import MetricView

EXIT_OK, EXIT_REGRESSION, EXIT_ERROR = 0, 1, 2


@dataclass
class ConfigResult:
    """The verdicts of one matched configuration."""

    label: str
    pair: Pair
    rows: list[MetricResult] = field(default_factory=list)
    masks: MaskComparison | None = None
    video: LabelComparison | None = None
    unknown: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def config_id(self) -> str:
        return self.pair.cur.config_id or self.pair.base.config_id or "-"

    def regressions(self) -> list[MetricResult]:
        return [r for r in self.rows if r.verdict == "regression"]

    def count(self, verdict: str) -> int:
        return sum(r.verdict == verdict for r in self.rows)


@dataclass
class Comparison:
    """Everything the outputs show."""

    baseline: Side
    current: Side
    settings: Settings
    across: list[str]
    differences: list[Difference]
    configs: list[ConfigResult]
    baseline_only: list[tuple[str, Job]]
    current_only: list[tuple[str, Job]]
    notes: list[str]
    untrained: bool
    stop_reason: str | None = None

    def regressions(self) -> list[tuple[ConfigResult, MetricResult]]:
        return [(c, r) for c in self.configs for r in c.regressions()]

    @property
    def exit_code(self) -> int:
        if self.stop_reason:
            return EXIT_ERROR
        return EXIT_REGRESSION if self.regressions() else EXIT_OK

    @property
    def outcome(self) -> str:
        return {EXIT_OK: "no regression", EXIT_REGRESSION: "regression"}.get(
            self.exit_code, "not comparable"
        )


# --------------------------------------------------------------------------------------------
# the comparison


def labels_for(jobs: list[Job]) -> dict[int, str]:
    """A short label per job: the overrides whose values vary among ``jobs`` (both sides),
    else the ``config_id``."""
    maps = {id(j): override_dict(j.overrides) for j in jobs}
    keys: list[str] = []
    for m in maps.values():
        keys.extend(k for k in m if k not in keys)
    varying = [k for k in keys if len({m.get(k) for m in maps.values()}) > 1]
    out = {}
    for j in jobs:
        m = maps[id(j)]
        text = " ".join(f"{k}={m[k]}" for k in varying if k in m)
        out[id(j)] = text or f"config {j.config_id or j.name}"
    return out


def _view(baseline: Side, current: Side) -> MetricView:
    with contextlib.suppress(ImportError):  # entries for records without them; no torch
        import sam_bench.metrics.instance  # noqa: F401
    return MetricView.from_records(
        [*(j.record for j in current.jobs), *(j.record for j in baseline.jobs)]
    )


def _per_s(job: Job) -> str | None:
    spec = job.record.get("task_spec") or {}
    return spec.get("per_s") if isinstance(spec, dict) else None


def judge_pair(
    pair: Pair, label: str, view: MetricView, settings: Settings, progress: bool
) -> ConfigResult:
    """Status, metrics and saved outputs of one matched configuration."""
    result = ConfigResult(label, pair)
    b, c = pair.base, pair.cur
    status = judge_status(b, c)
    result.rows.append(status)
    if not (b.succeeded and c.succeeded):
        return result
    flags = pair_flags(pair)
    per_s = _per_s(c) or _per_s(b)
    for name in metrics_to_judge(view, (b, c)):
        entry = view.get(name)
        assert entry is not None
        result.rows.append(
            judge_metric(
                name, entry, (b, c), settings, per_s=per_s, outputs_comparable=flags["outputs"]
            )
        )
    result.unknown = unknown_metrics(view, (b, c))
    pb, pc = b.predictions_file(), c.predictions_file()
    if pb is not None and pc is not None:
        try:
            result.masks = compare_predictions(pb, pc, progress=progress)
        except MaskFileError as e:
            result.notes.append(f"masks not compared: {e}")
        else:
            result.rows.append(_agreement_row(
                "mask_miou", "mIoU vs baseline masks", result.masks.miou, settings.masks,
                flags["outputs"], _mask_note(result.masks),
            ))  # fmt: skip
    elif (pb is None) != (pc is None):
        side = "baseline" if pb is None else "current run"
        result.notes.append(f"masks not compared: the {side} saved no predictions.json")
    lb, lc = b.label_folder(), c.label_folder()
    if lb is not None and lc is not None:
        try:
            result.video = compare_label_folders(lb, lc)
        except MaskFileError as e:
            result.notes.append(f"label images not compared: {e}")
        else:
            v = result.video
            note = f"{v.identical_frames} of {v.n_frames} frames identical"
            result.rows.append(_agreement_row(
                "video_j", "J vs baseline masks", v.j_mean, settings.video, flags["outputs"], note
            ))  # fmt: skip
    return result


def _mask_note(m: MaskComparison) -> str:
    text = f"{m.identical} of {m.n_images} images identical"
    if m.count_changed:
        text += f"; mask count changed in {len(m.count_changed)}"
    return text


def _agreement_row(
    name: str, label: str, value: float, tol: Any, comparable: bool, note: str
) -> MetricResult:
    row = MetricResult(
        metric=name, label=label, kind="masks", direction="higher", baseline=1.0,
        current=value, delta=value - 1.0, ratio=None, interval=None, n_images=None,
        tolerance=tol.describe(), verdict="not judged", note=note, fmt="{:.4f}",
        band=tol.band(1.0) if tol.judge else None,
    )  # fmt: skip
    if not comparable:
        row.note += "; weights differ: not judged"
    elif tol.judge:
        row.verdict, why = point_verdict(1.0, value, "higher", tol, exact=True)
        row.note = f"{row.note}; {why}" if why else row.note
    return row


def compare(
    baseline: Side,
    current: Side,
    settings: Settings,
    across: list[str] | None = None,
    progress: bool = False,
) -> Comparison:
    """Compare two loaded sides (see the module docstring)."""
    across = list(across or [])
    docs = [d for j in [*baseline.jobs, *current.jobs] if (d := identity_of(j)) is not None]
    paths = resolve_across(across, docs)
    matching = match(baseline.jobs, current.jobs, paths)
    order = {id(j): i for i, j in enumerate(current.jobs)}
    pairs = sorted(matching.pairs, key=lambda p: order[id(p.cur)])
    labels = labels_for([*baseline.jobs, *current.jobs])
    pair_labels = {id(p): labels[id(p.cur)] for p in pairs}
    allowed = ["dataset" if a == "data" else a for a in across]
    diffs = assess(baseline.jobs, current.jobs, pairs, pair_labels, allowed)
    untrained = any(j.record.get("untrained") is True for j in [*baseline.jobs, *current.jobs])
    comp = Comparison(
        baseline=baseline,
        current=current,
        settings=settings,
        across=across,
        differences=diffs,
        configs=[],
        baseline_only=[(labels[id(j)], j) for j in matching.baseline_only],
        current_only=[(labels[id(j)], j) for j in matching.current_only],
        notes=list(matching.notes),
        untrained=untrained,
    )
    stops = [d for d in diffs if d.severity == "stop"]
    if stops:
        comp.stop_reason = "the comparison is meaningless: " + "; ".join(
            f"{d.label} differs (baseline: {', '.join(d.baseline) or '?'}; current: "
            f"{', '.join(d.current) or '?'}): {d.effect}"
            for d in stops
        ) + f". To compare anyway: --across {','.join(d.name for d in stops)}"  # fmt: skip
        return comp
    if not pairs:
        comp.stop_reason = nothing_matched_reason(
            diffs, len(baseline.jobs), len(current.jobs), closest_pair(baseline.jobs, current.jobs)
        )
        return comp
    view = _view(baseline, current)
    for p in pairs:
        comp.configs.append(judge_pair(p, pair_labels[id(p)], view, settings, progress))
    return comp


# --------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sam_bench.report compare",
        description=(
            "Compare a sweep with a baseline: per matched configuration (by config_id) and "
            "metric, baseline, current, delta and a verdict (better / same / worse / "
            "regression); timing judged from per-image figures with a bootstrap interval. "
            "Exit status 0: no regression, 1: regression, 2: could not compare."
        ),
        epilog=(
            "BASELINE and CURRENT: a sweep directory, a summary.csv, runs:/<run id> or an "
            "MLflow run id. Tolerances: conf/regression/default.yaml (--config), overridden "
            "by --tol NAME=VALUE (0.01 absolute, 20% relative, off: not judged; NAME: a "
            "metric, accuracy / count / cost, masks or video)."
        ),
    )
    parser.add_argument("baseline", metavar="BASELINE", help="the reference run")
    parser.add_argument("current", metavar="CURRENT", help="the run to check")
    parser.add_argument(
        "--out", type=Path, default=None,
        help="folder for regression.md/.html/.json (default: the current sweep's folder, or "
        "./regression for an MLflow run)",
    )  # fmt: skip
    parser.add_argument(
        "--config", type=Path, default=None,
        help="tolerance file (default: sam_bench/conf/regression/default.yaml)",
    )  # fmt: skip
    parser.add_argument(
        "--tol", action="append", default=[], metavar="NAME=VALUE",
        help="override a tolerance (repeatable): miou=0.01, latency_ms_p50=20%%, cost=50%%, "
        "model_build_s=off, masks=0.05",
    )  # fmt: skip
    parser.add_argument(
        "--across", action="append", default=[], metavar="NAME",
        help="compare across a difference (repeatable or comma-separated): dataset, weights, "
        "model, device, dtype, engine, seed, preprocess, or a setting such as "
        "amg.points_per_batch or preprocess.bit_depth; left out of the matching and not a "
        "reason to stop",
    )  # fmt: skip
    parser.add_argument(
        "--tracking-uri", default=None,
        help="MLflow store of run ids (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db "
        "in the working directory); also accepted as tracking.uri=URI",
    )  # fmt: skip
    parser.add_argument(
        "--min-images",
        type=int,
        default=None,
        help="fewest paired images for a timing verdict (default 5)",
    )
    parser.add_argument(
        "--confidence", type=float, default=None, help="of the bootstrap interval (default 0.95)"
    )
    parser.add_argument(
        "--resamples", type=int, default=None, help="bootstrap resamples (default 2000)"
    )
    parser.add_argument("--seed", type=int, default=None, help="of the bootstrap (default 0)")
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="progress bars (default: when stderr is a terminal)",
    )  # fmt: skip
    return parser  # fmt: skip


def _argv(argv: list[str]) -> list[str]:
    """``tracking.uri=URI`` (the benchmark's spelling) as ``--tracking-uri URI``."""
    out = []
    for a in argv:
        if a.startswith("tracking.uri="):
            out.extend(["--tracking-uri", a.split("=", 1)[1]])
        else:
            out.append(a)
    return out


def settings_from_args(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    settings = apply_overrides(settings, list(args.tol))
    timing = settings.timing
    for key in ("min_images", "confidence", "resamples", "seed"):
        value = getattr(args, key)
        if value is not None:
            timing = replace(timing, **{key: value})
    settings.timing = check_timing(timing, "command line: timing")
    return settings


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; returns the exit status (0, 1 or 2)."""
    parser = build_parser()
    args = parser.parse_args(_argv(list(sys.argv[1:] if argv is None else argv)))
    progress = sys.stderr.isatty() if args.progress is None else bool(args.progress)
    across = [a.strip() for item in args.across for a in item.split(",") if a.strip()]
    with tempfile.TemporaryDirectory(prefix="sam_bench_compare_") as scratch:
        try:
            settings = settings_from_args(args)
            sides = [
                load_side(spec, role, tracking_uri=args.tracking_uri, scratch=Path(scratch),
                          progress=progress)
                for spec, role in ((args.baseline, "baseline"), (args.current, "current"))
            ]  # fmt: skip
            comp = compare(sides[0], sides[1], settings, across, progress)
        except CompareError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_ERROR
        out_dir = args.out or comp.current.folder or Path.cwd() / "regression"
        from sam_bench.report.compare.output import print_summary, write_outputs

        try:
            files = write_outputs(comp, Path(out_dir))
        except OSError as e:
            print(f"error: cannot write the report to {out_dir}: {e}", file=sys.stderr)
            files = []
        print_summary(comp, files)
        return comp.exit_code

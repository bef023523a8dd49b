"""What differs between the two sides, shown before any verdict.

* **Stops** (exit 2) -- differences that make a comparison meaningless: the dataset
  (fingerprint), the weights (checkpoint sha256, or random vs a checkpoint), the model, the
  device (CPU vs CUDA) and the dtype. ``--across NAME`` compares anyway.
* **Warnings** -- random weights drawn differently on the two sides (another seed or torch
  build): timing is comparable, accuracy and masks are not (and are not judged).
* **Context** -- what a comparison is usually about: engine, versions of torch / sam2 / numpy
  / Python / sam_bench, git commit, hardware (CPU model, GPU, threads) and contention.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sam_bench.compare.jobs import Job
from sam_bench.compare.matching import Pair


def _env(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda r: (r.get("environment") or {}).get(key)


def weights_of(rec: dict[str, Any]) -> str | None:
    """``random:<hash>``, ``sha256:<hash>`` (a checkpoint), ``predictions:<hash>`` or the
    label: what the weights were."""
    w = rec.get("weights") or {}
    kind, h = w.get("kind"), w.get("hash") or w.get("sha256")
    if kind == "random" or w.get("label") == "random":
        return f"random:{str(h)[:16]}" if h else "random"
    if kind == "none":
        return None
    if h:
        prefix = "predictions" if kind == "predictions" else "sha256"
        return f"{prefix}:{str(h)[:16]}"
    return w.get("label") or None


def _model(rec: dict[str, Any]) -> Any:
    cfg = rec.get("config") or {}
    return (cfg.get("model") or {}).get("name")


def _dtype(rec: dict[str, Any]) -> Any:
    return (rec.get("environment") or {}).get("dtype") or (rec.get("config") or {}).get("dtype")


def _engine(rec: dict[str, Any]) -> Any:
    spec = rec.get("task_spec") or {}
    if spec and not spec.get("uses_engine"):
        return None
    return (rec.get("config") or {}).get("engine") or (rec.get("task_info") or {}).get("engine")


_VERSIONS = "versions differ: the comparison measures them"


@dataclass(frozen=True)
class Field:
    name: str
    """``--across`` name (stops) or a short key."""
    label: str
    get: Callable[[dict[str, Any]], Any]
    severity: str
    """``stop`` or ``context``."""
    effect: str


FIELDS = (
    Field("dataset", "dataset fingerprint", lambda r: (r.get("dataset") or {}).get("fingerprint"),
          "stop", "results on different data cannot be compared"),
    Field("weights", "weights", weights_of, "stop",
          "other weights give other outputs by construction"),
    Field("model", "model", _model, "stop", "another model is another benchmark"),
    Field("device", "device", _env("device"), "stop", "CPU and GPU figures are not comparable"),
    Field("dtype", "dtype", _dtype, "stop", "another numeric precision changes every figure"),
    Field("engine", "engine", _engine, "context",
          "engines differ: the comparison measures them (outputs and timing)"),
    Field("torch", "torch", _env("torch"), "context", _VERSIONS),
    Field("sam2", "sam2", _env("sam2"), "context", _VERSIONS),
    Field("torchvision", "torchvision", _env("torchvision"), "context", "versions differ"),
    Field("numpy", "numpy", _env("numpy"), "context", "versions differ"),
    Field("python", "Python", _env("python"), "context", "versions differ"),
    Field("sam_bench", "sam_bench", _env("sam_bench"), "context", "versions differ"),
    Field("git_commit", "git commit", _env("git_commit"), "context", "the code differs"),
    Field("cpu_model", "CPU", _env("cpu_model"), "context",
          "hardware differs: timing reflects it too"),
    Field("device_name", "device name", _env("device_name"), "context",
          "hardware differs: timing reflects it too"),
    Field("torch_threads", "torch threads", _env("torch_threads"), "context",
          "thread counts differ: timing reflects it"),
    Field("cuda_version", "CUDA", _env("cuda_version"), "context", "versions differ"),
    Field("cuda_extension", "sam2 CUDA extension", _env("cuda_extension"), "context",
          "post-processing may run another implementation"),
    Field("concurrent_jobs", "concurrent jobs", _env("concurrent_jobs"), "context",
          "jobs shared the machine: latency was contended"),
)  # fmt: skip
STOP_NAMES = tuple(f.name for f in FIELDS if f.severity == "stop")


@dataclass
class Difference:
    """One field's values on each side (all jobs of the side)."""

    name: str
    label: str
    baseline: list[str]
    current: list[str]
    severity: str
    """``stop``, ``allowed`` (a stop named by ``--across``), ``warn`` or ``context``."""
    effect: str
    differs: bool
    pairs: list[str] = field(default_factory=list)
    """Matched configurations where it differs (their labels)."""

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _values(jobs: list[Job], get: Callable[[dict[str, Any]], Any]) -> list[str]:
    seen = []
    for j in jobs:
        v = get(j.record)
        if v is not None and v != "" and str(v) not in seen:
            seen.append(str(v))
    return seen


def both_random(base: dict[str, Any], cur: dict[str, Any]) -> bool:
    wb, wc = weights_of(base) or "", weights_of(cur) or ""
    return wb.startswith("random") and wc.startswith("random")


def differ(field_: Field, base: dict[str, Any], cur: dict[str, Any]) -> bool:
    """Whether ``field_`` differs between two records (unknown on either side: no)."""
    a, b = field_.get(base), field_.get(cur)
    return a is not None and b is not None and str(a) != str(b)


def assess(
    baseline: list[Job],
    current: list[Job],
    pairs: list[Pair],
    labels: dict[int, str],
    allowed: list[str],
) -> list[Difference]:
    """Every field that differs between the sides (over all jobs, and over the matched pairs
    for the stops), in display order: stops, warnings, context. ``labels``: configuration
    label by ``id(pair)``; ``allowed``: ``--across`` names."""
    out = []
    for f in FIELDS:
        vb, vc = _values(baseline, f.get), _values(current, f.get)
        hit = [labels[id(p)] for p in pairs if differ(f, p.base.record, p.cur.record)]
        sweep_differs = bool(vb and vc and set(vb) != set(vc))
        if not (hit or sweep_differs):
            continue
        severity, effect = f.severity, f.effect
        if (
            f.name == "weights"
            and hit
            and all(
                both_random(p.base.record, p.cur.record)
                for p in pairs
                if differ(f, p.base.record, p.cur.record)
            )
        ):
            severity = "warn"
            effect = (
                "random weights drawn differently (another seed or torch build): timing is "
                "comparable; accuracy and masks are not judged"
            )
        elif severity == "stop" and f.name in allowed:
            severity = "allowed"
            effect += f" (compared anyway: --across {f.name})"
        elif severity == "stop" and not hit:
            severity = "context"  # differs between sweeps, but no matched pair crosses it
            effect = "differs between the sweeps, not within a matched configuration"
        out.append(Difference(f.name, f.label, vb, vc, severity, effect, True, hit))
    rank = {"stop": 0, "allowed": 1, "warn": 2, "context": 3}
    return sorted(out, key=lambda d: rank[d.severity])


def pair_flags(pair: Pair) -> dict[str, bool]:
    """What a matched pair's differences mean for its verdicts: ``outputs`` (accuracy and
    masks can be judged)."""
    w = next(f for f in FIELDS if f.name == "weights")
    random_redrawn = differ(w, pair.base.record, pair.cur.record) and both_random(
        pair.base.record, pair.cur.record
    )
    return {"outputs": not random_redrawn}


def nothing_matched_reason(
    diffs: list[Difference],
    n_base: int,
    n_cur: int,
    closest: tuple[Job, Job, list[str]] | None = None,
) -> str:
    """Why no configuration matched: what differs between the sweeps (fields not named by
    ``--across``) and, from ``closest`` (the most similar pair and the identity parts that
    differ), what to name with ``--across``."""
    text = (
        f"no configuration matched: none of the {n_cur} current configurations has the "
        f"config_id or settings of one of the {n_base} baseline configurations"
    )
    stops = [d for d in diffs if d.name in STOP_NAMES and d.severity != "allowed"]
    if stops:
        text += "; the sides differ in " + "; ".join(
            f"{d.label} (baseline: {', '.join(d.baseline)}; current: {', '.join(d.current)})"
            for d in stops
        )
    if closest is not None and closest[2]:
        b, c, parts = closest
        shown = ", ".join(parts[:6]) + (" ..." if len(parts) > 6 else "")
        text += (
            f"; the most similar pair (baseline job {b.name}, current job {c.name}) differs "
            f"in {shown}"
        )
    return text + ". Compare like with like, or name what may differ with --across"

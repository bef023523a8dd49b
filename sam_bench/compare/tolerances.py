"""Tolerances and test settings of the regression check.

Read from ``conf/regression/default.yaml`` (or ``--config FILE``), then overridden on the
command line (``--tol NAME=VALUE``). The file documents every key; a misspelled key, a
negative tolerance or an unknown value fails with a message naming the key and the file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from sam_bench.compare.jobs import CompareError

DEFAULT_FILE = Path(__file__).resolve().parents[1] / "conf" / "regression" / "default.yaml"
KINDS = ("accuracy", "count", "cost")
SPECIAL = ("masks", "labels", "video")
"""Tolerances of the agreement of saved outputs (:mod:`.comparers`: ``masks`` for
``instance_rle``, ``labels`` for ``label_png``, ``video`` for ``palette_png_sequence``)."""


@dataclass(frozen=True)
class Tolerance:
    """How far a metric may move in the bad direction before it is a regression."""

    absolute: float | None = None
    """In the metric's unit."""
    relative: float | None = None
    """A fraction of the baseline value (0.3 = 30%)."""
    judge: bool = True
    """``False``: shown without a verdict."""

    def exceeded(self, delta: float, baseline: float) -> bool:
        """Whether a change of ``|delta|`` from ``baseline`` is beyond the tolerance (beyond
        both bounds when both are set)."""
        size = abs(delta)
        checks = []
        if self.absolute is not None:
            checks.append(size > self.absolute)
        if self.relative is not None:
            checks.append(size > self.relative * abs(baseline))
        return all(checks) if checks else size > 0

    def band(self, baseline: float) -> float:
        """The largest change of ``baseline`` within the tolerance (both bounds: the larger)."""
        bounds = []
        if self.absolute is not None:
            bounds.append(self.absolute)
        if self.relative is not None:
            bounds.append(self.relative * abs(baseline))
        return max(bounds) if bounds else 0.0

    def ratio_bound(self, baseline: float) -> float:
        """The tolerance as a fraction of ``baseline`` (for ratio tests): the larger of the
        bounds when both are set."""
        bounds = []
        if self.relative is not None:
            bounds.append(self.relative)
        if self.absolute is not None and baseline:
            bounds.append(self.absolute / abs(baseline))
        return max(bounds) if bounds else 0.0

    def describe(self) -> str:
        if not self.judge:
            return "not judged"
        parts = []
        if self.absolute is not None:
            parts.append(f"±{self.absolute:g}")
        if self.relative is not None:
            parts.append(f"±{self.relative * 100:g}%")
        return " and ".join(parts) or "exact"

    def to_dict(self) -> dict[str, Any]:
        return {"absolute": self.absolute, "relative": self.relative, "judge": self.judge}


@dataclass(frozen=True)
class TimingSettings:
    """The noise-aware test of per-image figures."""

    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 0
    min_images: int = 5


@dataclass
class Settings:
    """Every tolerance of one comparison."""

    kinds: dict[str, Tolerance] = field(default_factory=dict)
    metrics: dict[str, Tolerance] = field(default_factory=dict)
    masks: Tolerance = field(default_factory=lambda: Tolerance(absolute=0.02))
    labels: Tolerance = field(default_factory=lambda: Tolerance(absolute=0.02))
    video: Tolerance = field(default_factory=lambda: Tolerance(absolute=0.02))
    timing: TimingSettings = field(default_factory=TimingSettings)
    source: str = ""
    overrides: list[str] = field(default_factory=list)

    def tolerance(self, metric: str, kind: str | None) -> Tolerance:
        """The metric's own tolerance, else its kind's, else "not judged"."""
        if metric in self.metrics:
            return self.metrics[metric]
        if kind in self.kinds:
            return self.kinds[kind]
        return Tolerance(judge=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "overrides": list(self.overrides),
            "kinds": {k: t.to_dict() for k, t in self.kinds.items()},
            "metrics": {k: t.to_dict() for k, t in self.metrics.items()},
            "masks": self.masks.to_dict(),
            "labels": self.labels.to_dict(),
            "video": self.video.to_dict(),
            "timing": vars(self.timing).copy(),
        }


def _tolerance(data: Any, where: str) -> Tolerance:
    if not isinstance(data, dict):
        raise CompareError(f"{where}: expected a mapping like {{absolute: 0.01}}, got {data!r}")
    unknown = set(data) - {"absolute", "relative", "judge"}
    if unknown:
        raise CompareError(
            f"{where}: unknown key {sorted(unknown)[0]!r} (use absolute, relative or judge)"
        )
    values: dict[str, Any] = {}
    for key in ("absolute", "relative"):
        v = data.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise CompareError(f"{where}.{key}: {v!r} is not a number >= 0")
        values[key] = float(v)
    judge = data.get("judge", True)
    if not isinstance(judge, bool):
        raise CompareError(f"{where}.judge: {judge!r} is not true or false")
    return Tolerance(values.get("absolute"), values.get("relative"), judge)


def _timing(data: Any, where: str) -> TimingSettings:
    if data is None:
        return TimingSettings()
    if not isinstance(data, dict):
        raise CompareError(f"{where}: expected a mapping")
    t = TimingSettings()
    unknown = set(data) - set(vars(t))
    if unknown:
        raise CompareError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    return check_timing(replace(t, **data), where)


def check_timing(t: TimingSettings, where: str) -> TimingSettings:
    """``t`` when every value is in range; else :class:`CompareError` naming the key."""
    if not isinstance(t.confidence, int | float) or not 0.5 <= float(t.confidence) < 1:
        raise CompareError(f"{where}.confidence: {t.confidence!r} is not in [0.5, 1)")
    for key, low in (("resamples", 100), ("min_images", 2)):
        v = getattr(t, key)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise CompareError(f"{where}.{key}: {v!r} is not an integer >= {low}")
    if isinstance(t.seed, bool) or not isinstance(t.seed, int):
        raise CompareError(f"{where}.seed: {t.seed!r} is not an integer")
    return replace(t, confidence=float(t.confidence))


def load_settings(path: Path | None = None) -> Settings:
    """The settings of ``path`` (default: the packaged ``conf/regression/default.yaml``)."""
    path = Path(path) if path is not None else DEFAULT_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise CompareError(f"tolerance file not found: {path}") from None
    except (OSError, yaml.YAMLError) as e:
        raise CompareError(f"cannot read the tolerance file {path}: {e}") from None
    if not isinstance(data, dict):
        raise CompareError(f"{path}: expected a mapping at the top level")
    unknown = set(data) - {"kinds", "metrics", *SPECIAL, "timing"}
    if unknown:
        raise CompareError(
            f"{path}: unknown key {sorted(unknown)[0]!r} (kinds, metrics, masks, labels, video, "
            "timing)"
        )
    kinds = data.get("kinds") or {}
    metrics = data.get("metrics") or {}
    for name, section in (("kinds", kinds), ("metrics", metrics)):
        if not isinstance(section, dict):
            raise CompareError(f"{path}: {name}: expected a mapping")
    bad = set(kinds) - set(KINDS)
    if bad:
        raise CompareError(f"{path}: kinds: unknown kind {sorted(bad)[0]!r} (one of {KINDS})")
    settings = Settings(
        kinds={k: _tolerance(v, f"{path}: kinds.{k}") for k, v in kinds.items()},
        metrics={str(k): _tolerance(v, f"{path}: metrics.{k}") for k, v in metrics.items()},
        timing=_timing(data.get("timing"), f"{path}: timing"),
        source=str(path),
    )
    for name in SPECIAL:
        if data.get(name) is not None:
            setattr(settings, name, _tolerance(data[name], f"{path}: {name}"))
    return settings


_VALUE = re.compile(r"(?P<num>[0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)(?P<pct>%?)", re.IGNORECASE)


def parse_tolerance(text: str) -> tuple[str, Tolerance]:
    """``NAME=VALUE`` from the command line: ``0.01`` absolute, ``20%`` relative, ``off`` not
    judged. NAME is a metric, a kind (accuracy, count, cost), ``masks``, ``labels`` or ``video``."""
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip().lower()
    if not sep or not name or not value:
        raise CompareError(f"--tol {text!r}: expected NAME=VALUE (e.g. miou=0.01, cost=30%)")
    if value in ("off", "none", "false"):
        return name, Tolerance(judge=False)
    m = _VALUE.fullmatch(value)
    if m is None:
        raise CompareError(
            f"--tol {text!r}: {value!r} is not a tolerance (a number, a percentage such as "
            "20%, or off)"
        )
    number = float(m.group("num"))
    if m.group("pct"):
        return name, Tolerance(relative=number / 100.0)
    return name, Tolerance(absolute=number)


def apply_overrides(settings: Settings, items: list[str]) -> Settings:
    """``settings`` with the ``--tol`` items applied, in order."""
    for item in items:
        name, tol = parse_tolerance(item)
        if name in KINDS:
            settings.kinds[name] = tol
        elif name in SPECIAL:
            setattr(settings, name, tol)
        else:
            settings.metrics[name] = tol
        settings.overrides.append(item)
    return settings

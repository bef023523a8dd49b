"""The toy task's metrics (declared in the catalogue when the catalogue first answers)."""

from __future__ import annotations

from sam_bench.metrics.catalogue import Metric, declare

declare(
    Metric("toy_brightness", "neither", "brightness", "mean model-input value / 255, mean over "
           "images", tasks=("toy",), kind="count"),
    Metric("toy_agreement", "higher", "agreement", "fraction of GT instance pixels brighter "
           "than the image mean, mean over images", tasks=("toy",), reference="tests only"),
)  # fmt: skip

"""Both AMG engines check the running job's RSS budget before every prompt batch (after the
image encoder, before the decoder): a budget the process is already over stops the image
there, with the item named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sam_bench.config import DatasetConfig, PreprocessConfig
from sam_bench.data.registry import build_dataset
from sam_bench.engines.fast import FastEngine
from sam_bench.engines.reference import ReferenceEngine
from sam_bench.limits import MemoryBudgetExceeded, MemoryLimits, job_limits
from sam_bench.metrics.cost import StageTimes
from sam_bench.preprocess import to_model_input
from sam_bench.tasks.amg.settings import AMGConfig

CPU = torch.device("cpu")


@pytest.mark.parametrize("engine", [FastEngine, ReferenceEngine])
def test_engines_check_the_budget_before_each_prompt_batch(tiny_model, engine) -> None:
    ds = build_dataset(DatasetConfig(limit=1), Path("."))
    image = to_model_input(ds.load(ds.refs()[0]).raw, PreprocessConfig())[0]
    amg = AMGConfig(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    limits = MemoryLimits(max_rss_gb=0.001)
    times = StageTimes()
    eng = engine(tiny_model, amg, CPU)
    with job_limits(limits), pytest.raises(MemoryBudgetExceeded) as err:
        limits.begin_item("img")
        eng.generate(image, times)
    assert "checked prompt batch of item img" in str(err.value)
    # the encoder ran, no prompt batch did (the reference engine's own timers: it adds them
    # to the item's only at the end)
    ran = times if engine is FastEngine else eng._timer.times
    assert ran.seconds["encoder"] > 0 and ran.seconds.get("decoder", 0.0) == 0

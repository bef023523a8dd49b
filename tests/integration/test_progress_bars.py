"""Progress inside an item: both AMG engines count the point prompts of their decoder batches
on a bar that appears when an item takes long (here: at once), ending at the grid's size
(m2m refinement and out-of-memory retries do not count twice). Random-weight tiny SAM 2.1 on
one embedded image, CPU."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from sam_bench import progress
from sam_bench.config import DatasetConfig, PreprocessConfig
from sam_bench.data.registry import build_dataset
from sam_bench.engines.fast import FastAMG
from sam_bench.engines.reference import ReferenceEngine
from sam_bench.metrics.cost import StageTimes
from sam_bench.preprocess import to_model_input
from sam_bench.tasks.amg.settings import AMGConfig

#: 3x3 grid in batches of 4 (4 + 4 + 1), m2m on: the refinement calls the decoder again.
AMG = AMGConfig(
    points_per_side=3, points_per_batch=4, use_m2m=True, pred_iou_thresh=0.0,
    stability_score_thresh=0.0, box_nms_thresh=1.0,
)  # fmt: skip


@pytest.fixture(scope="module")
def image():
    ds = build_dataset(DatasetConfig(scenes=["color"], limit=1), Path("."))
    return to_model_input(ds.load(ds.refs()[0]).raw, PreprocessConfig())[0]


def counts(err: str) -> list[tuple[int, int]]:
    """Every ``prompts: ... n/total`` the bar printed."""
    return [(int(a), int(b)) for a, b in re.findall(r"prompts:[^\n\r]*?\| (\d+)/(\d+)", err)]


@pytest.mark.parametrize("engine", ["fast", pytest.param("reference", marks=pytest.mark.slow)])
def test_prompt_batches_move_the_item_bar(
    engine: str, tiny_model, image, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(progress, "INNER_DELAY_S", 0.0)
    progress.configure(True)
    cpu = torch.device("cpu")
    if engine == "fast":
        masks = FastAMG(tiny_model, [AMG], cpu).generate_many(image, [StageTimes()])[0]
    else:
        masks = ReferenceEngine(tiny_model, AMG, cpu).generate(image, StageTimes())
    assert masks, "no mask: the decoder did not run"
    seen = counts(capsys.readouterr().err)
    assert seen, "no prompt bar was shown"
    assert {total for _, total in seen} == {9}
    done = [n for n, _ in seen]
    assert max(done) == 9 and done == sorted(done)  # every prompt once, m2m not again
    assert set(done) - {0} <= {4, 8, 9}  # moved per batch


@pytest.mark.slow
def test_no_bar_with_progress_off(tiny_model, image, capsys, monkeypatch) -> None:
    monkeypatch.setattr(progress, "INNER_DELAY_S", 0.0)
    progress.configure(False)
    try:
        FastAMG(tiny_model, [AMG], torch.device("cpu")).generate_many(image, [StageTimes()])
    finally:
        progress.configure(True)
    assert counts(capsys.readouterr().err) == []

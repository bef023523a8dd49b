"""The AMG warm-up on the CPU is light: the real image encoder once on a small blank input,
before the first timed image, and recorded as such (``task_info.warmup``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose

from sam_bench.models.build import build_model
from sam_bench.run import run_job
from sam_bench.tasks.amg import AMGTask
from sam_bench.tasks.amg.task import LIGHT_WARMUP_SIZE, light_warmup

pytestmark = pytest.mark.usefixtures("hydra_conf")


def test_a_cpu_run_warms_up_the_encoder_on_a_small_input(tmp_path: Path, monkeypatch) -> None:
    seen: list[tuple[int, ...]] = []
    build = AMGTask.build_model.__func__  # type: ignore[attr-defined]

    def watched(cls: type[AMGTask], cfg: Any, device: Any) -> Any:
        model, weights = build(cls, cfg, device)
        model.image_encoder.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape)))
        return model, weights

    monkeypatch.setattr(AMGTask, "build_model", classmethod(watched))
    cfg = compose(
        "config",
        overrides=["model.weights=random", "amg.points_per_side=2", "dataset.limit=1",
                   "tracking=none", "progress=false", "device=cpu", "warmup=true"],
    )  # fmt: skip
    record = run_job(cfg, tmp_path / "job", overrides=[], base_dir=tmp_path)
    assert record["status"] == "ok", record.get("error")
    small, full = (1, 3, LIGHT_WARMUP_SIZE, LIGHT_WARMUP_SIZE), (1, 3, 1024, 1024)
    assert seen == [small, full]  # the warm-up, then the timed image
    saved = json.loads((tmp_path / "job" / "result.json").read_text())
    warm = saved["task_info"]["warmup"]
    assert warm["kind"] == "light" and warm["item"] == "1" and warm["failed"] == []
    assert isinstance(warm["seconds"], float) and warm["seconds"] > 0.0


@pytest.mark.parametrize(
    "name", ["sam2.1_hiera_tiny", pytest.param("sam2.1_hiera_large", marks=pytest.mark.slow)]
)
def test_the_light_warm_up_runs_every_model_size(name: str) -> None:
    """The backbone takes the small input (position embeddings interpolated, windows padded)."""
    cfg = compose("config", overrides=[f"model={name}", "model.weights=random"])
    from sam_bench.config import to_typed

    model, _ = build_model(to_typed(cfg).model, torch.device("cpu"), 0, progress=False)
    out: list[torch.Tensor] = []
    model.image_encoder.register_forward_hook(lambda m, a, o: out.append(o["vision_features"]))
    light_warmup(model, "fp32")
    assert out and out[0].shape[-1] == LIGHT_WARMUP_SIZE // 16 and torch.isfinite(out[0]).all()

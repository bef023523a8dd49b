"""Engine rules about devices, host copies and lifetimes, on every device this machine has:
the CPU always, CUDA under the ``gpu`` marker (skipped with the reason where CUDA is
unavailable; ``make test-gpu``).

* Every tensor of one image stays on the model's device, and the indices NMS returns index
  tensors on their own device (with crop layers, the cross-crop NMS used to index CPU
  ``crop_boxes`` with CUDA indices). On the CPU every device is the CPU, so there this test
  checks only that the cross-crop indexing happens, over the fields it must cover; the
  device check bites on CUDA.
* The output records are built from one host copy per field, not one device sync per mask.
* Engines do not keep the model alive: no reference cycle (dropping an engine frees its
  predictor and model at once, without the garbage collector) and ``close()`` drops them.
"""

from __future__ import annotations

import copy
import gc
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from sam_bench.config import DatasetConfig, PreprocessConfig
from sam_bench.data.registry import build_dataset
from sam_bench.engines.fast import FastAMG, FastEngine, _Kept
from sam_bench.engines.reference import ReferenceEngine
from sam_bench.metrics.cost import StageTimes
from sam_bench.preprocess import to_model_input
from sam_bench.tasks.amg.settings import AMGConfig

KEEP = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.gpu)]


@pytest.fixture(scope="module")
def image():
    ds = build_dataset(DatasetConfig(scenes=["color"], limit=1), Path("."))
    return to_model_input(ds.load(ds.refs()[0]).raw, PreprocessConfig())[0]


@pytest.fixture(scope="module")
def model_on(tiny_model: torch.nn.Module) -> Callable[[str], torch.nn.Module]:
    """The shared tiny model on a device (a copy for CUDA; the CPU one is never changed)."""
    cache: dict[str, torch.nn.Module] = {"cpu": tiny_model}

    def get(device: str) -> torch.nn.Module:
        if device not in cache:
            cache[device] = copy.deepcopy(tiny_model).to(device)
        return cache[device]

    return get


@pytest.mark.parametrize("device", DEVICES)
def test_crop_layer_nms_indexes_tensors_on_their_device(
    device: str, model_on, image, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[torch.device, dict[str, torch.device]]] = []
    select = _Kept.select

    def recording(d: dict[str, Any], keep: torch.Tensor) -> dict[str, Any]:
        tensors = {k: v.device for k, v in d.items() if isinstance(v, torch.Tensor)}
        seen.append((keep.device, tensors))
        return select(d, keep)

    monkeypatch.setattr(_Kept, "select", staticmethod(recording))
    cfg = AMGConfig(points_per_side=2, crop_n_layers=1, crop_nms_thresh=0.7, **KEEP)
    dev = torch.device(device)
    (masks,) = FastAMG(model_on(device), [cfg], dev).generate_many(image, [StageTimes()])
    assert masks, "no mask survived: the cross-crop NMS never ran"
    # NMS within each crop that kept masks, then once across the crops (with crop_boxes)
    cross = [i for i, (_, tensors) in enumerate(seen) if "crop_boxes" in tensors]
    assert cross == [len(seen) - 1] and len(seen) >= 2
    assert set(seen[-1][1]) == {"boxes", "iou_preds", "stability", "points", "crop_boxes"}
    for keep_device, tensors in seen:
        assert keep_device.type == dev.type
        assert {d.type for d in tensors.values()} == {dev.type}, tensors


@pytest.mark.parametrize("device", DEVICES)
def test_output_records_copy_each_field_to_the_host_once(
    device: str, model_on, image, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counts the tensor-to-host calls made while the records are built (``_records``)."""
    calls = dict.fromkeys(("item", "cpu", "tolist", "numpy"), 0)
    active = False

    def counting(name: str) -> None:
        original = getattr(torch.Tensor, name)

        def wrapper(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if active:
                calls[name] += 1
            return original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)

    for name in calls:
        counting(name)
    records = FastAMG._records

    def measured(self: FastAMG, *args: Any, **kwargs: Any) -> Any:
        nonlocal active
        active = True
        try:
            return records(self, *args, **kwargs)
        finally:
            active = False

    monkeypatch.setattr(FastAMG, "_records", measured)
    cfg = AMGConfig(points_per_side=4, **KEEP)
    dev = torch.device(device)
    (masks,) = FastAMG(model_on(device), [cfg], dev).generate_many(image, [StageTimes()])
    assert len(masks) >= 20, "too few masks to tell per-mask copies from per-field copies"
    # 5 fields (boxes, crop boxes, IoU, stability, points): .cpu() + .numpy() each
    assert calls["item"] == 0 and calls["tolist"] == 0, calls
    assert calls["cpu"] <= 5 and calls["numpy"] <= 5, calls


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("how", ["close", "del"])
def test_engines_do_not_keep_the_model_alive(device: str, how: str, tiny_model, image) -> None:
    """With the garbage collector off, the model dies as soon as the test drops its own
    reference: after ``close()`` (the engines still referenced), or after dropping the engines
    (no reference cycle through them)."""
    dev = torch.device(device)
    model = copy.deepcopy(tiny_model).to(dev)
    alive = weakref.ref(model)
    cfg = AMGConfig(points_per_side=2, **KEEP)
    gc.collect()
    gc.disable()
    try:
        engines: list[Any] = [ReferenceEngine(model, cfg, dev), FastEngine(model, cfg, dev)]
        for engine in engines:
            assert engine.generate(image, StageTimes())
        del engine
        if how == "close":
            for engine in engines:
                engine.close()
                engine.close()  # idempotent
            del engine, model
            assert alive() is None, "a closed engine still holds the model"
            for engine in engines:
                with pytest.raises(RuntimeError, match="closed"):
                    engine.generate(image, StageTimes())
        else:
            del engines, model
            assert alive() is None, "the model is kept alive by a reference cycle"
    finally:
        gc.enable()

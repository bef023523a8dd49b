"""``video.vos_optimized`` (issue 21, item 4): the warm-up is long enough to compile every
shape, and compilation that still lands in a timed sequence is recorded apart and kept out of
the stage and frame times. torch's compile timer is replayed from a recorded sequence; the
predictor is a stand-in that sleeps (``tests/gpu/test_gpu_tasks.py`` runs the real one)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hydra import compose

from sam_bench.config import to_typed
from sam_bench.data.base import ImageRef, Sample
from sam_bench.metrics.cost import StageTimes
from sam_bench.tasks.video.compile import CompileWatch, compile_totals, warmup_frames
from sam_bench.tasks.video.inputs import Prompt, VideoInput
from sam_bench.tasks.video.metrics import PropagationCost
from sam_bench.tasks.video.tracking import track


class _Model:
    num_maskmem = 7
    max_obj_ptrs_in_encoder = 16


def test_the_warm_up_fills_the_memory_bank_and_pointer_window_when_compiling() -> None:
    assert warmup_frames(3, False, _Model()) == 3
    assert warmup_frames(3, True, _Model()) == 17
    assert warmup_frames(40, True, _Model()) == 40
    small = _Model()
    small.max_obj_ptrs_in_encoder = 4
    assert warmup_frames(2, True, small) == 8  # the memory bank is the longer one
    assert warmup_frames(2, True, object()) == 17  # sam2 1.1.0's defaults


def test_compile_watch_reports_what_happened_since_the_last_look() -> None:
    recorded = iter([(2, 5.0), (2, 5.0), (3, 7.5), (5, 8.0)])
    watch = CompileWatch(totals=lambda: next(recorded))
    assert watch.take() == (0, 0.0)
    assert watch.split(4.0) == (1.5, True)  # 2.5 s of the 4 were compilation
    assert watch.split(0.25) == (0.0, True)  # never negative
    assert (watch.count, watch.seconds) == (3, 3.0)


def test_torch_compile_is_counted_by_the_watch() -> None:
    """The real timer (a CPU ``torch.compile`` with the eager backend: no C++ compiler)."""
    watch = CompileWatch()
    fn = torch.compile(lambda x: x.cos() * 2, backend="eager")
    fn(torch.ones(3))
    n, s = watch.take()
    assert n == 1 and s > 0
    fn(torch.ones(3))
    assert watch.take() == (0, 0.0)
    assert compile_totals()[0] >= 1


class _Predictor:
    """Stands in for SAM2VideoPredictor: each frame takes ``frame_s`` (``slow_s`` for frame
    ``slow``) and the recorded compile timer advances by ``compile_s`` during frame ``slow``."""

    def __init__(self, n: int, slow: int, frame_s: float, slow_s: float, compile_s: float):
        self.n, self.slow, self.frame_s, self.slow_s, self.compile_s = (
            n, slow, frame_s, slow_s, compile_s,
        )  # fmt: skip
        self.total = (0, 0.0)

    def totals(self) -> tuple[int, float]:
        return self.total

    def init_state(self, folder: str, **kw: Any) -> dict[str, Any]:
        return {}

    def add_new_mask(self, state: Any, frame_idx: int, obj_id: int, mask: Any) -> None:
        pass

    def propagate_in_video(self, state: Any, start_frame_idx: int, max_frame_num_to_track: int):
        for t in range(start_frame_idx, start_frame_idx + max_frame_num_to_track + 1):
            time.sleep(self.slow_s if t == self.slow else self.frame_s)
            if t == self.slow:
                self.total = (self.total[0] + 1, self.total[1] + self.compile_s)
            yield t, [1], torch.ones(1, 1, 4, 4)

    def reset_state(self, state: Any) -> None:
        pass


def test_a_compilation_in_a_timed_sequence_is_recorded_apart(tmp_path: Path, hydra_conf) -> None:
    cfg = to_typed(compose("config", overrides=["task=video", "dataset=davis", "dataset.root=x"]))
    pred = _Predictor(n=5, slow=2, frame_s=0.01, slow_s=0.5, compile_s=0.45)
    mask = np.ones((4, 4), bool)
    inputs = VideoInput(tmp_path, [tmp_path / f"{i}.jpg" for i in range(5)], 4, 4,
                        [Prompt(1, 0, "mask", mask=mask)])  # fmt: skip
    times = StageTimes.of(("preprocess", "init", "prompt", "propagation"))
    out = track(pred, inputs, cfg, torch.device("cpu"), times, watch=CompileWatch(pred.totals))
    assert out.frame_ms is not None
    assert out.frame_ms[0] is None  # the prompt frame is never timed
    assert out.frame_ms[2] is None  # the frame that compiled is left out of fps
    assert all(out.frame_ms[i] is not None for i in (1, 3, 4))
    assert (out.n_compiles, out.compile_s) == (1, pytest.approx(0.45))
    others = sum(out.frame_ms[i] or 0.0 for i in (1, 3, 4)) / 1000.0
    frame0_and_compiled = times.seconds["propagation"] - others
    assert frame0_and_compiled < 0.4  # 0.5 s of wall time, 0.45 s of it compilation
    sample = Sample(ImageRef("seq", tmp_path), None, None)
    cost = PropagationCost()
    row = cost.process(sample, out)
    assert row["compile_ms"] == pytest.approx(450.0) and row["n_compiles"] == 1
    assert row["n_frames_propagated"] == 3
    assert cost.evaluate()["timed_compile_s"] == pytest.approx(0.45)


def test_without_vos_optimized_nothing_is_recorded(tmp_path: Path, hydra_conf) -> None:
    cfg = to_typed(compose("config", overrides=["task=video", "dataset=davis", "dataset.root=x"]))
    pred = _Predictor(n=3, slow=1, frame_s=0.0, slow_s=0.0, compile_s=0.0)
    inputs = VideoInput(tmp_path, [tmp_path / f"{i}.jpg" for i in range(3)], 4, 4,
                        [Prompt(1, 0, "mask", mask=np.ones((4, 4), bool))])  # fmt: skip
    out = track(pred, inputs, cfg, torch.device("cpu"), StageTimes())
    assert out.compile_s is None and out.frame_ms is not None and out.frame_ms[1] is not None
    cost = PropagationCost()
    assert "compile_ms" not in cost.process(Sample(ImageRef("s", tmp_path), None, None), out)
    assert "timed_compile_s" not in cost.evaluate()

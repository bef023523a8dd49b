"""Prompting and propagating one sequence with ``SAM2VideoPredictor`` (the protocol is in
:mod:`sam_bench.tasks.video.task`'s docstring)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sam_bench.config import Config
from sam_bench.metrics.cost import Clock, StageTimes
from sam_bench.tasks.video.compile import CompileWatch
from sam_bench.tasks.video.inputs import Prompt, VideoInput
from sam_bench.tasks.video.metrics import VideoPrediction
from sam_bench.tasks.video.settings import video_settings


@contextlib.contextmanager
def sam2_progress(enabled: bool) -> Iterator[None]:
    """sam2's own progress bars (frame loading, propagation) on or off."""
    import sam2.sam2_video_predictor as vp
    import sam2.utils.misc as misc

    saved = (vp.tqdm, misc.tqdm)
    if not enabled:
        quiet = functools.partial(saved[0], disable=True)
        vp.tqdm = misc.tqdm = quiet  # type: ignore[assignment]
    try:
        yield
    finally:
        vp.tqdm, misc.tqdm = saved  # type: ignore[assignment]


def paint(logits: torch.Tensor, obj_ids: list[int], thresh: float) -> np.ndarray:
    """Per-object logits (N x 1 x H x W) as one label map (uint8, or int32 for ids over 255);
    a pixel of several objects goes to the lowest id."""
    masks = (logits[:, 0] > thresh).cpu().numpy()
    wide = bool(obj_ids) and max(obj_ids) > 255
    labels = np.zeros(masks.shape[1:], dtype=np.int32 if wide else np.uint8)
    for i in sorted(range(len(obj_ids)), key=lambda k: obj_ids[k], reverse=True):
        labels[masks[i]] = obj_ids[i]
    return labels


def track(
    predictor: Any,
    inputs: VideoInput,
    cfg: Config,
    device: torch.device,
    times: StageTimes,
    *,
    progress: bool = False,
    watch: CompileWatch | None = None,
) -> VideoPrediction:
    """Prompt and propagate one sequence (see the module docstring), filling ``times``.

    ``watch`` (``video.vos_optimized``): compilation during the sequence is taken out of the
    stage it fell in, a frame during which it happened is not timed (``frame_ms`` None), and
    the prediction records it (``compile_s``, ``n_compiles``;
    :mod:`sam_bench.tasks.video.compile`)."""
    from sam_bench.engines.base import autocast

    v = video_settings(cfg)
    clock = Clock(device)
    n = len(inputs.frames)
    labels: list[np.ndarray | None] = [None] * n
    frame_ms: list[float | None] = [None] * n
    starts = sorted({p.frame for p in inputs.prompts})
    prompted_at: dict[int, set[int]] = {}
    for p in inputs.prompts:
        prompted_at.setdefault(p.frame, set()).add(p.obj)
    count0, seconds0 = (watch.count, watch.seconds) if watch is not None else (0, 0.0)

    def spent(elapsed: float) -> tuple[float, bool]:
        return watch.split(elapsed) if watch is not None else (elapsed, False)

    bar = tqdm(total=n - starts[0], desc="frames", unit="frame", disable=not progress, leave=False)
    with torch.inference_mode(), autocast(device, cfg.dtype), sam2_progress(False):
        t0 = clock.now()
        state = predictor.init_state(
            str(inputs.folder),
            offload_video_to_cpu=v.offload_video_to_cpu,
            offload_state_to_cpu=v.offload_state_to_cpu,
        )
        times.add("init", spent(clock.now() - t0)[0])
        try:
            for k, start in enumerate(starts):
                t0 = clock.now()
                for p in inputs.prompts:
                    if p.frame == start:
                        _add_prompt(predictor, state, p)
                times.add("prompt", spent(clock.now() - t0)[0])
                end = starts[k + 1] - 1 if k + 1 < len(starts) else n - 1
                gen = predictor.propagate_in_video(
                    state, start_frame_idx=start, max_frame_num_to_track=end - start
                )
                last = clock.now()
                for frame_idx, obj_ids, logits in gen:
                    labels[frame_idx] = paint(logits, list(obj_ids), v.score_thresh)
                    now = clock.now()
                    elapsed, compiled = spent(now - last)
                    times.add("propagation", elapsed)
                    if set(obj_ids) - prompted_at.get(frame_idx, set()) and not compiled:
                        frame_ms[frame_idx] = elapsed * 1000.0
                    last = now
                    bar.update(1)
        finally:
            predictor.reset_state(state)
            del state
            bar.close()
    out = VideoPrediction(labels=labels, frame_ms=frame_ms)
    if watch is not None:
        out.n_compiles = watch.count - count0
        out.compile_s = watch.seconds - seconds0
    return out


def _add_prompt(predictor: Any, state: Any, p: Prompt) -> None:
    if p.mask is not None:
        predictor.add_new_mask(state, frame_idx=p.frame, obj_id=p.obj, mask=p.mask)
    elif p.point is not None:
        predictor.add_new_points_or_box(
            state, frame_idx=p.frame, obj_id=p.obj,
            points=np.array([p.point], dtype=np.float32), labels=np.array([1], np.int32),
        )  # fmt: skip
    else:
        predictor.add_new_points_or_box(
            state, frame_idx=p.frame, obj_id=p.obj, box=np.array(p.box, dtype=np.float32)
        )

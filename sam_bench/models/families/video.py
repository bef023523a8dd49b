"""``task=video`` for the transformers families: sam2's video-predictor calls on transformers'
own video model (``EdgeTamVideoModel``, ``Sam3TrackerVideoModel``), its processor and its
inference session.

The video task (:func:`sam_bench.tasks.video.tracking.track`) drives a sam2-style predictor:
``init_state`` / ``add_new_points_or_box`` / ``add_new_mask`` / ``propagate_in_video`` /
``reset_state``. :class:`FamilyVideoPredictor` implements exactly those calls the way
transformers documents its video loop:

* ``init_state(folder)``: the folder's JPEG frames (sorted by their number, as sam2's reader
  sorts them) read as RGB PIL images, then ``processor.init_video_session(video=frames)``
  (resize to the model's input size and normalisation by transformers' video processor);
  ``offload_video_to_cpu`` / ``offload_state_to_cpu`` become the session's
  ``video_storage_device`` / ``inference_state_device``;
* ``add_new_points_or_box`` / ``add_new_mask``: ``processor.add_inputs_to_inference_session``
  (pixel coordinates normalised by the video size, a box as sam2's two corner points with
  labels 2 / 3, a mask resized with sam2's rule), then ``model(session, frame_idx)`` on the
  prompted frame, as transformers' docs do after adding inputs (and as sam2's calls run the
  prompted frame); returns ``(frame_idx, obj_ids, logits)`` like sam2's. transformers' forward
  runs every object on that frame, so on a later start frame the objects already tracked are
  run there too, and again by the propagation that starts there (its iterator recomputes
  them). Running the prompted frame only in the propagation is not the same: with SAM 3's
  tracker it changed later frames' logits slightly (~1e-5 seen here; cause not traced), so
  the documented order is kept;
* ``propagate_in_video``: ``model.propagate_in_video_iterator(session, start_frame_idx,
  max_frame_num_to_track)``, each frame's low-resolution logits brought to the video's size by
  ``processor.post_process_masks(..., binarize=False)`` (bilinear, as sam2 does), with
  ``apply_non_overlapping_constraints`` = ``video.non_overlap_masks`` (sam2 applies it to the
  output masks at the same point); yields ``(frame_idx, obj_ids, logits N x 1 x H x W)``;
* ``reset_state``: ``session.reset_inference_session()``.

What is the model's own and not sam2's (recorded in the README): transformers' video models
always binarise click-prompted masks for the memory encoder (sam2 does with
``apply_postprocessing``), and fill no holes (``video.fill_hole_area`` must be 0);
``video.apply_postprocessing`` switches the mask decoder's dynamic multimask via stability,
as for the image families.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from sam_bench.errors import SamBenchError

#: Frame file suffixes sam2's JPEG-folder reader takes.
JPEG_SUFFIXES = (".jpg", ".jpeg", ".JPG", ".JPEG")


def read_jpeg_folder(folder: str) -> list[Any]:
    """The folder's JPEG frames as RGB PIL images, ordered by their integer name (sam2's
    ``load_video_frames_from_jpg_images`` order: ``00000.jpg``, ``00001.jpg`` ...)."""
    from PIL import Image

    if not os.path.isdir(folder):
        raise SamBenchError(f"video frames folder not found: {folder}")
    names = [n for n in os.listdir(folder) if os.path.splitext(n)[-1] in JPEG_SUFFIXES]
    if not names:
        raise SamBenchError(f"no JPEG frames in {folder}")
    try:
        names.sort(key=lambda n: int(os.path.splitext(n)[0]))
    except ValueError:
        raise SamBenchError(f"frame names in {folder} must be numbers (00000.jpg ...)") from None
    frames = []
    for name in names:
        with Image.open(os.path.join(folder, name)) as im:
            frames.append(im.convert("RGB"))
    return frames


def family_processor(hf_model: Any, pixel_mean: Any, pixel_std: Any) -> Any:
    """transformers' video processor for ``hf_model`` (``Sam2VideoProcessor`` for EdgeTAM,
    ``Sam3TrackerVideoProcessor`` for SAM 3's tracker), built offline: input size from the
    model's config (``image_size``: 1024 / 1008), the family's normalisation, bilinear resize
    (transformers' ``Sam2VideoVideoProcessor`` defaults otherwise)."""
    from transformers import Sam2ImageProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import (
        Sam2VideoVideoProcessor,
    )

    side = int(hf_model.config.image_size)
    size = {"height": side, "width": side}
    mean, std = list(pixel_mean), list(pixel_std)
    image = Sam2ImageProcessor(size=size, image_mean=mean, image_std=std)
    frames = Sam2VideoVideoProcessor(size=size, image_mean=mean, image_std=std)
    if type(hf_model).__name__.startswith("Sam3"):
        from transformers import Sam3TrackerVideoProcessor

        return Sam3TrackerVideoProcessor(image_processor=image, video_processor=frames)
    from transformers import Sam2VideoProcessor

    return Sam2VideoProcessor(image_processor=image, video_processor=frames)


class FamilyVideoPredictor(torch.nn.Module):
    """sam2's video-predictor calls (those the video task makes) on a transformers video model
    (see the module docstring). ``hf`` holds the weights; ``processor`` is transformers'."""

    def __init__(self, hf: Any, processor: Any, *, non_overlap_masks: bool) -> None:
        super().__init__()
        self.hf = hf
        self.processor = processor
        self.non_overlap_masks = bool(non_overlap_masks)
        self.hf_model_class = type(hf).__name__
        # what the video task records of a predictor (sam2's names): no hole filling, and
        # click-prompted masks binarised for the memory encoder (transformers' eval mode)
        self.fill_hole_area = 0
        self.binarize_mask_from_pts_for_mem_enc = True
        # read by the video task's warm-up rule (sam2's names)
        self.num_maskmem = int(hf.config.num_maskmem)
        self.max_obj_ptrs_in_encoder = int(hf.config.max_object_pointers_in_encoder)

    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        p = next(self.hf.parameters())
        return p.device, p.dtype

    def init_state(
        self,
        video_path: str,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
    ) -> Any:
        """An inference session over the JPEG frames of ``video_path`` (a folder)."""
        frames = read_jpeg_folder(str(video_path))
        device, dtype = self._device_dtype()
        return self.processor.init_video_session(
            video=frames,
            inference_device=device,
            inference_state_device="cpu" if offload_state_to_cpu else device,
            video_storage_device="cpu" if offload_video_to_cpu else device,
            dtype=dtype,
        )

    def _video_res(self, state: Any, pred_masks: torch.Tensor) -> torch.Tensor:
        """Low-resolution logits (N x 1 x h x w) at the video's size, unbinarised."""
        size = [[int(state.video_height), int(state.video_width)]]
        logits: torch.Tensor = self.processor.post_process_masks(
            [pred_masks],
            original_sizes=size,
            binarize=False,
            apply_non_overlapping_constraints=self.non_overlap_masks,
        )[0]
        return logits

    def _run_frame(self, state: Any, frame_idx: int) -> tuple[int, list[int], torch.Tensor]:
        """The prompted frame through the model (transformers' documented step)."""
        out = self.hf(inference_session=state, frame_idx=frame_idx)
        return frame_idx, list(out.object_ids), self._video_res(state, out.pred_masks)

    def add_new_points_or_box(
        self,
        inference_state: Any,
        frame_idx: int,
        obj_id: int,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box: np.ndarray | None = None,
    ) -> tuple[int, list[int], torch.Tensor]:
        """Clicks (``points`` N x 2 pixels, ``labels`` N) and/or a box (``x0, y0, x1, y1``
        pixels) for ``obj_id`` on ``frame_idx``; that frame's ``(frame_idx, obj_ids,
        logits)``."""
        if not normalize_coords:
            raise SamBenchError("the transformers video families take pixel coordinates only")
        if (points is None) != (labels is None):
            raise SamBenchError("points and labels must be given together")
        kwargs: dict[str, Any] = {}
        if points is not None and labels is not None:
            kwargs["input_points"] = [[np.asarray(points, dtype=np.float32).tolist()]]
            kwargs["input_labels"] = [[np.asarray(labels, dtype=np.int64).tolist()]]
        if box is not None:
            kwargs["input_boxes"] = [[np.asarray(box, dtype=np.float32).reshape(4).tolist()]]
        self.processor.add_inputs_to_inference_session(
            inference_session=inference_state,
            frame_idx=frame_idx,
            obj_ids=obj_id,
            clear_old_inputs=clear_old_points,
            **kwargs,
        )
        return self._run_frame(inference_state, frame_idx)

    def add_new_mask(
        self, inference_state: Any, frame_idx: int, obj_id: int, mask: np.ndarray
    ) -> tuple[int, list[int], torch.Tensor]:
        """A mask (H x W, the video's size) for ``obj_id`` on ``frame_idx``; that frame's
        ``(frame_idx, obj_ids, logits)``."""
        self.processor.add_inputs_to_inference_session(
            inference_session=inference_state,
            frame_idx=frame_idx,
            obj_ids=obj_id,
            input_masks=[np.asarray(mask, dtype=bool)],
        )
        return self._run_frame(inference_state, frame_idx)

    def propagate_in_video(
        self,
        inference_state: Any,
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[int, list[int], torch.Tensor]]:
        """``(frame_idx, obj_ids, logits)`` per frame from ``start_frame_idx``, logits
        N x 1 x H x W at the video's size (see the module docstring)."""
        for out in self.hf.propagate_in_video_iterator(
            inference_state,
            start_frame_idx=start_frame_idx,
            max_frame_num_to_track=max_frame_num_to_track,
            reverse=reverse,
        ):
            yield (
                int(out.frame_idx),
                list(out.object_ids),
                self._video_res(inference_state, out.pred_masks),
            )

    def reset_state(self, inference_state: Any) -> None:
        """Forget every object, prompt, output and cached feature of the session."""
        inference_state.reset_inference_session()

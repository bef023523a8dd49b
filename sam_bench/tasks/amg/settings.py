"""The ``amg`` settings section (``conf/amg/*.yaml``): the arguments of sam2's
``SAM2AutomaticMaskGenerator`` and sam_bench's post-filter, each field with a *role*
(:func:`amg_fields`) that says which jobs can share a decoder pass.

Registered as a settings section (:data:`sam_bench.registry._SETTINGS`), so the composed
config keeps ``amg.*`` under the same key (and every ``config_id`` stays the same).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from sam_bench.config import check_choice, check_min, check_unit
from sam_bench.errors import ConfigError

if TYPE_CHECKING:
    from sam_bench.config import Config


AMG_ROLES = ("candidate", "postprocess", "label")


#: ``dataclasses.field`` metadata of the AMG roles (see :class:`AMGConfig`).
CANDIDATE = {"role": "candidate"}
POSTPROCESS = {"role": "postprocess"}
LABEL = {"role": "label"}


def amg_fields(role: str) -> tuple[str, ...]:
    """Names of the :class:`AMGConfig` fields with ``role`` (``candidate``, ``postprocess``
    or ``label``), in declaration order."""
    if role not in AMG_ROLES:
        raise ValueError(f"role must be one of {AMG_ROLES}, got {role!r}")
    return tuple(f.name for f in fields(AMGConfig) if f.metadata.get("role") == role)


@dataclass
class AMGPostFilterConfig:
    """Steps some recipes need beyond ``SAM2AutomaticMaskGenerator``'s own arguments.

    These are sam_bench settings, applied to the generator's output, not generator arguments.
    """

    max_area_fraction: float | None = None
    """Drop masks whose area is >= this fraction of the image (SA-1B recipe: 0.95).
    ``null``: keep all."""

    def __post_init__(self) -> None:
        check_unit("amg.postfilter.max_area_fraction", self.max_area_fraction)


@dataclass
class AMGConfig:
    """Arguments of ``sam2.SAM2AutomaticMaskGenerator`` (``conf/amg/*.yaml``).

    This typed config is the only way settings reach the generator (it silently ignores
    unknown keyword arguments). Defaults are the generator's code defaults.

    Every field has a *role* (``dataclasses.field`` metadata, :func:`amg_fields`):
    ``candidate`` settings change the decoder's candidate masks (the point grid, crops,
    batching, ``multimask_output``, ``use_m2m``); ``postprocess`` settings only filter and
    encode those candidates, so jobs differing only in them share one encoder + decoder pass
    (``engine=fast``); ``label`` is a name that changes nothing. A test fails when a new field
    has no role.
    """

    name: str = field(default="default", metadata=LABEL)
    """Preset name (recorded; not a generator argument)."""
    points_per_side: int | None = field(default=32, metadata=CANDIDATE)
    """Points sampled along one side of the image (grid of ``points_per_side**2`` prompts).
    ``null`` requires ``point_grids``."""
    points_per_batch: int = field(default=64, metadata=CANDIDATE)
    """Prompts run through the decoder at once (speed / memory only)."""
    pred_iou_thresh: float = field(default=0.8, metadata=POSTPROCESS)
    """Keep masks whose predicted IoU is > this (0 disables the filter)."""
    stability_score_thresh: float = field(default=0.95, metadata=POSTPROCESS)
    """Keep masks whose stability score is >= this (0 disables the filter)."""
    stability_score_offset: float = field(default=1.0, metadata=POSTPROCESS)
    """Logit offset used to compute the stability score."""
    mask_threshold: float = field(default=0.0, metadata=POSTPROCESS)
    """Logit threshold that binarises masks."""
    box_nms_thresh: float = field(default=0.7, metadata=POSTPROCESS)
    """Box IoU cutoff of the non-maximum suppression within a crop (1.0 keeps all)."""
    crop_n_layers: int = field(default=0, metadata=CANDIDATE)
    """Extra crop layers; layer i has 2**i x 2**i crops."""
    crop_nms_thresh: float = field(default=0.7, metadata=POSTPROCESS)
    """Box IoU cutoff of the NMS between crops."""
    crop_overlap_ratio: float = field(default=512 / 1500, metadata=CANDIDATE)
    """Overlap of neighbouring crops in the first crop layer, as a fraction of the image."""
    crop_n_points_downscale_factor: int = field(default=1, metadata=CANDIDATE)
    """Points per side in crop layer n are divided by this ** n."""
    point_grids: list[list[list[float]]] | None = field(default=None, metadata=CANDIDATE)
    """Explicit point grids (one per crop layer, normalised [0, 1] x/y); exclusive with
    ``points_per_side``."""
    min_mask_region_area: int = field(default=0, metadata=POSTPROCESS)
    """Fill holes and remove islands smaller than this (pixels of the 256x256 low-res logits,
    before stability scoring). sam2 needs its CUDA extension for this; sam_bench supplies the
    same connected-components step on CPU (recorded as ``cc_impl``)."""
    output_mode: str = field(default="binary_mask", metadata=POSTPROCESS)
    """Form of the generator's masks: ``binary_mask``, ``uncompressed_rle`` or ``coco_rle``
    (affects post-processing cost only; metrics always use RLEs)."""
    use_m2m: bool = field(default=False, metadata=CANDIDATE)
    """One extra refinement step feeding each mask back as a mask prompt."""
    multimask_output: bool = field(default=True, metadata=CANDIDATE)
    """Three masks per point (``false``: one)."""
    postfilter: AMGPostFilterConfig = field(
        default_factory=AMGPostFilterConfig, metadata=POSTPROCESS
    )
    """sam_bench's own filters applied after the generator (see :class:`AMGPostFilterConfig`)."""

    def __post_init__(self) -> None:
        p = "amg."
        check_min(p + "points_per_side", self.points_per_side, 1)
        check_min(p + "points_per_batch", self.points_per_batch, 1)
        check_min(p + "crop_n_points_downscale_factor", self.crop_n_points_downscale_factor, 1)
        check_min(p + "crop_n_layers", self.crop_n_layers, 0)
        check_min(p + "min_mask_region_area", self.min_mask_region_area, 0)
        for key in (
            "pred_iou_thresh",
            "stability_score_thresh",
            "box_nms_thresh",
            "crop_nms_thresh",
            "crop_overlap_ratio",
        ):
            check_unit(p + key, getattr(self, key))
        check_min(p + "stability_score_offset", self.stability_score_offset, 0.0, strict=True)
        if math.isnan(self.mask_threshold):
            raise ConfigError(p + "mask_threshold", "must be a number, got nan")
        check_choice(
            p + "output_mode", self.output_mode, ("binary_mask", "uncompressed_rle", "coco_rle")
        )
        if (self.points_per_side is None) == (self.point_grids is None):
            raise ConfigError(
                p + "points_per_side",
                "exactly one of amg.points_per_side and amg.point_grids must be set",
            )
        if self.point_grids is not None and len(self.point_grids) != self.crop_n_layers + 1:
            raise ConfigError(
                p + "point_grids",
                f"needs one grid per crop layer ({self.crop_n_layers + 1}), "
                f"got {len(self.point_grids)}",
            )

    def describe(self) -> str:
        """The dry run's words on these settings (after ``engine=``)."""
        grid = (
            f"{self.points_per_side}x{self.points_per_side}"
            if self.points_per_side
            else "custom grid"
        )
        return f"amg={self.name} ({grid}, {self.crop_n_layers} crop layers)"

    def generator_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``SAM2AutomaticMaskGenerator`` (sam_bench-only keys removed)."""
        import numpy as np

        kwargs = {
            k: getattr(self, k)
            for k in (
                "points_per_side",
                "points_per_batch",
                "pred_iou_thresh",
                "stability_score_thresh",
                "stability_score_offset",
                "mask_threshold",
                "box_nms_thresh",
                "crop_n_layers",
                "crop_nms_thresh",
                "crop_overlap_ratio",
                "crop_n_points_downscale_factor",
                "min_mask_region_area",
                "output_mode",
                "use_m2m",
                "multimask_output",
            )
        }
        kwargs["point_grids"] = (
            None
            if self.point_grids is None
            else [np.asarray(g, dtype=np.float64) for g in self.point_grids]
        )
        return kwargs


def amg_settings(cfg: Config) -> AMGConfig:
    """The ``amg`` section of a composed config (typed)."""
    settings: AMGConfig = getattr(cfg, "amg")  # noqa: B009  (a registered section)
    return settings


def prompts_per_image(cfg: Config) -> int:
    """Point prompts the grid sends to the decoder per image (all crop layers)."""
    amg = amg_settings(cfg)
    total = 0
    for layer in range(amg.crop_n_layers + 1):
        if amg.point_grids is not None:
            per_crop = len(amg.point_grids[layer])
        else:
            side = int(amg.points_per_side / (amg.crop_n_points_downscale_factor**layer))  # type: ignore[operator]
            per_crop = side * side
        total += per_crop * (2**layer) ** 2
    return total

"""The "float" exactness rule of a runtime (``task_info.runtime.exactness``), checked on the
full-resolution logits of sam2's official predictor: every logit within ``tol`` of eager's, no
pixel flips unless its eager logit is within ``tol`` of 0, at most 1 in 10^4 pixels flip.
Shared by the CPU (tests/integration/test_runtimes.py) and CUDA (tests/gpu) checks."""

from __future__ import annotations

import numpy as np
import torch

from sam_bench.models.agreement import AgreementCase


def full_logits(model: torch.nn.Module, case: AgreementCase) -> np.ndarray:
    """The full-resolution mask logits of ``case`` through sam2's official predictor."""
    from sam_bench.models.image_predictor import image_predictor

    predictor = image_predictor(model)
    with torch.inference_mode():
        predictor.set_image(case.image)
        logits, _, _ = predictor.predict(
            point_coords=case.point_coords, point_labels=case.point_labels, box=case.boxes,
            multimask_output=case.multimask_output, return_logits=True,
        )  # fmt: skip
    return np.asarray(logits, dtype=np.float32)


def assert_eagers_masks_beyond(
    eager: torch.nn.Module, other: torch.nn.Module, case: AgreementCase, tol: float
) -> None:
    """Assert the float exactness rule for ``other`` against ``eager`` on ``case``."""
    ref, ours = full_logits(eager, case), full_logits(other, case)
    assert (ref > 0).any(), "empty eager masks would compare nothing"
    diff = float(np.abs(ref - ours).max())
    flips = (ref > 0) != (ours > 0)
    near = np.abs(ref) <= tol
    print(f"{case.what}: logits max diff {diff:.2e}, {int(flips.sum())} of {flips.size} "
          f"pixels flipped, {int(near.sum())} within {tol} of 0")  # fmt: skip
    assert diff <= tol, (case.what, diff)
    assert not (flips & ~near).any(), case.what
    assert flips.sum() <= flips.size * 1e-4, (case.what, int(flips.sum()))

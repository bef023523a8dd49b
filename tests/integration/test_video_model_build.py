"""sam_bench's video predictor build (no Hydra ``compose``) against sam2's official
``build_sam2_video_predictor``: same class, same state dict, same predictor settings, for the
settings ``video.*`` maps onto it.

Each side runs in a fresh subprocess (``import sam2`` initialises Hydra globally, and the point
is to call the official builder exactly as a user would); each builds every case in turn.
"""

from __future__ import annotations

import json
import subprocess
import sys

#: (apply_postprocessing, non_overlap_masks, fill_hole_area or None) and the official call's
#: extra overrides for it (as tools/vos_inference.py passes non_overlap_masks).
CASES = [
    (False, True, None, ["++model.non_overlap_masks=true"]),
    (True, False, None, ["++model.non_overlap_masks=false"]),
    (False, True, 5, ["++model.non_overlap_masks=true", "++model.fill_hole_area=5"]),
]

SETTINGS = """
def settings(m):
    d = m.sam_mask_decoder
    return {"cls": type(m).__name__, "hash": state_dict_hash(m.state_dict()),
            "non_overlap": bool(m.non_overlap_masks), "fill": int(m.fill_hole_area),
            "binarize": bool(m.binarize_mask_from_pts_for_mem_enc),
            "dyn": bool(d.dynamic_multimask_via_stability),
            "dyn_delta": float(d.dynamic_multimask_stability_delta),
            "dyn_thresh": float(d.dynamic_multimask_stability_thresh),
            "training": bool(m.training)}
"""

OFFICIAL = (
    """
import json, torch
from sam2.build_sam import build_sam2_video_predictor
from sam_bench.models.checkpoints import state_dict_hash
"""
    + SETTINGS
    + """
out = []
for post, extra in CASES:
    torch.manual_seed(3)
    m = build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu",
                                   apply_postprocessing=post, hydra_overrides_extra=extra)
    out.append(settings(m))
print(json.dumps(out))
"""
)

OURS = (
    """
import json, torch
from hydra import compose, initialize_config_dir
from sam_bench.config import CONF_DIR, register_configs, to_typed
from sam_bench.models.build import build_video_model
from sam_bench.models.checkpoints import state_dict_hash
"""
    + SETTINGS
    + """
register_configs()
out = []
with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
    for post, overlap, fill in CASES:
        cfg = to_typed(compose("config", overrides=[
            "task=video", "model=sam2.1_hiera_tiny", "model.weights=random",
            f"video.apply_postprocessing={post}", f"video.non_overlap_masks={overlap}",
            f"video.fill_hole_area={'null' if fill is None else fill}"]))
        m, info = build_video_model(cfg.model, cfg.video, torch.device("cpu"), seed=3,
                                    progress=False)
        assert info.kind == "random" and info.state_dict_hash == state_dict_hash(m.state_dict())
        out.append(settings(m))
print(json.dumps(out))
"""
)


def _run(code: str, cases: list) -> list[dict]:
    code = code.replace("CASES", repr(cases))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_video_build_equals_official_build_sam2_video_predictor() -> None:
    official = _run(OFFICIAL, [(p, extra) for p, _, _, extra in CASES])
    ours = _run(OURS, [(p, str(o).lower(), f) for p, o, f, _ in CASES])
    assert ours == official
    assert [o["cls"] for o in ours] == ["SAM2VideoPredictor"] * 3
    # what each case sets: the default (vos_inference), post-processing, explicit hole filling
    assert [(o["non_overlap"], o["fill"], o["binarize"], o["dyn"]) for o in ours] == [
        (True, 0, False, False),
        (False, 8, True, True),
        (True, 5, False, False),
    ]
    assert len({o["hash"] for o in ours}) == 1  # settings never change the weights
    assert not any(o["training"] for o in ours)

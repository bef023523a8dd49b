"""Which ``prompt`` settings identify a prompted job (``config_id``) and the protocol its
record states (``task_info.prompts.protocol``): one list of which settings each mode uses."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from sam_bench.config import Config
from sam_bench.identity import content_digest
from sam_bench.tasks.prompted.metrics import NOC_THRESHOLDS
from sam_bench.tasks.prompted.settings import DEFAULT_MODE, prompt_of


def resolve_path(path: str) -> Path:
    """A user path (``~`` expanded; relative to the directory the command was launched from)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path.cwd() / p


def protocol(cfg: Config) -> dict[str, Any]:
    """The settings that define the job's protocol (``task_info.prompts.protocol``): those
    of :func:`prompt_identity` and what each mode does with them."""
    out = prompt_identity(asdict(prompt_of(cfg)))
    mode = out["mode"]
    if mode == "click":
        out.update(click="farthest from the boundary (distance transform max, raster ties)",
                   multimask_output=True, kept="highest predicted IoU", oracle=True)  # fmt: skip
    elif mode == "box":
        out.update(multimask_output=False, box="tight, x1/y1 exclusive")
        if prompt_of(cfg).boxes:
            out.update(source="detector")
        else:
            out.update(source="ground truth", jitter="gaussian")
    else:
        out.update(
            next_click="RITM: farthest point of the larger error region (ties negative)",
            noc_thresholds=list(NOC_THRESHOLDS),
        )
    return out


def prompt_identity(prompt: dict[str, Any]) -> dict[str, Any]:
    """The ``prompt`` settings that change what a prompted job measures (``config_id``, and
    :func:`protocol`): those its mode uses, ``null`` mode written as ``click``, detector boxes
    by their file's sha256."""
    mode = prompt.get("mode") or DEFAULT_MODE
    out: dict[str, Any] = {"mode": mode, "batch_size": prompt.get("batch_size")}
    if prompt.get("decoder", "exact") != "exact":  # jobs before the setting existed: exact
        out["decoder"] = prompt.get("decoder")
    if mode == "box" and prompt.get("boxes"):
        out.update(
            boxes_sha256=content_digest(resolve_path(str(prompt["boxes"]))),
            box_match_iou=prompt.get("box_match_iou"),
            box_min_score=prompt.get("box_min_score"),
        )
    elif mode == "box":
        out.update(box_jitter=prompt.get("box_jitter"))
    elif mode == "clicks":
        out.update({k: prompt.get(k) for k in ("max_clicks", "first_multimask", "feed_logits")})
    return out

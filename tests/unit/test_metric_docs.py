"""docs/metrics.md defines every metric of the catalogue: one anchor per declared metric and
per family of names (``<stage>_ms_mean``...), none left over, and the code points there."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from sam_bench.metrics.catalogue import CATALOGUE, METRICS_DOC

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / METRICS_DOC


def _anchors() -> list[str]:
    return re.findall(r'<a id="([^"]+)"></a>', DOC.read_text(encoding="utf-8"))


def _builtin_anchors() -> list[str]:
    """The anchors of sam_bench's own catalogue, read in a fresh process: a task plugin that
    another test registered in this one (``tests/integration/test_task_plugin.py``) is not
    sam_bench's to document."""
    code = "import json; from sam_bench.metrics.catalogue import CATALOGUE as C; "
    code += "print(json.dumps(sorted(C.anchors())))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)  # fmt: skip
    anchors: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return anchors


def test_every_catalogue_metric_has_an_anchor() -> None:
    wanted = _builtin_anchors()
    assert len(wanted) > 50, "the catalogue looks empty: nothing would be checked"
    found = _anchors()
    assert len(found) == len(set(found)), "an anchor appears twice"
    missing = sorted(set(wanted) - set(found))
    assert not missing, f"{DOC} has no definition of {missing}"
    stale = sorted(set(found) - set(wanted))
    assert not stale, f"{DOC} defines metrics the catalogue does not declare: {stale}"


def test_every_reported_name_resolves_to_an_anchor() -> None:
    """Names a job reports, family members included, find their anchor."""
    found = set(_anchors())
    for name in ("miou", "latency_ms_p50", "encoder_ms_mean", "clip_ms_mean", "miou_clicks_7",
                 "class_iou_road", "jf", "semantic_miou"):  # fmt: skip
        anchor = CATALOGUE.anchor(name)
        assert anchor in found, f"{name} -> {anchor}"
    assert CATALOGUE.anchor("no_such_metric") is None


def test_no_reference_to_a_metrics_file_outside_the_repository() -> None:
    stale = [
        f"{p.relative_to(REPO)}:{n}"
        for p in (REPO / "sam_bench").rglob("*.py")
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if "metrics.md" in line and ("shared" in line or "docs/metrics.md" not in line)
    ]
    assert not stale, stale

"""The RSS budget from the command line: a job over ``limits.max_rss_gb`` stops cleanly with
its reason (no traceback), the sweep goes on, and its finished items are reused by
``resume=true``.

An AMG sweep whose budget is below what any process holding torch and SAM 2 uses stops its
jobs before their first image; a task written for this test (no model) grows the process's
memory item by item, so its job stops in the middle, keeps what finished, and resumes. (AMG
on one machine cannot give such a window reliably: the image encoder's peak, the same for
every image, outweighs what a larger image's batches add.)
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from conftest import run_cli

KEEP_MASKS = ["amg.pred_iou_thresh=0", "amg.stability_score_thresh=0", "amg.box_nms_thresh=1.0"]
COMMON = ["model.weights=random", "amg.points_per_side=2", "tracking=none", "progress=false"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_job_over_its_memory_budget_stops_cleanly_and_the_sweep_goes_on(
    tmp_path: Path,
) -> None:
    """4 jobs in 2 groups computed together (the thresholds share a pass): the 2 with a
    0.3 GB budget stop before their image, the 2 without run it."""
    out = tmp_path / "OUT"
    proc = run_cli(
        ["-m", *COMMON, *KEEP_MASKS[1:], "amg.pred_iou_thresh=0,0.5",
         "limits.max_rss_gb=0.3,null", "dataset.limit=1", f"hydra.sweep.dir={out}"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    rows = read_csv(out / "summary.csv")
    assert len(rows) == 4
    for row in rows:
        job = out / row["job"]
        record = json.loads((job / "result.json").read_text())
        assert not (job / "traceback.txt").exists()
        if row["limits.max_rss_gb"] == "0.3":
            assert row["status"] == "failed" and record["status"] == "failed"
            assert "memory budget exceeded" in row["error"]
            assert "limits.max_rss_gb=0.3" in row["error"] and "GB >" in row["error"]
            memory = record["task_info"]["memory"]
            assert memory["stopped"].startswith("memory budget exceeded")
            assert memory["items_not_run"] == 1
            assert row["error"].endswith("with 0 of 1 items finished (resume=true reuses them)")
            assert memory["rss_gb_max"] > 0.3
            assert record["task_info"]["grouped_with_jobs"] is not None  # computed together
            assert f"job {row['job']} [failed]" in proc.stderr  # the closing message
        else:
            assert row["status"] == "ok", row
            assert record["task_info"]["memory"]["stopped"] is None
            assert float(row["mask_count_mean"]) > 0


#: A task that exists only in this test (written to a temporary folder and loaded with
#: ``plugins=[memhog_task]``): no model; each item holds a chunk of written memory until the
#: job ends, sized so that the third item takes the process over ``limits.max_rss_gb``.
MEMHOG = """
from typing import Any, ClassVar

import numpy as np
import psutil

import sam_bench.metrics.instance  # noqa: F401  (declares miou)
from sam_bench.metrics.cost import StageTimes
from sam_bench.registry import register
from sam_bench.tasks.base import Task, TaskSpec, Writer


class Count:
    name = "count"

    def reset(self) -> None:
        return None

    def process(self, sample: Any, prediction: Any) -> dict[str, float]:
        return {"miou": float(prediction)}

    def evaluate(self) -> dict[str, float]:
        return {"miou": 1.0}


class Journal(Writer):  # predictions go to the journal as they are (resume reuses them)

    def encode(self, prediction: Any) -> Any:
        return prediction

    def decode(self, data: Any) -> Any:
        return data


class MemHog(Task):
    spec: ClassVar[TaskSpec] = TaskSpec(
        name="memhog", metrics=("miou",), headline=("miou",), objective="miou",
        pareto=("latency_ms_p50", "miou"), stages=("preprocess", "hog"), model=False,
    )
    writer = Journal
    held: ClassVar[list[np.ndarray]] = []

    def __init__(self, jobs: list[Any]) -> None:
        super().__init__(jobs)
        self.on_close(self.held.clear)

    @classmethod
    def evaluator_for(cls, ctx: Any, *, live: bool = True) -> Count:
        return Count()

    def predict(self, sample: Any, inputs: Any, times: list[StageTimes]) -> list[Any]:
        budget = self.lead.cfg.limits.max_rss_gb
        if budget is not None:
            if not hasattr(self, "chunk"):  # 2.5 chunks reach the budget
                self.chunk = int((budget * 1e9 - psutil.Process().memory_info().rss) / 2.5)
            self.held.append(np.ones(max(self.chunk, 1), dtype=np.uint8))
        return [1.0 for _ in times]



register("task", "memhog", "memhog_task:MemHog")
"""


def test_a_budget_stop_keeps_finished_items_for_resume(tmp_path: Path) -> None:
    """A job whose items grow its memory stops at the third of four items over its 2 GB
    budget (failed, with the reason, its item log kept); ``resume=true`` without the budget
    reuses the two finished items and computes the other two."""
    plugin = tmp_path / "plugin"
    (plugin / "conf" / "task").mkdir(parents=True)
    (plugin / "memhog_task.py").write_text(MEMHOG)
    (plugin / "conf" / "task" / "memhog.yaml").write_text(
        "defaults:\n  - base_task\n  - _self_\n\nname: memhog\n"
    )
    path = os.pathsep.join(p for p in (str(plugin), os.environ.get("PYTHONPATH", "")) if p)
    args = ["-m", "task=memhog", "plugins=[memhog_task]", "tracking=none", "progress=false",
            "warmup=false",
            f"hydra.searchpath=[file://{plugin / 'conf'}]", "dataset.limit=4",
            f"hydra.sweep.dir={tmp_path / 'OUT'}"]  # fmt: skip
    proc = run_cli([*args, "limits.max_rss_gb=2"], tmp_path, env={"PYTHONPATH": path})
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    job = tmp_path / "OUT" / "0"
    record = json.loads((job / "result.json").read_text())
    assert not (job / "traceback.txt").exists()
    assert record["status"] == "failed"
    assert record["error"].startswith("memory budget exceeded")
    assert "checked after the prediction of item" in record["error"]
    assert record["error"].endswith("with 2 of 4 items finished (resume=true reuses them)")
    rows = read_csv(job / "per_image.csv")
    assert [r["error"] == "" for r in rows] == [True, True, False]  # the 4th never ran
    assert rows[2]["error_kind"] == "memory"
    assert record["task_info"]["memory"]["items_not_run"] == 1
    assert (job / ".items.jsonl").is_file()  # kept: the finished items are reusable
    proc = run_cli([*args, "limits.max_rss_gb=null", "resume=true"], tmp_path,
                   env={"PYTHONPATH": path})  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((job / "result.json").read_text())
    assert record["status"] == "ok" and record["metrics"]["n_items_ok"] == 4
    assert record["task_info"]["resume"] == {"reused_images": 2, "computed_images": 2}

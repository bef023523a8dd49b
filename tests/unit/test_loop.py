"""The shared per-item loop (sam_bench.loop): warm-up that fails moves on, a bad item costs
only itself, stage times and marginal time per job, evaluator results per job."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from sam_bench import progress
from sam_bench.config import Config, DatasetConfig
from sam_bench.data.base import Sample
from sam_bench.data.registry import build_dataset
from sam_bench.loop import WARMUP_TRIES, run_items
from sam_bench.metrics.cost import StageTimes
from sam_bench.tasks.base import JobContext, Task, TaskSpec


class CountEvaluator:
    name = "count"

    def __init__(self) -> None:
        self.values: list[float] = []

    def reset(self) -> None:
        self.values = []

    def process(self, sample: Sample, prediction: Any) -> dict[str, float]:
        self.values.append(prediction)
        return {"n_gt": sample.gt.n_instances if sample.gt else 0, "value": prediction}

    def evaluate(self) -> dict[str, float]:
        return {"value_sum": float(sum(self.values))}


class Scripted(Task):
    """A task whose warm-up and predictions fail on the items it is told to."""

    spec: ClassVar[TaskSpec] = TaskSpec(
        name="scripted", metrics=("miou",), headline=("miou",), objective="miou",
        pareto=("latency_ms_p50", "miou"), stages=("preprocess", "shared", "own"),
        own_stages=("own",), model=False,
    )  # fmt: skip
    warmup_fails: ClassVar[set[str]] = set()
    predict_fails: ClassVar[set[str]] = set()

    def __init__(self, jobs: list[JobContext]) -> None:
        super().__init__(jobs)
        self.warmed: list[str] = []

    @classmethod
    def evaluator_for(cls, ctx: Any, *, live: bool = True) -> CountEvaluator:
        return CountEvaluator()

    def warmup(self, sample: Sample, inputs: Any) -> None:
        if sample.ref.image_id in self.warmup_fails:
            raise IndexError("too many indices for tensor of dimension 1")  # sam2's crop bug
        self.warmed.append(sample.ref.image_id)

    def predict(self, sample: Sample, inputs: Any, times: list[StageTimes]) -> list[Any]:
        if sample.ref.image_id in self.predict_fails:
            raise RuntimeError("boom")
        for j, t in enumerate(times):
            t.add("shared", 0.5)
            t.add("own", 0.01 * (j + 1))
            if j == 1:  # an engine that knows a job's own GPU peak reports it
                t.peak_mb = 123.0
        return [float(j + 1) for j in range(len(times))]


def _task(n_jobs: int, tmp_path: Path) -> Scripted:
    dataset = build_dataset(DatasetConfig(limit=4), Path("."))
    jobs = [
        JobContext(cfg=Config(), device=torch.device("cpu"), model=None, weights=None,
                   dataset=dataset, refs=dataset.refs(), job_dir=tmp_path / str(j))
        for j in range(n_jobs)
    ]  # fmt: skip
    return Scripted(jobs)


def test_a_failing_warm_up_moves_to_the_next_item(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Scripted, "warmup_fails", {"1"})
    task = _task(1, tmp_path)
    (result,) = run_items(task, warmup=True, progress=False)
    assert task.warmed == ["2"]
    warm = result.info["warmup"]
    assert warm["item"] == "2" and warm["failed"][0]["image_id"] == "1"
    assert "IndexError" in warm["failed"][0]["error"]
    assert isinstance(warm["seconds"], float) and warm["seconds"] >= 0.0  # both tries, timed
    assert result.metrics["n_items_ok"] == 4 and not result.item_errors  # every item is timed


def test_warm_up_gives_up_after_a_few_items(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Scripted, "warmup_fails", {"1", "2", "3", "4"})
    task = _task(1, tmp_path)
    (result,) = run_items(task, warmup=True, progress=False)
    assert result.info["warmup"]["item"] is None
    assert len(result.info["warmup"]["failed"]) == WARMUP_TRIES
    assert result.info["warmup"]["seconds"] >= 0.0
    assert result.metrics["n_items_ok"] == 4


def test_a_bad_item_costs_only_itself_and_times_are_per_job(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Scripted, "predict_fails", {"3"})
    first, second = run_items(_task(2, tmp_path), warmup=False, progress=False)
    for j, result in enumerate((first, second)):
        assert [r["image_id"] for r in result.rows] == ["1", "2", "3", "4"]
        bad = [r for r in result.rows if r["error"]]
        assert [r["image_id"] for r in bad] == ["3"] and bad[0]["error"] == "RuntimeError: boom"
        assert result.item_errors[0]["image_id"] == "3"
        assert result.metrics["value_sum"] == 3 * (j + 1)  # the evaluator saw 3 good items
        ok = [r for r in result.rows if not r["error"]]
        for r in ok:  # the task's own stages are columns; latency sums every stage but metrics
            assert r["shared_ms"] == pytest.approx(500.0)
            assert r["own_ms"] == pytest.approx(10.0 * (j + 1))
            assert r["latency_ms"] == pytest.approx(r["preprocess_ms"] + 500.0 + r["own_ms"])
        assert result.metrics["own_ms_mean"] == pytest.approx(10.0 * (j + 1))
        if j == 0:  # the group's per-item peak: NaN on the CPU
            assert math.isnan(result.metrics["peak_gpu_mem_mb"])
        else:  # the job's own peak, as the engine reported it
            assert result.metrics["peak_gpu_mem_mb"] == 123.0
        # the allocator's reserved peak is the group's, NaN on the CPU, in every ok row
        assert math.isnan(result.metrics["peak_gpu_reserved_mb"])
        assert all(math.isnan(r["gpu_reserved_mb"]) for r in result.rows if not r["error"])
    # the group's first job carries the shared stages; the others only what they add
    assert first.rows[0]["marginal_ms"] == pytest.approx(first.rows[0]["latency_ms"])
    assert second.rows[0]["marginal_ms"] == pytest.approx(20.0)


class SweepWatcher(Scripted):
    """Scripted, noting the sweep bar's count of jobs done when each item is predicted."""

    seen: ClassVar[list[float]] = []

    def predict(self, sample: Sample, inputs: Any, times: list[StageTimes]) -> list[Any]:
        sweep = progress.current_sweep()
        assert sweep is not None
        self.seen.append(sweep.jobs_done)
        return super().predict(sample, inputs, times)


def test_the_sweep_bar_counts_items_of_every_group(tmp_path: Path, monkeypatch) -> None:
    """A sweep of 3 jobs: a group of 2 over 4 items moves the overall bar by 2/4 job per item,
    then a job alone by 1/4; a job that ended without items (failed early) counts whole."""
    monkeypatch.setattr(SweepWatcher, "seen", [])
    monkeypatch.setattr(SweepWatcher, "predict_fails", {"3"})  # a failed item counts as done
    dirs = [tmp_path / str(j) for j in range(4)]
    bar = progress.start_sweep(dirs, enabled=False)
    try:
        group = _task(2, tmp_path)
        group.__class__ = SweepWatcher
        run_items(group, warmup=False, progress=False)
        assert SweepWatcher.seen == [0.0, 0.5, 1.0, 1.5]
        assert bar.jobs_done == 2.0 and bar.bar.n == 2.0
        alone = SweepWatcher([JobContext(**{**vars(group.jobs[0]), "job_dir": dirs[2]})])
        run_items(alone, warmup=False, progress=False)
        assert SweepWatcher.seen[4:] == [2.0, 2.25, 2.5, 2.75] and bar.jobs_done == 3.0
        for d in dirs:  # the launcher: each job's end (the last failed before any item)
            bar.finish(d)
        assert bar.jobs_done == 4.0 and bar.bar.n == bar.bar.total == 4
        bar.set_fraction(dirs[:1], 0.5)  # never goes back
        assert bar.jobs_done == 4.0
    finally:
        progress.end_sweep()
    assert progress.current_sweep() is None


def test_a_sweep_launched_in_batches_keeps_one_bar(tmp_path: Path) -> None:
    """Optuna launches n_jobs trials at a time: one bar over its n_trials jobs."""
    bar = progress.start_sweep([tmp_path / "0", tmp_path / "1"], enabled=False, total=5)
    try:
        assert bar.bar.total == 5 and not bar.complete
        for j in (0, 1):
            bar.finish(tmp_path / str(j))
        assert bar.jobs_done == 2.0 and not bar.complete  # 3 trials to come
        bar.add([tmp_path / str(j) for j in (2, 3, 4)])
        progress.report_items([tmp_path / "2"], 1, 4)
        assert bar.jobs_done == 2.25 and bar.bar.total == 5
        for j in (2, 3, 4):
            bar.finish(tmp_path / str(j))
        assert bar.complete and bar.bar.n == 5
        bar.add([tmp_path / "5"])  # more jobs than announced: the total follows
        assert bar.bar.total == 6 and not bar.complete
    finally:
        progress.end_sweep()

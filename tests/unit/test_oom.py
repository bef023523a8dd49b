"""Memory limits (sam_bench.limits) and the loop's use of them: out-of-memory retries of prompt
batches and the RSS budget.

The allocation failures here are real: a batch "needs" more memory than any machine has above
a chosen size (``torch.empty`` of 2**62 bytes fails in the CPU allocator), so the halving logic
is exercised deterministically; ``tests/integration/test_oom_cpu.py`` runs the fast engine
under a real address-space limit. The RSS budget is checked against the process's real
resident memory, grown by arrays the tests fill.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from sam_bench.config import Config, DatasetConfig, LimitsConfig
from sam_bench.data.base import Sample
from sam_bench.data.registry import build_dataset
from sam_bench.errors import ConfigError
from sam_bench.limits import (
    GB,
    HalvingBatches,
    MemoryBudgetExceeded,
    MemoryLimits,
    OutOfMemoryAtFloor,
    is_out_of_memory,
    job_limits,
    retry_halving,
    retry_smaller,
    rss_bytes,
)
from sam_bench.loop import error_kind, run_items
from sam_bench.metrics.cost import StageTimes
from sam_bench.resume import open_item_log
from sam_bench.tasks.base import JobContext, Task, TaskSpec, Writer

MB = 2**20
IMPOSSIBLE = 2**62
"""Bytes no machine can allocate (beyond the 47-bit user address space)."""


def _alloc_failure() -> RuntimeError:
    try:
        torch.empty(IMPOSSIBLE, dtype=torch.uint8)
    except RuntimeError as e:
        return e
    raise AssertionError("allocating 4 EiB succeeded")


class Needs:
    """A batched computation whose batches above ``fits`` prompts cannot be allocated (a real
    allocation failure); records every call."""

    def __init__(self, fits: int) -> None:
        self.fits = fits
        self.calls: list[tuple[int, int, bool]] = []

    def __call__(self, start: int, stop: int) -> list[int]:
        n = stop - start
        ok = n <= self.fits
        self.calls.append((start, stop, ok))
        buf = torch.empty(n * 1024 if ok else IMPOSSIBLE, dtype=torch.uint8)
        buf.fill_(1)
        return list(range(start, stop))


# ---------------------------------------------------------------------------------------------
# recognising an allocation failure


def test_allocation_failures_are_recognised() -> None:
    assert is_out_of_memory(_alloc_failure())  # torch's CPU allocator
    with pytest.raises(MemoryError) as numpy_error:
        np.empty(IMPOSSIBLE, dtype=np.uint8)
    assert is_out_of_memory(numpy_error.value)
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert is_out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"))
    assert not is_out_of_memory(RuntimeError("CUDA error: an illegal memory access"))
    assert not is_out_of_memory(ValueError("out of range"))
    assert not is_out_of_memory(MemoryBudgetExceeded("memory budget exceeded"))
    assert error_kind(_alloc_failure()) == "memory"
    assert error_kind(RuntimeError("boom")) == "runtime"


# ---------------------------------------------------------------------------------------------
# halving


def test_a_batch_that_cannot_be_allocated_runs_again_in_halves() -> None:
    fn = Needs(fits=3)
    limits = MemoryLimits()
    with job_limits(limits):
        item = limits.begin_item("a")
        out = retry_halving(fn, 20, 8)
    assert [x for batch in out for x in batch] == list(range(20))  # in order, once each
    # 8 fails, 4 fails, 2 works; the rest of the work keeps the size that worked
    assert fn.calls[:3] == [(0, 8, False), (0, 4, False), (0, 2, True)]
    assert [c[:2] for c in fn.calls[3:]] == [(s, s + 2) for s in range(2, 20, 2)]
    assert (item.oom_retries, item.smallest_batch) == (2, 2)
    assert "can't allocate memory" in (item.first_error or "")
    assert limits.end_item() == {"oom_retries": 2, "oom_batch": 2}
    assert limits.info()["oom_examples"] == ["a"] and limits.info()["oom_smallest_batch"] == 2


def test_batches_keep_the_smaller_size_across_calls_on_one_object() -> None:
    batches = HalvingBatches(8, floor=1)
    fn = Needs(fits=4)
    assert len(batches.run(fn, 8)) == 2  # one crop: 8 fails, then 4 + 4
    fn.calls.clear()
    batches.run(fn, 8)  # the next crop of the same image starts at 4
    assert fn.calls == [(0, 4, True), (4, 8, True)]


def test_the_floor_ends_the_retries_with_an_item_error() -> None:
    fn = Needs(fits=1)
    with pytest.raises(OutOfMemoryAtFloor) as err:
        retry_halving(fn, 16, 8, floor=4)
    assert [c[:2] for c in fn.calls] == [(0, 8), (0, 4)]
    assert "at every size tried (8..4; limits.oom_min_batch=4)" in str(err.value)
    assert is_out_of_memory(err.value.__cause__)  # type: ignore[arg-type]
    assert error_kind(err.value) == "memory"
    # the running job's limits.oom_min_batch is the default floor
    with job_limits(LimitsConfig(oom_min_batch=8)), pytest.raises(OutOfMemoryAtFloor):
        retry_halving(Needs(fits=1), 16, 8)


def test_other_errors_are_not_retried() -> None:
    calls = []

    def fn(start: int, stop: int) -> None:
        calls.append((start, stop))
        raise ValueError("a bug, not memory")

    with pytest.raises(ValueError, match="a bug"):
        retry_halving(fn, 16, 8)
    assert calls == [(0, 8)]


def test_a_whole_unit_runs_again_with_a_smaller_batch_setting() -> None:
    sizes = []

    def generate(size: int) -> str:
        sizes.append(size)
        torch.empty(1024 if size <= 2 else IMPOSSIBLE, dtype=torch.uint8)
        return f"done with {size}"

    assert retry_smaller(generate, 8) == ("done with 2", 2)
    assert sizes == [8, 4, 2]


# ---------------------------------------------------------------------------------------------
# the RSS budget


def _hold(n_bytes: int) -> np.ndarray:
    return np.ones(n_bytes, dtype=np.uint8)  # written: resident


def test_the_budget_stops_when_resident_memory_grows_over_it() -> None:
    limits = MemoryLimits(max_rss_gb=(rss_bytes() + 300 * MB) / GB)
    with job_limits(limits):
        limits.begin_item("x")
        limits.check("prompt batch")  # under the budget: nothing happens
        held = _hold(500 * MB)
        with pytest.raises(MemoryBudgetExceeded) as err:
            limits.check("prompt batch")
        del held
    text = str(err.value)
    assert f"limits.max_rss_gb={limits.max_rss_gb:g}" in text
    assert "checked prompt batch of item x" in text and "GB >" in text
    assert limits.stopped == text
    assert limits.info()["rss_gb_max"] > limits.max_rss_gb  # type: ignore[operator]


def test_the_watchdog_sees_a_peak_between_two_checks() -> None:
    budget = rss_bytes() + 300 * MB
    limits = MemoryLimits(max_rss_gb=budget / GB)
    with job_limits(limits):
        held = _hold(500 * MB)
        deadline = time.monotonic() + 30.0
        while limits.rss_max <= budget and time.monotonic() < deadline:
            time.sleep(0.01)  # until the watchdog has sampled the peak
        del held
        gc.collect()
        assert rss_bytes() < budget  # the memory is back: only the peak can tell
        with pytest.raises(MemoryBudgetExceeded):
            limits.check("prompt batch")


def test_limits_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"limits\.oom_min_batch"):
        LimitsConfig(oom_min_batch=0)
    with pytest.raises(ConfigError, match=r"limits\.max_rss_gb"):
        LimitsConfig(max_rss_gb=0)


# ---------------------------------------------------------------------------------------------
# in the shared loop


class Evaluator:
    name = "count"

    def reset(self) -> None:
        return None

    def process(self, sample: Sample, prediction: Any) -> dict[str, float]:
        return {"value": float(prediction)}

    def evaluate(self) -> dict[str, float]:
        return {}


class Journal(Writer):
    """Predictions go to the journal as they are (resume reuses them)."""

    def encode(self, prediction: Any) -> Any:
        return prediction

    def decode(self, data: Any) -> Any:
        return data


class Batched(Task):
    """Per item: 2 prompt batches through :class:`HalvingBatches`; each batch holds ``chunk``
    bytes of written memory until the task closes, and items in ``tight`` cannot allocate a
    batch of more than 3 prompts."""

    spec: ClassVar[TaskSpec] = TaskSpec(
        name="batched", metrics=("miou",), headline=("miou",), objective="miou",
        pareto=("latency_ms_p50", "miou"), stages=("preprocess", "decoder"), model=False,
    )  # fmt: skip
    writer = Journal
    tight: ClassVar[set[str]] = set()
    chunk: ClassVar[int] = 0

    def __init__(self, jobs: list[JobContext]) -> None:
        super().__init__(jobs)
        self.held: list[np.ndarray] = []
        self.on_close(self.held.clear)

    @classmethod
    def evaluator_for(cls, ctx: Any, *, live: bool = True) -> Evaluator:
        return Evaluator()

    def predict(self, sample: Sample, inputs: Any, times: list[StageTimes]) -> list[Any]:
        fits = 3 if sample.ref.image_id in self.tight else 1000

        def batch(start: int, stop: int) -> int:
            torch.empty(1024 if stop - start <= fits else IMPOSSIBLE, dtype=torch.uint8)
            if self.chunk:
                self.held.append(_hold(self.chunk))
            return stop - start

        n = sum(HalvingBatches(8).run(batch, 16))
        return [n for _ in times]


def _task(tmp_path: Path, limits: LimitsConfig, n: int = 4) -> Batched:
    dataset = build_dataset(DatasetConfig(limit=n), Path("."))
    cfg = Config(limits=limits)
    job = JobContext(cfg=cfg, device=torch.device("cpu"), model=None, weights=None,
                     dataset=dataset, refs=dataset.refs(), job_dir=tmp_path)  # fmt: skip
    return Batched([job])


def test_retries_are_recorded_per_item_and_per_job(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Batched, "tight", {"2"})
    (result,) = run_items(_task(tmp_path, LimitsConfig()), warmup=False, progress=False)
    rows = {r["image_id"]: r for r in result.rows}
    assert (rows["2"]["oom_retries"], rows["2"]["oom_batch"]) == (2, 2)
    assert rows["2"]["value"] == 16 and rows["2"]["error"] is None  # every prompt ran once
    assert all("oom_retries" not in rows[i] for i in ("1", "3", "4"))
    memory = result.info["memory"]
    assert memory["oom_retries"] == 2 and memory["oom_items"] == 1
    assert memory["oom_examples"] == ["2"] and memory["oom_smallest_batch"] == 2
    assert memory["stopped"] is None and "stopped" not in result.info


def test_a_batch_failing_at_the_floor_is_an_item_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Batched, "tight", {"3"})
    task = _task(tmp_path, LimitsConfig(oom_min_batch=4))
    (result,) = run_items(task, warmup=False, progress=False)
    bad = [r for r in result.rows if r["error"]]
    assert [r["image_id"] for r in bad] == ["3"] and bad[0]["error_kind"] == "memory"
    assert "limits.oom_min_batch=4" in bad[0]["error"]
    assert bad[0]["oom_retries"] == 1 and bad[0]["oom_batch"] == 4
    assert result.metrics["n_items_ok"] == 3


def test_the_budget_stops_the_job_and_keeps_finished_items(tmp_path: Path, monkeypatch) -> None:
    """Each item holds 2 x 100 MB more (one per batch); the budget lets 2 items finish and
    stops the 3rd at its second batch."""
    monkeypatch.setattr(Batched, "chunk", 100 * MB)
    gc.collect()
    budget = (rss_bytes() + 450 * MB) / GB
    header = {"identity": "test"}
    logs = [open_item_log(tmp_path, header, reuse=False)]
    task = _task(tmp_path, LimitsConfig(max_rss_gb=budget))
    try:
        (result,) = run_items(task, warmup=False, progress=False, logs=logs)
    finally:
        task.close()
        logs[0].close()
    assert [r["image_id"] for r in result.rows] == ["1", "2", "3"]  # item 4 never ran
    assert [r["error"] is None for r in result.rows] == [True, True, False]
    stop = result.rows[2]
    assert stop["error_kind"] == "memory"
    assert f"limits.max_rss_gb={budget:g}" in stop["error"] and "of item 3" in stop["error"]
    assert result.info["stopped"].startswith(stop["error"])
    assert result.info["stopped"].endswith("with 2 of 4 items finished (resume=true reuses them)")
    assert result.info["memory"]["items_not_run"] == 1
    assert result.metrics["n_items_ok"] == 2
    # the finished items are in the per-item log: a resumed run reuses them
    again = open_item_log(tmp_path, header, reuse=True)
    assert again.reusable("1") and again.reusable("2") and again.reusable("3") is None
    monkeypatch.setattr(Batched, "chunk", 0)
    (resumed,) = run_items(_task(tmp_path, LimitsConfig()), warmup=False, progress=False,
                           logs=[again])  # fmt: skip
    again.close()
    assert resumed.info["resume"] == {"reused_images": 2, "computed_images": 2}
    assert [r["error"] for r in resumed.rows] == [None] * 4


def test_a_budget_already_exceeded_stops_before_the_first_item(tmp_path: Path) -> None:
    task = _task(tmp_path, LimitsConfig(max_rss_gb=0.001))
    (result,) = run_items(task, warmup=True, progress=False)
    assert result.rows == [] and result.metrics["n_items_ok"] == 0
    assert "checked before item 1" in result.info["stopped"]
    assert result.info["memory"]["items_not_run"] == 4


def test_a_budget_exceeded_in_the_warm_up_stops_the_job(tmp_path: Path, monkeypatch) -> None:
    """The warm-up does not try the next item (as after other errors): the job stops."""
    monkeypatch.setattr(Batched, "chunk", 100 * MB)
    gc.collect()
    task = _task(tmp_path, LimitsConfig(max_rss_gb=(rss_bytes() + 50 * MB) / GB))
    try:
        (result,) = run_items(task, warmup=True, progress=False)
        held = len(task.held)
    finally:
        task.close()
    assert held == 1  # the warm-up's first batch; its second batch's check stopped the job
    assert result.rows == [] and result.info["memory"]["items_not_run"] == 4
    assert "checked prompt batch" in result.info["stopped"]

"""``run_forked``: every task once, results in order, shared with a forked copy of the process,
and nothing lost when the copy fails, dies or hangs."""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path

import pytest

from sam_bench.report import forked
from sam_bench.report.forked import run_forked

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _task(i: int, log: Path) -> list[int]:
    """Takes a while (the other process gets work), leaves a trace in ``log``."""
    time.sleep(0.05)
    with log.open("a") as f:
        f.write(f"{i} {os.getpid()}\n")
    return [i, i * i]


def _ran(log: Path) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in (line.split() for line in log.read_text().splitlines())]


@pytest.fixture
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine with two CPUs, whatever this one has."""
    monkeypatch.setattr(forked, "cpus", lambda: 2)


@pytest.mark.usefixtures("two_cpus")
def test_every_task_runs_once_in_two_processes_results_in_order(tmp_path: Path) -> None:
    log = tmp_path / "log"
    results = run_forked([partial(_task, i, log) for i in range(8)])
    assert results == [[i, i * i] for i in range(8)]
    ran = _ran(log)
    assert sorted(i for i, _ in ran) == list(range(8))  # each once
    pids = {pid for _, pid in ran}
    assert os.getpid() in pids and len(pids) == 2, pids  # both processes drew


def _fails_in_copy(i: int, parent: int) -> int:
    if os.getpid() != parent:
        raise RuntimeError("only in the copy")
    return i


def _dies_in_copy(i: int, parent: int) -> int:
    if os.getpid() != parent:
        os._exit(3)  # as if killed
    time.sleep(0.05)
    return i


def _hangs_in_copy(i: int, parent: int) -> int:
    if os.getpid() != parent:
        time.sleep(600)  # as if stuck on a lock another thread held at the fork
    time.sleep(0.05)
    return i


@pytest.mark.usefixtures("two_cpus")
@pytest.mark.parametrize("task", [_fails_in_copy, _dies_in_copy, _hangs_in_copy])
def test_what_the_copy_did_not_finish_runs_here(task) -> None:  # type: ignore[no-untyped-def]
    tasks = [partial(task, i, os.getpid()) for i in range(6)]
    assert run_forked(tasks, silence_s=1.0) == list(range(6))


def _always_fails() -> int:
    raise ValueError("broken task")


@pytest.mark.usefixtures("two_cpus")
def test_a_task_error_reaches_the_caller() -> None:
    with pytest.raises(ValueError, match="broken task"):
        run_forked([partial(int, "1"), _always_fails, partial(int, "2")])


def test_one_cpu_or_one_task_runs_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "log"
    assert run_forked([partial(_task, 0, log)]) == [[0, 0]]
    monkeypatch.setattr(forked, "cpus", lambda: 1)
    assert run_forked([partial(_task, i, log) for i in (1, 2)]) == [[1, 1], [2, 4]]
    assert {pid for _, pid in _ran(log)} == {os.getpid()}

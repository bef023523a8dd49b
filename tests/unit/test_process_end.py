"""A single run's process ends without the interpreter's shutdown
(:func:`sam_bench.ending.end_process`, called by ``sam_bench.__main__``): its atexit handlers
still run, its exit status is kept, and where a thread the interpreter would wait for is still
running, the process ends the usual way.

The child runs ``python -m sam_bench`` as :mod:`runpy` does; its last atexit handler prints
``ATEXIT`` and leaves a module holding an object whose finaliser prints ``SHUTDOWN`` when the
interpreter's shutdown clears the modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CODE = """
import atexit, runpy, sys, threading, types
class Marker:
    def __del__(self):
        print("SHUTDOWN", flush=True)
def last():
    # a module created after the job (nothing settled in it): the shutdown clears it
    sys.modules["shutdown_marker"] = mod = types.ModuleType("shutdown_marker")
    mod.marker = Marker()
    print("ATEXIT")  # not flushed here: the ending flushes it
atexit.register(last)  # registered first: runs last
if sys.argv[1] == "thread":
    stop = threading.Event()
    def work():
        stop.wait(60)
        print("THREAD DONE", flush=True)
    threading.Thread(target=work).start()  # non-daemon: runs until the shutdown stops it
    threading._register_atexit(stop.set)  # the shutdown's first step, before joining threads
sys.argv = ["sam_bench", *sys.argv[2:]]
runpy.run_module("sam_bench", run_name="__main__")
"""


def _run(tmp_path: Path, thread: bool, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CODE, "thread" if thread else "-", *args, "hydra.run.dir=out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )


DRY = ["dry_run=true", "dataset.limit=1", "model.weights=random"]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (DRY, 0),
        # the job fails (its record says why): exit status 1, same ending
        ([*DRY, "dataset=coco", "dataset.root=/nonexistent"], 1),
    ],
)
def test_a_single_run_ends_without_the_shutdown(args: list[str], code: int, tmp_path: Path) -> None:
    proc = _run(tmp_path, False, *args)
    assert proc.returncode == code, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert "ATEXIT" in lines, proc.stdout[-2000:]  # atexit handlers ran, output flushed
    assert "SHUTDOWN" not in lines, proc.stdout[-2000:]
    assert (tmp_path / "out" / "result.json").exists() == (code == 1)  # a failure is recorded


def test_a_running_thread_gets_the_usual_shutdown(tmp_path: Path) -> None:
    proc = _run(tmp_path, True, *DRY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert {"ATEXIT", "SHUTDOWN", "THREAD DONE"} <= set(lines), proc.stdout[-2000:]


def test_commands_that_run_no_job_end_the_usual_way(tmp_path: Path) -> None:
    proc = _run(tmp_path, False, "--cfg", "job")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SHUTDOWN" in proc.stdout.splitlines(), proc.stdout[-2000:]

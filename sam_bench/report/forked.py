"""Independent tasks shared by this process and one forked copy of it (the sweep's figures).

Drawing a sweep's figures is pure Python and C work that holds the GIL (text layout, Agg
rendering): threads would not run it side by side. :func:`run_forked` forks the process once;
this process and the copy take the next task from a pipe that holds every task's number, so
they stay balanced whatever each task costs, and the copy sends its results back as JSON
lines. Nothing is measured at this point of a sweep (its jobs are done), so the second core is
free. Falls back to running every task here where it cannot help or fork (one CPU, one task,
no ``os.fork``); tasks the copy did not finish (it failed, was killed or went silent) are run
here, so an exception a task raises reaches the caller as if it had run here.

The copy never runs the parent's exit handlers or flushes its buffered output (``os._exit``),
ignores Ctrl-C (the parent stops it), and must not touch what the parent holds open (MLflow
store, CUDA): the tasks only draw figures and write files.
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

#: Bytes of one task number in the queue pipe (read atomically: far below ``PIPE_BUF``).
_WORD = struct.Struct("<I")
#: The queue is written whole before the fork: it must fit the pipe's buffer (64 KiB on Linux).
MAX_TASKS = 4096
#: Seconds without a result from the copy, once this process is done, after which it is
#: stopped (a figure takes a second or two; a copy stuck, e.g. on a lock another thread held
#: at the fork, must not hang the sweep's end).
SILENCE_S = 60.0


def cpus() -> int:
    """CPUs this process may run on."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def run_forked(tasks: Sequence[Callable[[], Any]], silence_s: float = SILENCE_S) -> list[Any]:
    """Every task's result, in order; tasks run here and in one forked copy of this process
    (see the module docstring). Results must be JSON values (a task run in the copy returns
    through JSON: tuples come back as lists). A copy that sends nothing for ``silence_s``
    once this process has run out of tasks is stopped, and what it had taken runs here."""
    if len(tasks) < 2 or len(tasks) > MAX_TASKS or cpus() < 2 or not hasattr(os, "fork"):
        return [task() for task in tasks]
    queue_r, queue_w = os.pipe()
    os.write(queue_w, b"".join(_WORD.pack(i) for i in range(len(tasks))))
    os.close(queue_w)
    results_r, results_w = os.pipe()
    with warnings.catch_warnings():  # Python >= 3.12 warns about forking with threads alive
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the copy
        os.close(results_r)
        _child(tasks, queue_r, results_w)
    os.close(results_w)
    done: dict[int, Any] = {}
    try:
        for i in _pull(queue_r):
            done[i] = tasks[i]()
        for line in _lines(results_r, silence_s):  # until the copy's last task is done
            item = json.loads(line)
            done[int(item["i"])] = item["r"]
    finally:
        # the copy has finished (end of its output), or the caller is stopped (Ctrl-C, an
        # exception) or the copy went silent: it is stopped (no-op when it has exited)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(queue_r)
        os.close(results_r)
    # what the copy took and did not finish (it failed or was killed): here
    return [done[i] if i in done else task() for i, task in enumerate(tasks)]


def _lines(fd: int, silence_s: float) -> Iterator[bytes]:
    """Lines read from ``fd`` until its end, or until nothing came for ``silence_s``."""
    pending = b""
    while select.select([fd], [], [], silence_s)[0]:
        data = os.read(fd, 65536)
        if not data:
            return
        *lines, pending = (pending + data).split(b"\n")
        yield from lines


def _pull(queue_r: int) -> Iterator[int]:
    """Task numbers taken from the queue until it is empty."""
    while len(word := os.read(queue_r, _WORD.size)) == _WORD.size:
        yield _WORD.unpack(word)[0]


def _child(tasks: Sequence[Callable[[], Any]], queue_r: int, results_w: int) -> NoReturn:
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for i in _pull(queue_r):
            line = json.dumps({"i": i, "r": tasks[i]()}) + "\n"
            data = line.encode()
            while data:
                data = data[os.write(results_w, data) :]
        code = 0
    except BaseException:  # the parent runs the unfinished task again and sees the error
        code = 1
    finally:
        os._exit(code)

"""A single run's MLflow logging in a helper process, started when the command starts.

Importing MLflow and opening its store (SQLAlchemy, the schema check) takes ~2 s of one CPU
core, all of it beyond the model's work. A single run (``tracking=mlflow``; with
``tracking.background=true``, the default, or ``null`` when a core is spare) starts
``python -m sam_bench.tracking.worker`` when the job starts: it imports MLflow and opens the
store while the job imports torch and reads its dataset, then waits. The job waits for it to
be ready before the model is built, so no measured stage (model build, warm-up, timed items)
shares the CPU with it; after the job wrote its record, the helper logs it exactly as
:meth:`MlflowTracker.job_end` in the job's process would and answers with the error, if any,
which the job reports as before (``tracking.required``).

The command starts the helper earlier still, before it imports Hydra (:func:`prestart`), when
its command line asks for a single run the helper would serve; the job takes that process over
once its configuration is composed, or kills it (it has read and written nothing) where the
configuration says otherwise (:func:`discard_early`), before anything is measured. The header
carries the job's environment and launch folder, which the helper takes on before it opens the
store (imports such as OpenCV's set variables after the command started).

Where the helper cannot help, the job logs in its own process as without it: when the helper
does not start, exits before it is ready, or is not ready within :data:`READY_TIMEOUT_S`.
The job never kills it: an interrupted or failed job closes the pipes (:meth:`detach`) and the
helper ends what it is doing (never a store half-created) and exits. It runs in its own
session, so Ctrl-C in a terminal reaches the job only.

Protocol (one JSON object per line): the job sends ``{"tracking": ..., "launch_dir": ...,
"environ": ...}``;
the helper answers ``{"ready": true}`` once the store is open (or failed to open: the error
comes again when the job is logged); the job sends ``{"record": ..., "job_dir": ...}``; the
helper answers ``{"error": text or null}`` and exits. End of input makes it exit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

JOB_END = "logging the job"
"""What the job's logging is called in its error texts (as :func:`run_job` words them)."""

READY_TIMEOUT_S = 30.0
"""How long the job waits, before the model build, for a helper that is not ready yet; after
that the job goes on without it and logs in its own process (a store that slow costs the
same time there, after the job)."""


def spare_core() -> bool:
    """Whether a helper process would find a free core: the load average over the last
    minute is below the core count minus one (without a load average: 4 cores or more)."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this system
        return cores >= 4
    return load < cores - 1


class TrackingWorker:
    """The job's side of the helper process (see the module docstring)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._proc = proc
        self._ready: bool | None = None  # not asked yet
        self._closed = False

    @classmethod
    def start(cls, tracking: Mapping[str, Any], launch_dir: Path) -> TrackingWorker | None:
        """Start the helper for ``tracking`` (the resolved ``tracking`` config) with the
        store's relative paths taken from ``launch_dir``, or take over the one
        :func:`prestart` started; ``None`` when it cannot start (the job then logs in its own
        process)."""
        proc = _take_early() or _spawn(launch_dir)
        if proc is None:
            return None
        worker = cls(proc)
        header = {"tracking": dict(tracking), "launch_dir": str(launch_dir)}
        if not worker._send({**header, "environ": dict(os.environ)}):
            worker.detach()
            return None
        return worker

    def _send(self, message: Mapping[str, Any]) -> bool:
        stdin = self._proc.stdin
        try:
            assert stdin is not None
            stdin.write(json.dumps(message, default=str) + "\n")
            stdin.flush()
        except (OSError, ValueError):  # the helper is gone
            return False
        return True

    def _receive(self, timeout_s: float | None = None) -> dict[str, Any] | None:
        """The helper's next answer; ``None`` when it is gone or, with ``timeout_s``, has
        not begun answering by then."""
        stdout = self._proc.stdout
        try:
            assert stdout is not None
            timed = timeout_s is not None and os.name == "posix"  # select() takes pipes there
            if timed and not select.select([stdout], [], [], timeout_s)[0]:
                return None
            line = stdout.readline()
            return dict(json.loads(line)) if line else None
        except (OSError, ValueError):
            return None

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> bool:
        """Block until the helper has imported MLflow and opened the store; ``False`` (and
        the helper detached) when it is gone or not ready within ``timeout_s``."""
        if self._ready is None:
            reply = self._receive(timeout_s)
            self._ready = reply is not None and reply.get("ready") is True
            if not self._ready:
                log.debug("tracking helper not ready: the job logs in its own process")
                self.detach()
        return self._ready

    def job_end(self, record: Mapping[str, Any], job_dir: Path) -> str | None:
        """Log the single run's ``record`` (written in ``job_dir``) through the helper (the
        job logs in its own process instead where :meth:`wait_ready` is ``False``); returns
        the error text (as :func:`sam_bench.tracking.safely` words it) or ``None``."""
        if not self.wait_ready():  # detached: never waited for, never killed
            return f"{JOB_END} failed: the MLflow helper process was not ready"
        reply = None
        if self._send({"record": record, "job_dir": str(job_dir)}):
            reply = self._receive()
        self.close()
        if reply is None:
            status = self._proc.returncode
            return f"{JOB_END} failed: the MLflow helper process exited (status {status})"
        error = reply.get("error")
        return None if error is None else str(error)

    def close(self) -> None:
        """After the helper's last answer: end of input, then wait for its exit (killed if it
        has not exited within 10 s: everything was logged by then)."""
        self._close_pipes()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def detach(self) -> None:
        """Stop talking to the helper (the job was interrupted, failed or goes on without
        it): end of input, nothing waited for. It ends what it is doing and exits; nothing
        once :meth:`close` ran."""
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self._closed:
            return
        self._closed = True
        _close_streams(self._proc)


def _close_streams(proc: subprocess.Popen[str]) -> None:
    """Close the job's ends of the helper's pipes (its end of input)."""
    for stream in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError):
            if stream is not None:
                stream.close()


def _spawn(launch_dir: Path) -> subprocess.Popen[str] | None:
    """Start ``python -m sam_bench.tracking.worker`` in ``launch_dir``; ``None`` when it
    cannot start (the job then logs in its own process)."""
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "sam_bench.tracking.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=launch_dir,
            text=True,
            encoding="utf-8",
            start_new_session=True,  # Ctrl-C stops the job, which then detaches this
        )
    except OSError as e:
        log.debug("tracking helper not started: %s", e)
        return None


_EARLY: list[subprocess.Popen[str]] = []
"""The helper :func:`prestart` started, until it is taken over or killed."""


def expected(argv: Sequence[str]) -> bool:
    """Whether the command line ``argv`` (Hydra's arguments, without the program) asks for a
    single run that the helper would serve with the default configuration: no Hydra flag but
    ``--run`` (multirun, help, ``--cfg``, another config), no sweep preset or
    ``hydra.mode``, no dry run, no tracker but MLflow, ``tracking.background`` not false (and
    where it is null, a spare core). An override this cannot read leaves the answer to the
    composed configuration (the job kills a helper it does not need)."""
    background: bool | None = True
    for arg in argv:
        if arg.startswith("-"):
            if arg in ("-r", "--run"):
                continue
            return False
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep:
            return False
        value = value.strip().strip("'\"").lower()
        if key in ("sweep", "hydra.mode") and value not in ("null", "run"):
            return False
        if key == "dry_run" and value == "true":
            return False
        if key in ("tracking", "tracking.name") and value != "mlflow":
            return False
        if key == "tracking.background":
            if value == "false":
                return False
            background = None if value == "null" else True
    return background is True or spare_core()


def prestart(argv: Sequence[str]) -> None:
    """Start the helper now, before the command imports Hydra and composes its configuration,
    where ``argv`` asks for a single run it would serve (:func:`expected`): MLflow's import
    then overlaps the command's own start-up too. :meth:`TrackingWorker.start` takes it
    over; one not taken over is killed by :func:`discard_early` (also at exit). Once per
    process."""
    if _EARLY or not expected(argv):
        return
    proc = _spawn(Path.cwd())
    if proc is None:
        return
    _EARLY.append(proc)
    import atexit

    atexit.register(discard_early)


def _take_early() -> subprocess.Popen[str] | None:
    """The helper :func:`prestart` started, where it is still running; else ``None``."""
    if not _EARLY:
        return None
    proc = _EARLY.pop()
    if proc.poll() is None:
        log.debug("tracking helper: taking over the one started early")
        return proc
    log.debug("tracking helper: the one started early has exited (%s)", proc.returncode)
    _kill(proc)
    return None


def discard_early() -> None:
    """Kill the helper :func:`prestart` started where the job does not take it over (a
    sweep, a dry run, another tracker): it has read and written nothing yet."""
    while _EARLY:
        log.debug("tracking helper: the one started early is not needed")
        _kill(_EARLY.pop())


def _kill(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(OSError):
        proc.kill()
        proc.wait()
    _close_streams(proc)


def _reply(out: IO[str], message: Mapping[str, Any]) -> bool:
    """Send ``message``; ``False`` when the job is gone."""
    try:
        out.write(json.dumps(dict(message)) + "\n")
        out.flush()
    except OSError:
        return False
    return True


def _take_on(environ: Mapping[str, str] | None, launch_dir: Path) -> None:
    """The job's environment variables (as they are when the job starts, not when the helper
    started) and its launch folder as the working directory."""
    if environ is not None:
        for key in set(os.environ) - set(environ):
            del os.environ[key]
        os.environ.update(environ)
    with contextlib.suppress(OSError):
        os.chdir(launch_dir)


def serve(inp: IO[str], out: IO[str]) -> None:
    """The helper's side: read the header, open the store, answer ready, log the one job."""
    from sam_bench import heap
    from sam_bench.quiet import quiet_mlflow
    from sam_bench.tracking import failure_text
    from sam_bench.tracking.mlflow import MlflowTracker, resolve_uri

    quiet_mlflow()
    with heap.settling(), contextlib.suppress(ImportError):  # before the header: a helper
        import mlflow.tracking  # noqa: F401  # started early imports MLflow while Hydra runs
    line = inp.readline()
    if not line:
        return
    header = json.loads(line)
    _take_on(header.get("environ"), Path(header["launch_dir"]))
    tracker = MlflowTracker(header.get("tracking") or {})
    with heap.settling(), contextlib.suppress(Exception):  # MLflow, SQLAlchemy: long-lived
        # a store that fails to open fails the logging below, with the job process's error
        tracker.open_store(resolve_uri(tracker.uri_cfg, Path(header["launch_dir"])))
    if not _reply(out, {"ready": True}):
        return
    line = inp.readline()
    if not line:
        return
    message = json.loads(line)
    error = None
    try:  # not safely(): the job logs the error, once
        tracker.job_end(message["record"], Path(message["job_dir"]), None)
    except Exception as e:
        error = failure_text(JOB_END, e)
    _reply(out, {"error": error})


if __name__ == "__main__":
    _protocol, sys.stdout = sys.stdout, sys.stderr  # nothing else may write to the protocol
    serve(sys.stdin, _protocol)
    # The job waits for this exit: no interpreter shutdown (MLflow's modules torn down).
    from sam_bench.ending import end_process

    end_process(0)

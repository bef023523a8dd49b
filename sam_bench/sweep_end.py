"""Hydra callback: at the end of a multirun, write ``summary.csv``, print it, draw the plots
and write ``report.md`` / ``report.html``, report failures, and end with where everything is
(elapsed time, time per job, summary, report, sweep folder and its size, the MLflow run).

Registered in ``conf/config.yaml`` under ``hydra.callbacks``. It runs in the launching process
after all jobs, whatever launcher ran them, and reads only the jobs' ``result.json`` files.
The command exits with status 1 when any job failed or lost images.

It belongs to the launcher layer (beside ``__main__`` and ``remote``): it chooses or refuses
the sweep folder (:mod:`sam_bench.resume`), starts and ends tracking, and calls the report,
which itself only reads records.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sam_bench.report.analysis import SweepFacts, best_configuration, job_label, num, sweep_facts
from sam_bench.report.console import print_summary
from sam_bench.report.summary import collect, write_summary
from sam_bench.tracking import Best, Objective, SweepOutcome, build_tracker, note_failure, safely
from sam_bench.tracking.worker import discard_early

log = logging.getLogger(__name__)


def check_sweep_folder(config: DictConfig) -> None:
    """``resume=true`` without an explicit ``hydra.sweep.dir``: continue the most recent sweep
    folder with the same overrides (say which; none is an error). Without ``resume=true``, a
    sweep folder that already holds job records is refused: never overwritten silently.
    Exits with status 2 on either error."""
    from omegaconf import OmegaConf, open_dict, read_write

    from sam_bench.resume import (
        find_sweep_to_resume,
        job_records,
        mismatched_jobs,
        search_root,
        unfinished_logs,
    )

    resume = bool(config.get("resume"))
    hydra_overrides = [str(o) for o in config.hydra.overrides.hydra]
    sweep_node: Any = OmegaConf.to_container(config.hydra.sweep, resolve=False)
    unresolved = str(sweep_node["dir"])
    explicit = any(o.startswith("hydra.sweep.dir=") for o in hydra_overrides)
    explicit = explicit or "${" not in unresolved
    task_overrides = [str(o) for o in config.hydra.overrides.task]
    if resume and not explicit:
        root = search_root(unresolved, Path(str(config.hydra.runtime.cwd)))
        found = find_sweep_to_resume(root, task_overrides)
        if found is None:
            print(
                f"error: resume=true found no sweep folder under {root} with the overrides "
                f"{' '.join(task_overrides) or '(none)'}; give the folder as "
                "hydra.sweep.dir=PATH",
                file=sys.stderr,
            )
            sys.exit(2)
        with read_write(config), open_dict(config):
            config.hydra.sweep.dir = str(found)
            # jobs are composed again from hydra's overrides: they must land there too
            config.hydra.overrides.hydra.append(f"hydra.sweep.dir={found}")
        print(f"resume: continuing the sweep in {found}")
    sweep_dir = Path(str(config.hydra.sweep.dir))
    found_records, logs = job_records(sweep_dir), unfinished_logs(sweep_dir)
    if (found_records or logs) and not resume:
        print(
            f"error: {sweep_dir} already holds the work of an earlier sweep "
            f"({len(found_records)} job record(s), {len(logs)} interrupted job(s)); nothing was "
            "overwritten. Add resume=true to reuse its finished work and run the rest, or "
            "choose another hydra.sweep.dir (or delete that folder).",
            file=sys.stderr,
        )
        sys.exit(2)
    if resume:
        wrong = mismatched_jobs(sweep_dir, task_overrides)
        if wrong:
            print(
                f"error: resume=true: the job folders in {sweep_dir} hold other configurations "
                "than this sweep would run there; nothing was run or overwritten:\n  "
                + "\n  ".join(wrong)
                + "\nResume with the overrides of that sweep, or start a fresh sweep with "
                "another hydra.sweep.dir (or without resume=true and a new folder).",
                file=sys.stderr,
            )
            sys.exit(2)
        log.info(
            "resume: %d job record(s) and %d interrupted job(s) in %s",
            len(found_records), len(logs), sweep_dir,
        )  # fmt: skip


def warn_gpu_workers(config: DictConfig) -> None:
    """Once per multirun: several launcher workers on one CUDA device each load a model there
    and disturb each other's timings (``hydra/launcher=joblib`` runs one per core)."""
    from sam_bench.remote import concurrent_jobs

    n = concurrent_jobs(config.hydra)
    if n <= 1:
        return
    from sam_bench.environment import warn_gpu_workers as message

    text = message(str(config.get("device") or "auto"), n)
    if text:
        log.warning("%s", text)


#: Failed items named in the closing message of a sweep (the rest are counted).
MAX_NAMED_ITEMS = 3


def failed_items_text(record: dict[str, Any]) -> str:
    """``"2 of 4 items failed: a.png (reason), b.png (reason) and 1 more (see per_image.csv)"``."""
    errors = record.get("item_errors") or record.get("image_errors") or []
    if not errors:
        return "some items failed (see per_image.csv)"
    total = (record.get("dataset") or {}).get("n_images")
    named = [
        f"{Path(str(e.get('path') or e.get('image_id'))).name} ({e.get('error')})"
        for e in errors[:MAX_NAMED_ITEMS]
    ]
    more = len(errors) - len(named)
    text = f"{len(errors)}{f' of {total}' if total else ''} items failed: " + ", ".join(named)
    return text + (f" and {more} more" if more > 0 else "") + " (see per_image.csv)"


def tracking_failures(config: DictConfig, sweep_dir: Path) -> bool:
    """Say what of the sweep was not tracked (each failure noted while it ran); returns
    whether that fails the command (``tracking.required``, default true)."""
    from sam_bench.tracking import failures, required

    found = failures(sweep_dir)
    if not found:
        return False
    must = required(config.get("tracking"))
    head = "error" if must else "warning"
    print(f"\n{head}: tracking failed for {len(found)} part(s) of this sweep; the records in "
          f"{sweep_dir} are complete:", file=sys.stderr)  # fmt: skip
    for text in found:
        print(f"  {text}", file=sys.stderr)
    if must:
        print("  (tracking.required=false makes this a warning)", file=sys.stderr)
    return must


#: The multirun of this process while it runs (``sweep_dir``, ``config``), for
#: :func:`interrupted`.
RUNNING: dict[str, Any] = {}


def interrupted(signal_name: str) -> int:
    """After Ctrl-C or SIGTERM stopped the command: end the sweep's tracking as killed and say
    in one line what finished and how to resume; returns the exit status (130). The job in
    flight keeps its journal (its finished items); finished jobs' records are intact."""
    from sam_bench.resume import FINISHED, job_records, planned_overrides, without_resume

    if not RUNNING:
        print(f"interrupted ({signal_name}): the run did not finish; run it again", file=sys.stderr)
        return 130
    sweep_dir: Path = RUNNING["sweep_dir"]
    config = RUNNING["config"]
    tracker = build_tracker(config.get("tracking"))
    safely("ending the interrupted sweep", tracker.sweep_interrupted, sweep_dir)
    done = 0
    for path in job_records(sweep_dir):
        try:
            done += json.loads(path.read_text(encoding="utf-8")).get("status") in FINISHED
        except (OSError, ValueError):
            continue
    overrides = without_resume([str(o) for o in config.hydra.overrides.task])
    planned = planned_overrides(overrides)
    total = f" of {len(planned)}" if planned is not None else ""
    command = " ".join(["python -m sam_bench -m", *overrides, "resume=true"])
    print(
        f"interrupted ({signal_name}): {done}{total} jobs finished in {sweep_dir}; resume with: "
        f"{command} hydra.sweep.dir={sweep_dir}",
        file=sys.stderr,
    )
    return 130


def drop_encoder_cache(sweep_dir: Path) -> None:
    """Remove the sweep's own encoder cache (``cache.in_sweep``) once every job ran; an
    interrupted sweep keeps it for ``resume=true``."""
    import shutil

    from sam_bench.layout import SWEEP_ENCODER_CACHE

    folder = sweep_dir / SWEEP_ENCODER_CACHE
    if folder.is_dir():
        shutil.rmtree(folder, onerror=lambda *a: log.warning("could not remove %s", a[1]))


def start_objective(config: DictConfig) -> Objective | None:
    """The sweep's objective as its config states it (``objective.metric``, else the task's
    default) and its catalogue direction; ``None`` when tracking is off or it cannot be told
    before the jobs run (the records say it at the end)."""
    tracking = config.get("tracking")
    if tracking is None or tracking.get("name", "none") == "none":
        return None
    try:
        from sam_bench import registry
        from sam_bench.metrics.catalogue import CATALOGUE
        from sam_bench.tasks import get_task

        registry.import_plugins(config.get("plugins") or [])
        metric = (config.get("objective") or {}).get("metric")
        metric = metric or get_task(str(config.task.name)).spec.objective
        entry = CATALOGUE.get(str(metric))
    except Exception as e:
        log.debug("objective not known before the jobs: %s", e)
        return None
    if entry is None or entry.higher_is_better is None:
        return None
    return Objective(entry.name, entry.higher_is_better)


def sweep_outcome(rows: list[dict[str, Any]], facts: SweepFacts) -> SweepOutcome:
    """The best ``ok`` job of each headline metric (and of the objective) with a direction,
    the objective of the records (``objective.metric``, else the task's default) and whether
    the weights were random: what the tracker logs on the sweep's parent run."""
    view = facts.view
    configs = [rec.get("config") or {} for rec in facts.records.values()]
    metric = next(
        (str(c["objective"]["metric"]) for c in configs
         if isinstance(c.get("objective"), dict) and c["objective"].get("metric")),
        view.default_objective(),
    )  # fmt: skip
    objective = None
    if metric and view.direction(metric) is not None:
        objective = Objective(metric, bool(view.direction(metric)))
    best = []
    for name in dict.fromkeys([*view.headline(), *([metric] if metric else [])]):
        higher = view.direction(name)
        if higher is None:
            continue
        row = best_configuration(rows, name, maximize=higher)
        if row is not None:
            label = job_label(row, facts.varying)
            best.append(Best(name, num(row.get(name)), str(row.get("job")), label, higher))
    return SweepOutcome(best=best, objective=objective, untrained=facts.untrained)


def duration_text(seconds: float) -> str:
    """``"45.2 s"``, ``"3 min 05 s"``, ``"2 h 03 min"``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def size_text(n_bytes: int) -> str:
    """``"512 B"``, ``"3.4 MB"`` (powers of 1,000)."""
    size = float(n_bytes)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def folder_size(folder: Path) -> int:
    """Bytes of the files under ``folder`` (links not followed, unreadable files skipped)."""
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                total += (Path(root) / name).lstat().st_size
            except OSError:
                continue
    return total


def closing_lines(
    sweep_dir: Path,
    rows: list[dict[str, Any]],
    facts: SweepFacts,
    elapsed_s: float | None,
    files: list[Path],
    tracked: list[str],
) -> list[str]:
    """The sweep's last lines: elapsed time and time per job (jobs reused by ``resume=true``
    not counted), then where the results are: summary, report, the sweep folder with its size,
    and the tracker's own lines (``tracked``: the MLflow run and how to open it)."""
    reused = sum(
        bool((rec.get("job") or {}).get("reused")) for rec in facts.records.values()
    )  # fmt: skip
    ran = len(rows) - reused
    ok = sum(r.get("status") == "ok" for r in rows)
    head = f"sweep done: {len(rows)} job(s), {ok} ok"
    if elapsed_s is not None and math.isfinite(elapsed_s):
        head += f", in {duration_text(elapsed_s)}"
        if ran > 0:
            head += f" ({duration_text(elapsed_s / ran)} per job"
            head += f"; {reused} reused from an earlier run)" if reused else ")"
    lines = [head]
    names = {p.name: p for p in files}
    for label, name in (("summary", "summary.csv"), ("report", "report.html")):
        if name in names:
            lines.append(f"{label}: {names[name]}")
    n_dirs = len(facts.records)
    lines.append(
        f"results: {sweep_dir} ({n_dirs} job folder(s), {size_text(folder_size(sweep_dir))})"
    )
    return [*lines, *tracked]


class SweepSummaryCallback(Callback):
    """Writes and prints the sweep summary; exits non-zero if anything failed."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Once per multirun (an Optuna sweep launches many batches into one folder): choose
        the folder to resume or refuse to overwrite one, then start tracking."""
        discard_early()  # a single run's MLflow helper, started before the mode was known
        if not config.get("dry_run"):
            check_sweep_folder(config)
            warn_gpu_workers(config)
        self.started = time.monotonic()
        tracker = build_tracker(config.get("tracking"))
        sweep_dir = Path(config.hydra.sweep.dir)
        RUNNING.update(sweep_dir=sweep_dir, config=config)
        objective = None if config.get("dry_run") else start_objective(config)
        error = safely("starting the sweep", tracker.sweep_start, sweep_dir, config, objective)
        if error is not None and sweep_dir.is_dir():
            note_failure(sweep_dir, f"the sweep's parent run: {error}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        RUNNING.clear()
        sweep_dir = Path(config.hydra.sweep.dir)
        drop_encoder_cache(sweep_dir)
        rows = collect(sweep_dir) if sweep_dir.is_dir() else []
        if not rows:
            tracker = build_tracker(config.get("tracking"))
            safely("ending the sweep", tracker.sweep_end, sweep_dir, [], [])
            if not config.get("dry_run"):
                print(f"no job wrote a result in {sweep_dir}", file=sys.stderr)
                sys.exit(1)
            return
        path = write_summary(sweep_dir, rows)
        facts = sweep_facts(rows)
        title = f"sam_bench sweep: {len(rows)} jobs -> {path}"
        if facts.untrained:
            title += (
                "\nUNTRAINED MODEL (random weights) in this sweep: accuracy figures are meaningless"
            )
        print_summary(rows, title=title, view=facts.view)
        files = [path]
        try:  # the summary is written already: a plotting problem must not lose it
            from sam_bench.report.document import write_report  # matplotlib: import late
            from sam_bench.report.plots import make_plots

            plots = make_plots(sweep_dir, rows)
            files += [*plots, *write_report(sweep_dir, rows, plots)]
        except Exception as e:
            log.warning("could not build the report: %s: %s", type(e).__name__, e)
        optuna = sweep_dir / "optimization_results.yaml"  # written by the Optuna sweeper
        if optuna.is_file():
            files.append(optuna)
        tracker = build_tracker(config.get("tracking"))
        outcome = sweep_outcome(rows, facts)
        error = safely("ending the sweep", tracker.sweep_end, sweep_dir, rows, files, outcome)
        if error is not None:
            note_failure(sweep_dir, f"the sweep's end: {error}")
        untracked = tracking_failures(config, sweep_dir)
        bad = [r for r in rows if r.get("status") != "ok"]
        if bad:
            print(f"\n{len(bad)} of {len(rows)} jobs did not finish cleanly:", file=sys.stderr)
            for r in bad:
                record = facts.records.get(str(r.get("job"))) or {}
                why = r["error"] or failed_items_text(record)
                print(f"  job {r['job']} [{r['status']}] {r['overrides']}: {why}", file=sys.stderr)
        started = getattr(self, "started", None)
        elapsed = None if started is None else time.monotonic() - started
        tracked: list[str] = []
        try:
            tracked = tracker.where(sweep_dir)
        except Exception as e:  # saying where is no reason to fail the sweep
            log.warning("tracking: could not say where the sweep is tracked: %s", e)
        sys.stderr.flush()
        print("\n" + "\n".join(closing_lines(sweep_dir, rows, facts, elapsed, files, tracked)))
        sys.stdout.flush()
        if bad or untracked:
            sys.exit(1)

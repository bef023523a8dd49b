"""Write ``tests/golden/tasks.json``: what ``tests/integration/test_golden_tasks.py`` compares
every task's golden sweep with (the sweeps are defined in ``tests/golden/sweeps.py``).

Run it ONLY when a change is meant to change results (a metric fix, a new default, new golden
sweeps), and commit the new file with that change, saying why the values moved. The test never
regenerates the file itself: a refactoring must leave it untouched and still pass.

    PYTHONPATH=. .venv/bin/python tests/golden/make_golden.py            # every task (~3 min)
    PYTHONPATH=. .venv/bin/python tests/golden/make_golden.py video      # only some tasks

Each sweep runs in a temporary folder; a failing sweep, or one without two jobs, writes
nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the `golden` package

from golden.sweeps import (
    GOLDEN_FILE,
    REPO,
    TASKS,
    golden_entry,
    job_names,
    read_sweep,
    run_sweep,
    versions,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", nargs="*", help=f"some of {', '.join(TASKS)} (default: all)")
    args = parser.parse_args(argv)
    tasks = args.tasks or list(TASKS)
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown task(s) {unknown}; the golden sweeps are {list(TASKS)}")
    golden = json.loads(GOLDEN_FILE.read_text()) if GOLDEN_FILE.is_file() else {}
    golden.setdefault("tasks", {})
    with tempfile.TemporaryDirectory(prefix="sam_bench_golden_") as tmp:
        for task in tasks:
            start = time.perf_counter()
            proc, out = run_sweep(task, Path(tmp) / task)
            if proc.returncode != 0:
                sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
                raise SystemExit(f"{task}: the sweep failed (exit {proc.returncode})")
            jobs = read_sweep(task, out)
            if sorted(jobs) != sorted(job_names(task)):
                raise SystemExit(f"{task}: jobs {sorted(jobs)}, expected {job_names(task)}")
            golden["tasks"][task] = golden_entry(task, jobs)
            print(f"{task}: {len(jobs)} jobs, {time.perf_counter() - start:.0f} s")
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    golden = {
        "about": "Golden results of tests/golden/sweeps.py's sweeps (random weights, CPU); "
        "written by tests/golden/make_golden.py, compared by "
        "tests/integration/test_golden_tasks.py. Regenerate only for a change meant to change "
        "results.",
        "generated_at_commit": commit,
        "versions": versions(),
        "tasks": {t: golden["tasks"][t] for t in TASKS if t in golden["tasks"]},
    }
    GOLDEN_FILE.write_text(json.dumps(golden, indent=1, sort_keys=False) + "\n")
    print(f"wrote {GOLDEN_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Golden results: what a user sees of every task must not change unnoticed.

For each task (amg, prompted, video, semantic) one small two-job ``python -m sam_bench -m``
sweep (``tests/golden/sweeps.py``: random-weight tiny SAM 2.1 on the CPU, data the sweep writes
itself) runs as a user runs it; each job's ``result.json`` and ``summary.csv`` row must match
``tests/golden/tasks.json``: the job's ``config_id`` and status, the names (and kinds) of every
metric it reports, and the value of every metric but the cost ones (time, memory, throughput)
within 1e-6. Jobs are matched by the value of the swept setting, never by folder order.

A difference fails with one line per value. If the change is meant to change results,
regenerate the file with ``tests/golden/make_golden.py`` and commit it with the change; this
test never rewrites it. The four sweeps take about 3 minutes on 2 CPU cores; each runs once
per test session and is shared with ``test_notebook.py`` (``golden.sweeps.session_sweep``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from golden.sweeps import (
    COMMON,
    ENV,
    GOLDEN_FILE,
    SWEEPS,
    TASKS,
    job_names,
    read_sweep,
    session_sweep,
    versions,
)

ABS_TOL = 1e-6


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    assert GOLDEN_FILE.is_file(), f"{GOLDEN_FILE} missing: run tests/golden/make_golden.py"
    return json.loads(GOLDEN_FILE.read_text())


def _same(golden: float | None, now: float | None) -> bool:
    if golden is None or now is None:
        return golden is None and now is None
    return abs(golden - now) <= ABS_TOL


def compare(
    task: str, golden: dict[str, Any], now: dict[str, dict[str, Any]]
) -> tuple[list[str], int]:
    """Every difference between the golden jobs of ``task`` and ``now`` (one line each), and
    how many metric values were compared."""
    diffs: list[str] = []
    compared = 0
    want, got = set(golden["jobs"]), set(now)
    for name in sorted(want - got):
        diffs.append(f"{task} [{name}]: job missing from the sweep")
    for name in sorted(got - want):
        diffs.append(f"{task} [{name}]: job not in the golden file")
    for name in sorted(want & got):
        g, n = golden["jobs"][name], now[name]
        where = f"{task} [{name}]"
        for field in ("config_id", "status"):
            if g[field] != n[field]:
                diffs.append(f"{where} {field}: golden {g[field]!r}, now {n[field]!r}")
        if n["summary_config_id"] != n["config_id"]:
            diffs.append(f"{where} summary.csv config_id {n['summary_config_id']!r}, "
                         f"result.json {n['config_id']!r}")  # fmt: skip
        g_kinds, n_kinds = g["metric_kinds"], n["metric_kinds"]
        for metric in sorted(set(g_kinds) - set(n_kinds)):
            diffs.append(
                f"{where} metric {metric}: golden reported ({g_kinds[metric]}), now absent"
            )
        for metric in sorted(set(n_kinds) - set(g_kinds)):
            diffs.append(
                f"{where} metric {metric}: not in golden, now reported ({n_kinds[metric]})"
            )
        for metric in sorted(set(g_kinds) & set(n_kinds)):
            if g_kinds[metric] != n_kinds[metric]:
                diffs.append(f"{where} metric {metric} kind: golden {g_kinds[metric]!r}, "
                             f"now {n_kinds[metric]!r}")  # fmt: skip
        for metric, value in sorted(g["metrics"].items()):
            for source, values in (("result.json", n["metrics"]), ("summary.csv", n["summary"])):
                if metric not in values:
                    diffs.append(f"{where} {metric}: golden {value!r}, now not compared "
                                 f"({source}; a cost metric now?)")  # fmt: skip
                    continue
                compared += 1
                if not _same(value, values[metric]):
                    diffs.append(f"{where} {metric}: golden {value!r}, now {values[metric]!r} "
                                 f"({source})")  # fmt: skip
        for metric in sorted(set(n["metrics"]) - set(g["metrics"])):
            diffs.append(f"{where} {metric}: not compared in golden, now {n['metrics'][metric]!r}")
    return diffs, compared


def test_golden_file_describes_these_sweeps(golden) -> None:
    """The golden file was written from the sweeps defined now (else: regenerate it)."""
    assert sorted(golden["tasks"]) == sorted(TASKS)
    stale = "differs from tests/golden/sweeps.py: regenerate with tests/golden/make_golden.py"
    for task in TASKS:
        entry = golden["tasks"][task]
        overrides = [*COMMON, *SWEEPS[task]["overrides"]]
        assert entry["overrides"] == overrides, f"{task}: the golden file's overrides {stale}"
        assert entry["sweep"] == SWEEPS[task]["sweep"], f"{task}: the swept setting {stale}"
        assert entry["env"] == ENV, f"{task}: the environment {stale}"
        assert sorted(entry["jobs"]) == sorted(job_names(task)), f"{task}: the jobs {stale}"


@pytest.mark.parametrize("task", TASKS)
def test_golden_sweep(task: str, golden, tmp_path_factory: pytest.TempPathFactory) -> None:
    entry = golden["tasks"][task]
    proc, out, seconds = session_sweep(task, tmp_path_factory)  # shared with test_notebook
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    now = read_sweep(task, out)
    assert len(now) == 2, f"{task}: {len(now)} records in {out}, expected 2"
    diffs, compared = compare(task, entry, now)
    assert compared > 0, f"{task}: no metric value compared"
    if diffs:
        lib_note = ""
        if golden.get("versions") != versions():
            lib_note = (f"\n(library versions differ from the golden file's: "
                        f"{golden.get('versions')} -> {versions()})")  # fmt: skip
        pytest.fail(
            f"{task}: {len(diffs)} difference(s) from {GOLDEN_FILE.name} "
            f"({compared} values compared; sweep {' '.join(entry['command'])}):\n  "
            + "\n  ".join(diffs)
            + lib_note,
            pytrace=False,
        )
    print(f"{task}: {compared} values match the golden file ({seconds:.0f} s)")

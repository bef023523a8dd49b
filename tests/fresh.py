"""Code run in a fresh interpreter (``sys.modules`` of the test session already holds
everything): this checkout alone on ``PYTHONPATH``, a minimal ``PATH``, ``HOME`` in the test's
folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fresh_python(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -c code args`` run in ``cwd``; it must succeed (its stderr tail says why not)."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(cwd)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def printed(proc: subprocess.CompletedProcess[str], marker: str) -> str:
    """What the run printed after ``marker`` on the one line that starts with it (a run that
    printed no such line, or several, fails)."""
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith(marker)]
    return line[len(marker) :]

"""`nox` cannot pass by skipping: a missing interpreter is an error, and no exact version is
pinned (3.11 was, so every session was skipped wherever 3.11 was missing, and nox exited 0)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_sessions_run_on_the_interpreter_running_nox_and_a_missing_one_fails() -> None:
    probe = (
        "import runpy, nox; ns = runpy.run_path('noxfile.py'); "
        "print(nox.options.error_on_missing_interpreters, ns['PYTHON'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["True", "None"]

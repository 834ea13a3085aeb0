"""Test, lint and browser sessions: `nox` runs all three. `nox -s bench` runs the benchmarks."""

from __future__ import annotations

import os
import sys

import nox

nox.options.sessions = ["tests", "lint", "browser"]
nox.options.reuse_existing_virtualenvs = True
# A session whose interpreter is missing fails the run: skipped, it let `nox` exit 0 untested.
nox.options.error_on_missing_interpreters = True

MINIMUM_PYTHON = (3, 11)
if sys.version_info < MINIMUM_PYTHON:
    raise SystemExit(
        f"nox runs on Python {sys.version.split()[0]}; pats-trio needs 3.11 or newer: "
        "run nox with a Python 3.11+ interpreter (python3.11 -m nox)"
    )
PYTHON: str | None = None
"""The interpreter that runs nox (3.11 or newer, checked above): pinning one version exactly
skipped every session wherever that one was missing."""
# Debian's chromium; Playwright never downloads a browser here.
CHROMIUM = os.environ.get("PATS_CHROMIUM", "/usr/bin/chromium")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite against a fresh install of the package."""
    session.install(".[test]")
    session.run("pytest", "--ignore=tests/browser", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff (lint and format check) and mypy --strict."""
    # playwright too: mypy reads the browser tests' types.
    session.install(".[test,lint,browser]", "nox")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session(python=PYTHON)
def browser(session: nox.Session) -> None:
    """The page in a real browser: Debian's chromium driven by Playwright, against the server and
    the emulator as real processes. `PATS_UPDATE_SCREENSHOT=1` rewrites docs/screenshot.png."""
    if not os.access(CHROMIUM, os.X_OK):
        session.error(
            f"no chromium at {CHROMIUM}: apt-get install chromium (CI's .ci/run does), "
            "or set PATS_CHROMIUM to a Chromium binary"
        )
    session.install(".[test,browser]")
    session.run("pytest", "tests/browser", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmarks (benchmarks/README.md); never part of `nox`. `-- --quick` is short.

    All run by default: the matching microbenchmark, the end-to-end fan-out benchmark (its `seed`
    scenario runs the seed's Starlette + uvicorn stack, from the `bench` extra), and the
    memory cost of WebSocket compression. `-- matching ARGS`, `-- fanout ARGS` or
    `-- deflate ARGS` runs only that one, with its own options. The soak under faults runs only
    when asked for: `-- soak [--quick]`.
    """
    session.install(".[bench]")
    args = list(session.posargs)
    only = args.pop(0) if args and args[0] in ("matching", "fanout", "deflate", "soak") else None
    if only in (None, "matching"):
        session.run("python", "benchmarks/bench_matching.py", *args)
    if only in (None, "fanout"):
        session.run("python", "benchmarks/bench_fanout.py", *args)
    if only in (None, "deflate"):
        session.run("python", "benchmarks/bench_deflate_memory.py", *args)
    if only == "soak":
        session.run("python", "benchmarks/bench_soak.py", *args)

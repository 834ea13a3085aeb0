"""What an installed pats-trio holds: setuptools' own build step (`build_py`, the one every wheel
and `pip install .` runs) on a copy of the source, and a look at what it put in the package."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("setup.py", "setup.cfg", "README.md", "pats_trio", "frontend")


def built_package(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    lib = tmp_path / "lib"
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(lib)],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return lib / "pats_trio"


def test_the_hypercorn_logging_recipe_and_the_page_ship_in_the_package(tmp_path: Path) -> None:
    package = built_package(tmp_path)
    recipe = json.loads((package / "hypercorn-logging.json").read_text())
    assert recipe["formatters"]["json"]["()"] == "pats_trio.logs.JsonFormatter"
    shipped = {path.name for path in (package / "frontend").iterdir()}
    assert {path.name for path in (ROOT / "frontend").iterdir()} <= shipped


def test_every_module_of_the_source_ships_in_the_package(tmp_path: Path) -> None:
    """A subpackage missing from setup.cfg's list installs a server that cannot start."""
    package = built_package(tmp_path)
    source = ROOT / "pats_trio"
    modules = {path.relative_to(source) for path in source.rglob("*.py")}
    shipped = {path.relative_to(package) for path in package.rglob("*.py")}
    assert modules - shipped == set()

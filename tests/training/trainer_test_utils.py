"""Helpers shared by the trainer tests (a uniquely named module: several conftest.py files exist)."""
import os
import pathlib
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def subprocess_environment() -> dict[str, str]:
    """The test process's environment (8 fake devices) without proxy variables."""
    return {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}


def run_module(module: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m module args`` from the repository root, with the test process's environment."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=subprocess_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )

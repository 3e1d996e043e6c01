"""Fixtures for the trainer tests: one smoke run shared by the end-to-end tests."""
import os
import pathlib
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_module(module: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m module args`` from the repository root, with the test process's environment."""
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The smoke config trained and evaluated in-process: ``(workdir, TrainResult)``."""
    from jaxretrieval import config_utils, trainer

    workdir = tmp_path_factory.mktemp("smoke")
    config = config_utils.load_config(str(REPO_ROOT / "configs" / "smoke.py"))
    return workdir, trainer.train_and_evaluate(config, workdir)

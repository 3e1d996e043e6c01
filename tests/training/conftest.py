"""Fixtures for the trainer tests: one smoke run shared by the end-to-end tests."""
import pytest

from .trainer_test_utils import REPO_ROOT


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The smoke config trained and evaluated in-process: ``(workdir, TrainResult)``."""
    from jaxretrieval.training import config as config_utils
    from jaxretrieval.training import trainer

    workdir = tmp_path_factory.mktemp("smoke")
    config = config_utils.load_config(str(REPO_ROOT / "configs" / "smoke.py"))
    return workdir, trainer.train_and_evaluate(config, workdir)

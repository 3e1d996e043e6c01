"""The trainer's guards: the NaN/Inf stop, the method / head check, multistage only for listwise methods."""
import pytest

from .trainer_test_utils import REPO_ROOT


def _smoke(overrides):
    from jaxretrieval.training import config as config_lib

    return config_lib.load_config(str(REPO_ROOT / "configs" / "smoke.py"), overrides)


def test_nan_guard_stops_with_the_step_and_the_metric(tmp_path):
    from jaxretrieval.training import trainer

    config = _smoke({"optimizer.learning_rate": 1e38, "evaluate_at_end": False, "log_every_steps": 1})
    with pytest.raises(trainer.NonFiniteMetricError, match=r"step 2: metric '(loss|grad_norm|mean_abs_tanh)' is (nan|inf)"):
        trainer.train_and_evaluate(config, tmp_path)
    # Nothing after the guard: no checkpoint of the broken state.
    assert not any(path.name == "3" for path in (tmp_path / "checkpoints").iterdir())


def test_method_and_head_mismatch_is_an_error_before_any_step(tmp_path):
    from jaxretrieval.training import trainer

    with pytest.raises(ValueError, match="'spq' trains a 'pq' head but config.model.head='hash'"):
        trainer.train_and_evaluate(_smoke({"method": "spq"}), tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_multistage_backprop_is_refused_for_a_method_without_a_listwise_loss(tmp_path):
    from jaxretrieval.training import trainer

    with pytest.raises(ValueError, match="micro_batch_size=8 .*'csq' has no listwise loss"):
        trainer.train_and_evaluate(_smoke({"micro_batch_size": 8}), tmp_path)

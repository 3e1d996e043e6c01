"""jaxretrieval.training.optimizer: the backbone multiplier, schedules and their errors."""
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretrieval.training import config as config_lib
from jaxretrieval.training import optimizer


def _config(**changes):
    config = config_lib.base_config("csq")
    config.lock()
    for dotted_key, value in changes.items():
        section, key = dotted_key.split(".")
        config[section][key] = value
    return config


def test_backbone_multiplier_scales_exactly_the_backbone_updates():
    params = {"backbone": {"kernel": jnp.ones((3,))}, "head": {"kernel": jnp.ones((3,))}}
    grads = {"backbone": {"kernel": jnp.array([1.0, -2.0, 3.0])}, "head": {"kernel": jnp.array([1.0, -2.0, 3.0])}}
    for name in optimizer.OPTIMIZERS:
        config = _config(**{"optimizer.name": name, "optimizer.backbone_multiplier": 0.05})
        tx, _ = optimizer.build_optimizer(config, params, steps_per_epoch=10, total_steps=100)
        updates, _ = tx.update(grads, tx.init(params), params)
        np.testing.assert_allclose(updates["backbone"]["kernel"], 0.05 * updates["head"]["kernel"], rtol=1e-6, err_msg=name)
        assert np.all(updates["head"]["kernel"] != 0)


def test_step_decay_is_csq_x07_every_10_epochs_and_cosine_has_a_linear_warmup():
    config = _config(**{"schedule.name": "step", "schedule.decay_every_epochs": 10.0, "optimizer.learning_rate": 1e-3})
    schedule = optimizer.learning_rate_schedule(config, steps_per_epoch=5, total_steps=500)
    np.testing.assert_allclose([schedule(0), schedule(49), schedule(50), schedule(100)], [1e-3, 1e-3, 7e-4, 4.9e-4], rtol=1e-6)
    config = _config(**{"schedule.name": "cosine", "schedule.warmup_steps": 10, "optimizer.learning_rate": 1.0})
    schedule = optimizer.learning_rate_schedule(config, steps_per_epoch=5, total_steps=110)
    np.testing.assert_allclose([schedule(0), schedule(5), schedule(10), schedule(60), schedule(110)], [0, 0.5, 1, 0.5, 0], atol=1e-6)


def test_unknown_optimizer_and_schedule_names_are_errors_naming_the_choices():
    with pytest.raises(ValueError, match="adam, adamw, sgd, rmsprop.*'adagrad'"):
        optimizer.build_optimizer(_config(**{"optimizer.name": "adagrad"}), {}, steps_per_epoch=1, total_steps=1)
    with pytest.raises(ValueError, match="constant, step, cosine.*'linear'"):
        optimizer.learning_rate_schedule(_config(**{"schedule.name": "linear"}), steps_per_epoch=1, total_steps=1)

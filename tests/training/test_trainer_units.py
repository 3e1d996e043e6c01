"""Optimiser, schedules, config locking, the NaN guard and the method table."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trainer_test_utils import REPO_ROOT, run_module


def _config(**changes):
    from jaxretrieval import config_utils

    config = config_utils.base_config("csq")
    config.lock()
    for dotted_key, value in changes.items():
        section, key = dotted_key.split(".")
        config[section][key] = value
    return config


def test_backbone_multiplier_scales_exactly_the_backbone_updates():
    from jaxretrieval import trainer

    params = {"backbone": {"kernel": jnp.ones((3,))}, "head": {"kernel": jnp.ones((3,))}}
    grads = {"backbone": {"kernel": jnp.array([1.0, -2.0, 3.0])}, "head": {"kernel": jnp.array([1.0, -2.0, 3.0])}}
    for name in ("adam", "sgd", "rmsprop", "adamw"):
        config = _config(**{"optimizer.name": name, "optimizer.backbone_multiplier": 0.05})
        tx, _ = trainer.build_optimizer(config, params, steps_per_epoch=10, total_steps=100)
        updates, _ = tx.update(grads, tx.init(params), params)
        np.testing.assert_allclose(updates["backbone"]["kernel"], 0.05 * updates["head"]["kernel"], rtol=1e-6, err_msg=name)
        assert np.all(updates["head"]["kernel"] != 0)


def test_step_decay_is_csq_x07_every_10_epochs_after_linear_warmup():
    from jaxretrieval import trainer

    config = _config(**{"schedule.name": "step", "schedule.decay_every_epochs": 10.0, "optimizer.learning_rate": 1e-3})
    schedule = trainer.learning_rate_schedule(config, steps_per_epoch=5, total_steps=500)
    np.testing.assert_allclose([schedule(0), schedule(49), schedule(50), schedule(100)], [1e-3, 1e-3, 7e-4, 4.9e-4], rtol=1e-6)
    config = _config(**{"schedule.name": "cosine", "schedule.warmup_steps": 10, "optimizer.learning_rate": 1.0})
    schedule = trainer.learning_rate_schedule(config, steps_per_epoch=5, total_steps=110)
    np.testing.assert_allclose([schedule(0), schedule(5), schedule(10), schedule(60), schedule(110)], [0, 0.5, 1, 0.5, 0], atol=1e-6)


def test_unknown_optimizer_and_schedule_names_are_errors_naming_the_choices():
    from jaxretrieval import trainer

    with pytest.raises(ValueError, match="adam, adamw, sgd, rmsprop.*'adagrad'"):
        trainer.build_optimizer(_config(**{"optimizer.name": "adagrad"}), {}, steps_per_epoch=1, total_steps=1)
    with pytest.raises(ValueError, match="'linear'"):
        trainer.learning_rate_schedule(_config(**{"schedule.name": "linear"}), steps_per_epoch=1, total_steps=1)


def test_a_typo_in_a_config_key_is_an_error_naming_it(tmp_path):
    completed = run_module(
        "jaxretrieval.train", "--config=configs/smoke.py", f"--workdir={tmp_path}", "--config.optimizer.lr=0.1"
    )
    assert completed.returncode != 0
    assert "--config.optimizer.lr: config.optimizer has no key 'lr' (keys: b1," in completed.stderr, completed.stderr[-2000:]
    assert not (tmp_path / "checkpoints").exists()
    from jaxretrieval import config_utils

    with pytest.raises(KeyError, match="optimizer.lr"):
        config_utils.load_config(str(REPO_ROOT / "configs" / "smoke.py"), {"optimizer.lr": 0.1})


def test_method_and_head_mismatch_and_unknown_method_are_clear_errors(tmp_path):
    from jaxretrieval import config_utils, methods, trainer

    with pytest.raises(ValueError, match="'spq' trains a 'pq' head but config.model.head='hash'"):
        trainer.train_and_evaluate(config_utils.load_config(str(REPO_ROOT / "configs" / "smoke.py"), {"method": "spq"}), tmp_path)
    with pytest.raises(ValueError, match="must be one of"):
        methods.get_method("hashnet")
    assert set(methods.METHODS) == set(config_utils.LOSS_DEFAULTS) == {"csq", "spq", "map_q", "pairwise", "triplet"}


def test_nan_guard_stops_with_the_step_and_the_metric(tmp_path):
    from jaxretrieval import config_utils, trainer

    config = config_utils.load_config(
        str(REPO_ROOT / "configs" / "smoke.py"),
        {"optimizer.learning_rate": 1e38, "evaluate_at_end": False, "log_every_steps": 1},
    )
    with pytest.raises(trainer.NonFiniteMetricError, match=r"step 2: metric '(loss|grad_norm|mean_abs_tanh)' is (nan|inf)"):
        trainer.train_and_evaluate(config, tmp_path)
    # Nothing after the guard: no checkpoint of the broken state.
    assert not any(path.name == "3" for path in (tmp_path / "checkpoints").iterdir())


def test_rng_is_folded_per_step_so_the_step_key_depends_only_on_seed_and_step():
    # The train step derives its randomness as fold_in(key, step): same seed and step, same key.
    key = jax.random.key(0, impl="rbg")
    assert np.array_equal(jax.random.key_data(jax.random.fold_in(key, 7)), jax.random.key_data(jax.random.fold_in(key, 7)))
    assert not np.array_equal(jax.random.key_data(jax.random.fold_in(key, 7)), jax.random.key_data(jax.random.fold_in(key, 8)))

"""jaxretrieval.training.restore: a trained model back for inference, without an optimiser."""
import jax
import numpy as np
import pytest
from flax import nnx

from .trainer_test_utils import run_module


def test_restoring_for_inference_cannot_reach_the_optimiser():
    import grimp

    upstream = grimp.build_graph("jaxretrieval").find_upstream_modules("jaxretrieval.training.restore")
    assert "jaxretrieval.training.optimizer" not in upstream and "jaxretrieval.training.trainer" not in upstream


def test_restore_reads_the_model_and_extras_of_a_checkpoint(smoke_run):
    from jaxretrieval import sharding
    from jaxretrieval.training import restore

    workdir, result = smoke_run
    trained = restore.restore_trained_model(workdir)
    assert trained.step == 6 and trained.method.name == "csq" and trained.summary["image_shape"] == [8, 8, 1]
    _, params, model_state = nnx.split(trained.model, nnx.Param, ...)
    expected_params, expected_state = sharding.to_host((result.state.params, result.state.model_state))
    def raw(value):  # PRNG keys (the dropout stream) compare by their key data
        if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
            value = jax.random.key_data(value)
        return np.asarray(value)

    for actual, expected in ((params, expected_params), (model_state, expected_state)):
        actual_leaves, expected_leaves = jax.tree.leaves(sharding.to_host(actual)), jax.tree.leaves(expected)
        assert len(actual_leaves) == len(expected_leaves) > 0
        for left, right in zip(actual_leaves, expected_leaves):
            np.testing.assert_array_equal(raw(left), raw(right))
    np.testing.assert_array_equal(trained.extras["centers"], sharding.to_host(result.state.extras["centers"]))
    earlier = restore.restore_trained_model(workdir, step=3)
    assert earlier.step == 3
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at step 4 .*available steps: \[3, 6\]"):
        restore.restore_trained_model(workdir, step=4)


@pytest.mark.parametrize("module, arguments, expected", [
    ("jaxretrieval.evaluate", ["--workdir=/nonexistent/run"], "config.json not found"),
    ("jaxretrieval.query", ["--workdir=/nonexistent/run", "--index=x.npz", "--images=y.png", "--k=0"], "--k"),
    ("jaxretrieval.encode", ["--workdir=/nonexistent/run", "--images=y"], "--output"),
])
def test_inference_commands_end_user_errors_with_one_line_and_status_2(module, arguments, expected):
    completed = run_module(module, *arguments)
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert completed.stderr.startswith("error: ") and completed.stderr.count("\n") == 1, completed.stderr[-2000:]
    assert expected in completed.stderr

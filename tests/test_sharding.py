"""jaxretrieval.sharding: meshes, batch shardings, global batches and multi-host start-up arguments."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretrieval import sharding


@pytest.mark.parametrize(
    "spec, expected",
    [
        ([("data", -1)], {"data": 8}),
        ([("data", 8)], {"data": 8}),
        ([("data", -1), ("model", 2)], {"data": 4, "model": 2}),
        ((("model", 4), ("data", -1)), {"model": 4, "data": 2}),
        ([["data", 2], ["model", -1]], {"data": 2, "model": 4}),  # ConfigDict turns tuples into lists
    ],
)
def test_make_mesh_shapes_and_explicit_axes(spec, expected):
    mesh = sharding.make_mesh(spec)
    assert dict(mesh.shape) == expected
    assert tuple(mesh.axis_names) == tuple(expected)
    assert all(axis_type == jax.sharding.AxisType.Explicit for axis_type in mesh.axis_types)


@pytest.mark.parametrize(
    "spec, message",
    [
        ([], "non-empty"),
        ("data", "non-empty"),
        ([("data",)], r"mesh_spec\[0\]"),
        ([("data", 0)], "positive int or -1"),
        ([("data", -1), ("model", -1)], "at most one"),
        ([("data", 3), ("model", -1)], "does not divide"),
        ([("data", 4)], "needs 4 devices but there are 8"),
        ([("data", 4), ("data", 2)], "repeats"),
    ],
)
def test_make_mesh_rejects_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        sharding.make_mesh(spec)


def test_shardings_place_rows_per_device():
    mesh = sharding.make_mesh([("data", -1)])
    rows = jax.device_put(jnp.arange(16.0).reshape(16, 1), sharding.batch_sharding(mesh))
    assert [shard.data.shape for shard in rows.addressable_shards] == [(2, 1)] * 8
    first_rows = sorted(float(shard.data[0, 0]) for shard in rows.addressable_shards)
    assert first_rows == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]
    copy = jax.device_put(jnp.ones(3), sharding.replicated_sharding(mesh))
    assert all(shard.data.shape == (3,) for shard in copy.addressable_shards)
    with pytest.raises(ValueError, match="no 'data' axis"):
        sharding.batch_sharding(sharding.make_mesh([("model", -1)]))


def test_global_batch_from_process_local_data_on_a_two_axis_mesh():
    mesh = sharding.make_mesh([("data", 4), ("model", 2)])
    local = {
        "image": np.arange(8 * 2 * 2, dtype=np.uint8).reshape(8, 2, 2, 1),
        "label": np.eye(8, dtype=np.float32),
        "index": np.arange(8, dtype=np.int64),
    }
    batch = sharding.global_batch(local, mesh)
    assert set(batch) == set(local)
    for name, value in batch.items():
        assert value.sharding == sharding.batch_sharding(mesh), name
        np.testing.assert_array_equal(np.asarray(value), local[name])
    # Each row block sits on the two "model" devices of its "data" slice.
    assert {shard.data.shape[0] for shard in batch["label"].addressable_shards} == {2}
    # A jitted batch-level reduction over the sharded rows equals the numpy one.
    total = jax.jit(lambda b: (b["label"] * b["index"][:, None]).sum())(batch)
    assert float(total) == float(np.arange(8).sum())


@pytest.mark.parametrize(
    "local, message",
    [
        ({"image": np.zeros((6, 2))}, "not divisible by the 8 slices"),
        ({"image": np.zeros((8, 2)), "label": np.zeros((16,))}, "different batch sizes"),
        ({"step": np.float32(3.0)}, "scalar"),
    ],
)
def test_global_batch_rejects_bad_local_batches(local, message):
    with pytest.raises(ValueError, match=message):
        sharding.global_batch(local, sharding.make_mesh([("data", -1)]))


def test_is_main_process_in_one_process():
    assert sharding.is_main_process()


_CLUSTER_VARIABLES = (
    "SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_STEP_NODELIST",
    "SLURM_LOCALID", "TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES", "MEGASCALE_COORDINATOR_ADDRESS",
    "JAX_COORDINATOR_ADDRESS",
)


@pytest.fixture
def recorded_initialize(monkeypatch):
    """Replaces jax.distributed.initialize by a recorder, in an environment without cluster variables."""
    for name in _CLUSTER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    return calls


def test_initialize_off_does_nothing(recorded_initialize, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "1")  # even inside a cluster, "off" means one process
    assert sharding.initialize_distributed("off") is False
    assert sharding.initialize_distributed("off", coordinator_address="") is False
    assert recorded_initialize == []
    with pytest.raises(ValueError, match=r"mode 'off' but \['num_processes', 'process_id'\]"):
        sharding.initialize_distributed("off", num_processes=2, process_id=0)


def test_initialize_auto_without_a_cluster_does_nothing(recorded_initialize):
    assert sharding.initialize_distributed("auto") is False
    assert recorded_initialize == []


@pytest.mark.parametrize(
    "environment",
    [
        {"SLURM_JOB_ID": "42", "SLURM_NTASKS": "4", "SLURM_PROCID": "1", "SLURM_STEP_NODELIST": "n[1-2]"},
        {"TPU_WORKER_HOSTNAMES": "t1k-0,t1k-1,t1k-2,t1k-3"},
        {"MEGASCALE_COORDINATOR_ADDRESS": "10.0.0.2:8080"},
        {"JAX_COORDINATOR_ADDRESS": "10.0.0.2:1234"},
    ],
)
def test_initialize_auto_in_a_cluster_lets_jax_detect_the_rest(recorded_initialize, monkeypatch, environment):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert sharding.initialize_distributed("auto") is True
    assert recorded_initialize == [
        {"coordinator_address": None, "num_processes": None, "process_id": None, "coordinator_bind_address": None}
    ]


def test_detect_cluster_ignores_single_process_jobs():
    assert sharding.detect_cluster({"SLURM_JOB_ID": "1", "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None
    assert sharding.detect_cluster({"TPU_WORKER_HOSTNAMES": "localhost"}) is None
    assert sharding.detect_cluster({}) is None


def test_initialize_on_binds_the_coordinator_to_the_given_address(recorded_initialize):
    assert sharding.initialize_distributed(
        "on", coordinator_address="127.0.0.1:2345", num_processes=2, process_id=1
    ) is True
    assert recorded_initialize == [
        {
            "coordinator_address": "127.0.0.1:2345",
            "num_processes": 2,
            "process_id": 1,
            "coordinator_bind_address": "127.0.0.1:2345",
        }
    ]


def test_initialize_on_without_arguments_uses_the_environment(recorded_initialize):
    assert sharding.initialize_distributed("on") is True
    assert recorded_initialize[0]["coordinator_address"] is None


def test_initialize_is_idempotent(recorded_initialize, monkeypatch):
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)
    assert sharding.initialize_distributed("on", coordinator_address="127.0.0.1:2345") is True
    assert recorded_initialize == []


@pytest.mark.parametrize(
    "mode, kwargs, error, message",
    [
        ("yes", {}, ValueError, "one of"),
        ("on", {"coordinator_address": "127.0.0.1"}, ValueError, "host:port"),
        ("on", {"num_processes": 2, "process_id": 2}, ValueError, r"\[0, num_processes=2\)"),
        ("on", {"num_processes": 0}, ValueError, ">= 1"),
        ("auto", {"process_id": "0"}, TypeError, "process_id must be an int"),
    ],
)
def test_initialize_rejects_bad_arguments(recorded_initialize, mode, kwargs, error, message):
    with pytest.raises(error, match=message):
        sharding.initialize_distributed(mode, **kwargs)
    assert recorded_initialize == []

"""Two real JAX processes on this machine (127.0.0.1, 4 CPU devices each, gloo) against one with 8.

The file is also the worker: ``python tests/test_multihost.py PORT PROCESS_ID OUTPUT.npz`` joins the
two-process runtime and writes its results; the tests start two workers and compare their results with
the same computations in the pytest process (one process, 8 fake devices).
"""
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

NUM_PROCESSES = 2
DEVICES_PER_PROCESS = 4
BATCH = 32
WORKER_TIMEOUT_SECONDS = 90
TRAIN_TIMEOUT_SECONDS = 240
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "grpc_proxy")


def _problem():
    """A deterministic global batch and MLP parameters (numpy, identical in every process)."""
    generator = np.random.default_rng(0)
    images = generator.normal(size=(BATCH, 12)).astype(np.float32)
    labels = generator.integers(0, 3, size=BATCH).astype(np.int32)
    params = {
        "w1": (generator.normal(size=(12, 16)) / 3.0).astype(np.float32),
        "b1": np.zeros(16, np.float32),
        "w2": (generator.normal(size=(16, 4)) / 4.0).astype(np.float32),
    }
    return images, labels, params


def _computations(mesh, images, labels, params):
    """Global results of the multi-host building blocks, as numpy arrays (same in every process)."""
    import jax
    import jax.numpy as jnp
    from jax.experimental import multihost_utils

    from jaxretrieval import sharding
    from jaxretrieval.multistage import micro_batched_value_and_grad

    def embed(params, images):
        hidden = jax.nn.relu(images @ params["w1"] + params["b1"])
        descriptors = hidden @ params["w2"]
        return descriptors / jnp.linalg.norm(descriptors, axis=-1, keepdims=True)

    def loss(descriptors, labels):
        key_descriptors, key_labels = jax.sharding.reshard((descriptors, labels), jax.P())
        similarities = descriptors @ key_descriptors.T
        self_match = jnp.eye(descriptors.shape[0], dtype=bool)
        positives = (labels[:, None] == key_labels[None, :]) & ~self_match
        log_probabilities = jax.nn.log_softmax(jnp.where(self_match, -1e9, similarities / 0.1), axis=-1)
        per_query = -jnp.sum(jnp.where(positives, log_probabilities, 0.0), 1) / jnp.maximum(positives.sum(1), 1)
        return jnp.mean(per_query)

    # Each process holds the rows of its devices' slices of the data axis.
    rows_per_process = BATCH // jax.process_count()
    local_rows = slice(jax.process_index() * rows_per_process, (jax.process_index() + 1) * rows_per_process)
    with jax.set_mesh(mesh):
        batch = sharding.global_batch({"image": images[local_rows], "label": labels[local_rows]}, mesh)
        replicated_params = jax.device_put(params, sharding.replicated_sharding(mesh))
        total = jax.jit(lambda x: x.sum())(batch["image"])
        psum_total = jax.jit(
            jax.shard_map(
                lambda x: jax.lax.psum(x.sum(), "data"), mesh=mesh, in_specs=jax.P("data"), out_specs=jax.P()
            )
        )(batch["image"])
        step = jax.jit(micro_batched_value_and_grad(embed, loss, micro_batch_size=16))
        value, grads = step(replicated_params, batch["image"], batch["label"])
        gathered_images = multihost_utils.process_allgather(batch["image"], tiled=True)
    results = {"total": total, "psum_total": psum_total, "value": value, **{f"grad_{k}": v for k, v in grads.items()}}
    # Replicated global arrays: every process has a full copy on its first device.
    results = {name: np.asarray(value.addressable_data(0)) for name, value in results.items()}
    results["gathered_images"] = np.asarray(gathered_images)
    results["process_count"] = np.asarray(jax.process_count())
    return results


def _worker(port: int, process_id: int, output: str) -> None:
    from jaxretrieval import sharding

    sharding.initialize_distributed(
        "on", coordinator_address=f"127.0.0.1:{port}", num_processes=NUM_PROCESSES, process_id=process_id
    )
    mesh = sharding.make_mesh([("data", -1)])
    np.savez(output, **_computations(mesh, *_problem()))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker_environment(num_devices: int) -> dict:
    environment = {
        name: value for name, value in os.environ.items() if name.lower() not in _PROXY_VARIABLES
    }
    environment.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    return environment


def run_processes(commands, *, timeout: float, cwd, num_devices=None, environment=None) -> list[str]:
    """Runs the commands concurrently on CPU; kills all of them as soon as one fails or time runs out.

    ``num_devices[i]`` fake CPU devices for command i (default ``DEVICES_PER_PROCESS`` each);
    ``environment``: extra environment variables for all of them.
    Returns each process's combined output. Raises AssertionError with every output on failure.
    """
    num_devices = num_devices or [DEVICES_PER_PROCESS] * len(commands)
    # Output goes to files, not pipes: a full pipe would block a process that nobody reads yet.
    logs = [tempfile.TemporaryFile(mode="w+") for _ in commands]
    processes = [
        subprocess.Popen(
            command, cwd=cwd, env={**_worker_environment(devices), **(environment or {})},
            stdout=log, stderr=subprocess.STDOUT, text=True,
        )
        for command, devices, log in zip(commands, num_devices, logs)
    ]
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            codes = [process.poll() for process in processes]
            if all(code == 0 for code in codes) or any(code not in (None, 0) for code in codes):
                break
            time.sleep(0.2)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    failed = [position for position, process in enumerate(processes) if process.returncode != 0]
    if failed:
        report = "\n".join(
            f"--- process {position} (exit {process.returncode}):\n{outputs[position][-4000:]}"
            for position, process in enumerate(processes)
        )
        raise AssertionError(f"processes {failed} failed, or were killed after {timeout} s\n{report}")
    return outputs


@pytest.mark.slow
def test_two_processes_equal_one_process_with_eight_devices(tmp_path):
    import jax

    from jaxretrieval import sharding

    port = _free_port()
    outputs = [tmp_path / f"process_{process_id}.npz" for process_id in range(NUM_PROCESSES)]
    run_processes(
        [
            [sys.executable, __file__, str(port), str(process_id), str(output)]
            for process_id, output in enumerate(outputs)
        ],
        timeout=WORKER_TIMEOUT_SECONDS,
        cwd=REPO_ROOT,
    )
    images, labels, params = _problem()
    assert jax.device_count() == NUM_PROCESSES * DEVICES_PER_PROCESS
    expected = _computations(sharding.make_mesh([("data", -1)]), images, labels, params)
    assert int(expected["process_count"]) == 1
    for output in outputs:
        got = dict(np.load(output))
        assert int(got.pop("process_count")) == NUM_PROCESSES
        # The global batch is the processes' rows in process order.
        np.testing.assert_array_equal(got.pop("gathered_images"), images)
        np.testing.assert_allclose(got["total"], images.sum(), rtol=1e-5)
        np.testing.assert_allclose(got["psum_total"], images.sum(), rtol=1e-5)
        for name, value in got.items():
            np.testing.assert_allclose(value, expected[name], rtol=1e-5, atol=1e-7, err_msg=name)


def _train_command(workdir, num_steps: int, *distributed_flags) -> list[str]:
    return [
        sys.executable, "-m", "jaxretrieval.train", "--config", "configs/smoke.py", "--workdir", str(workdir),
        f"--config.num_steps={num_steps}", "--config.checkpoint_every_steps=2", "--config.log_every_steps=1",
        "--config.evaluate_at_end=False", *distributed_flags,
    ]


def _losses(workdir) -> dict[int, float]:
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {record["step"]: record["loss"] for record in records if "loss" in record}


@pytest.mark.slow
def test_two_process_training_equals_one_process_and_resumes_from_a_collective_checkpoint(tmp_path):
    """The smoke config: 2 processes x 4 devices train 4 steps, checkpoint, then resume to 6 steps;
    every step's loss equals that of one process with 8 devices training 6 steps straight."""
    two_processes, one_process = tmp_path / "two_processes", tmp_path / "one_process"
    # The resumed run reuses the first run's compiled programs (the suite's time budget is tight).
    compilation_cache = {
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "compilation_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }

    def distributed(num_steps, port):
        return [
            _train_command(
                two_processes, num_steps, "--jax_distributed=on", f"--coordinator_address=127.0.0.1:{port}",
                f"--num_processes={NUM_PROCESSES}", f"--process_id={process_id}",
            )
            for process_id in range(NUM_PROCESSES)
        ]

    run_processes(
        distributed(4, _free_port()) + [_train_command(one_process, 6)],
        timeout=TRAIN_TIMEOUT_SECONDS,
        cwd=REPO_ROOT,
        num_devices=[DEVICES_PER_PROCESS] * NUM_PROCESSES + [NUM_PROCESSES * DEVICES_PER_PROCESS],
        environment=compilation_cache,
    )
    assert sorted(_losses(two_processes)) == [1, 2, 3, 4]
    # Both processes wrote their part of the step-4 checkpoint.
    checkpoint_files = [path.name for path in (two_processes / "checkpoints" / "4").rglob("*")]
    for process_id in range(NUM_PROCESSES):
        assert any(f"process_{process_id}" in name for name in checkpoint_files), checkpoint_files

    started = time.perf_counter()
    main_output, _ = run_processes(
        distributed(6, _free_port()), timeout=TRAIN_TIMEOUT_SECONDS, cwd=REPO_ROOT, environment=compilation_cache
    )
    print(f"resumed run: {time.perf_counter() - started:.1f} s")
    assert "resuming from" in main_output and "step 4" in main_output, main_output[-2000:]
    expected, got = _losses(one_process), _losses(two_processes)
    assert sorted(got) == sorted(expected) == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([got[step] for step in range(1, 7)], [expected[step] for step in range(1, 7)], rtol=1e-5)


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])

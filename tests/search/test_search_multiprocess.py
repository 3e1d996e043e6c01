"""Sharded search across two real JAX processes (jax.distributed on 127.0.0.1, 4 CPU devices each)."""
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

from jaxretrieval import search

_WORKER = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_num_cpu_devices", 4)
    process_id, port = int(sys.argv[1]), sys.argv[2]
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id,
        coordinator_bind_address=f"127.0.0.1:{port}",
    )
    import numpy as np
    from jaxretrieval import search
    rng = np.random.default_rng(0)
    database = rng.integers(0, 4, size=(1003, 2), dtype=np.uint8)  # few distinct codes: ties
    queries = rng.integers(0, 4, size=(5, 2), dtype=np.uint8)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    distances, indices = search.sharded_hamming_knn(queries, database, 40, mesh=mesh)
    print("RESULT", json.dumps({
        "distances": np.asarray(distances.addressable_data(0)).tolist(),
        "indices": np.asarray(indices.addressable_data(0)).tolist(),
    }), flush=True)
    """
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_sharded_hamming_knn_across_two_processes_equals_one_device():
    port = str(_free_port())
    environment = {
        key: value for key, value in os.environ.items() if "proxy" not in key.lower()
    }
    environment["JAX_PLATFORMS"] = "cpu"
    environment["XLA_FLAGS"] = ""  # each worker sets 4 devices itself
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(process_id), port], env=environment,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for process_id in range(2)
    ]
    outputs = [worker.communicate(timeout=240)[0] for worker in workers]
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-3000:]
    results = [
        json.loads(line.split("RESULT ", 1)[1])
        for output in outputs for line in output.splitlines() if line.startswith("RESULT ")
    ]
    assert len(results) == 2
    rng = np.random.default_rng(0)
    database = rng.integers(0, 4, size=(1003, 2), dtype=np.uint8)
    queries = rng.integers(0, 4, size=(5, 2), dtype=np.uint8)
    expected_distances, expected_indices = search.hamming_knn(queries, database, 40)
    for result in results:
        np.testing.assert_array_equal(result["distances"], expected_distances)
        np.testing.assert_array_equal(result["indices"], expected_indices)

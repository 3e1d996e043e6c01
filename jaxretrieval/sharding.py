"""Device meshes, batch shardings, host/device transfers and multi-host start-up (training and evaluation).

One mesh is declared in the config (``config.mesh = [("data", -1)]``); batches are sharded over its
``"data"`` axis, parameters are replicated, and batch-level losses run on global arrays (XLA inserts the
collectives). On several hosts every process reads its own slice of the data and :func:`global_batch`
assembles the slices into one global array. :func:`replicate` places host values on every device,
:func:`to_host` brings replicated or sharded arrays back as numpy (on every process).

Example (the test suite's 8 fake CPU devices)::

    >>> import numpy as np
    >>> mesh = make_mesh([("data", -1)])
    >>> dict(mesh.shape)
    {'data': 8}
    >>> batch = global_batch({"image": np.zeros((16, 8, 8, 1), np.uint8)}, mesh)
    >>> batch["image"].shape, batch["image"].sharding == batch_sharding(mesh)
    ((16, 8, 8, 1), True)
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "batch_sharding",
    "detect_cluster",
    "global_batch",
    "initialize_distributed",
    "is_main_process",
    "make_mesh",
    "replicate",
    "replicated_sharding",
    "to_host",
]

DATA_AXIS = "data"
"""The mesh axis the batch dimension is sharded over."""

DISTRIBUTED_MODES = ("off", "on", "auto")

_logger = logging.getLogger(__name__)


def make_mesh(mesh_spec: Sequence[Sequence], *, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds a device mesh with Explicit axis types from ``(axis_name, size)`` pairs.

    Args:
      mesh_spec: pairs ``(axis_name, size)`` in mesh order, e.g. ``[("data", -1)]`` or
        ``[("data", 4), ("model", 2)]``. At most one size may be ``-1``: it takes all devices left over.
        The sizes must multiply to the number of devices.
      devices: the devices to lay out (default: all of ``jax.devices()``, every process's).

    Returns:
      A ``jax.sharding.Mesh`` whose axes are all ``AxisType.Explicit``.

    Raises:
      ValueError: an empty or malformed spec, a repeated axis name, more than one ``-1``, or sizes
        that do not divide / multiply to the device count.

    Example::

        >>> mesh = make_mesh([("data", -1), ("model", 2)])
        >>> dict(mesh.shape)
        {'data': 4, 'model': 2}
    """
    devices = list(jax.devices() if devices is None else devices)
    num_devices = len(devices)
    if isinstance(mesh_spec, (str, bytes)) or not isinstance(mesh_spec, Sequence) or not mesh_spec:
        raise ValueError(f"mesh_spec must be a non-empty list of (axis_name, size) pairs, got {mesh_spec!r}")
    names, sizes = [], []
    for position, pair in enumerate(mesh_spec):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"mesh_spec[{position}] must be an (axis_name, size) pair, got {pair!r}")
        name, size = pair
        if not isinstance(name, str) or not name:
            raise ValueError(f"mesh_spec[{position}]: axis name must be a non-empty string, got {name!r}")
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or (size < 1 and size != -1):
            raise ValueError(f"mesh_spec[{position}] ({name!r}): size must be a positive int or -1, got {size!r}")
        names.append(name)
        sizes.append(int(size))
    if len(set(names)) != len(names):
        raise ValueError(f"mesh_spec repeats an axis name: {names}")
    if sizes.count(-1) > 1:
        raise ValueError(f"mesh_spec may have at most one size -1, got {list(zip(names, sizes))}")
    known = int(np.prod([size for size in sizes if size != -1]))
    if -1 in sizes:
        if num_devices % known:
            raise ValueError(
                f"mesh_spec {list(zip(names, sizes))}: the fixed sizes multiply to {known}, "
                f"which does not divide the {num_devices} devices"
            )
        sizes[sizes.index(-1)] = num_devices // known
    elif known != num_devices:
        raise ValueError(
            f"mesh_spec {list(zip(names, sizes))} needs {known} devices but there are {num_devices}"
        )
    axis_types = (jax.sharding.AxisType.Explicit,) * len(names)
    return jax.make_mesh(tuple(sizes), tuple(names), axis_types=axis_types, devices=devices)


def _require_data_axis(mesh: Mesh) -> None:
    if DATA_AXIS not in mesh.axis_names:
        raise ValueError(f"the mesh has no {DATA_AXIS!r} axis to shard the batch over: axes {mesh.axis_names}")


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Shards the leading (batch) dimension over the mesh's ``"data"`` axis; other dimensions replicated."""
    _require_data_axis(mesh)
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """Places a full copy on every device of the mesh (parameters, optimizer state, scalars)."""
    return NamedSharding(mesh, PartitionSpec())


def _process_data_shard_count(mesh: Mesh) -> int:
    """How many distinct slices of the ``"data"`` axis this process's devices hold."""
    data_position = mesh.axis_names.index(DATA_AXIS)
    local = {device.id for device in mesh.local_devices}
    coordinates = np.argwhere(np.vectorize(lambda device: device.id in local)(mesh.devices))
    return len(set(coordinates[:, data_position].tolist()))


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles every process's local batch into global arrays sharded over ``"data"``.

    Each process passes the rows it read (``jax.make_array_from_process_local_data``); the global
    batch concatenates the processes' rows in the order their devices take along the ``"data"`` axis
    (process order for :func:`make_mesh` meshes on CPU and GPU), so its leading size is
    ``local_rows * jax.process_count()`` when the data axis spans all processes. With one process the
    global batch is the local batch.

    Args:
      local_batch: name -> numpy array ``[local_batch, ...]``; all entries share the leading size.
      mesh: a mesh with a ``"data"`` axis (see :func:`make_mesh`).

    Returns:
      name -> ``jax.Array`` ``[global_batch, ...]`` with sharding :func:`batch_sharding` ``(mesh)``.

    Raises:
      ValueError: entries without a batch dimension, different leading sizes, or a local batch that
        does not split evenly over this process's slices of the ``"data"`` axis.
    """
    sharding = batch_sharding(mesh)
    shard_count = _process_data_shard_count(mesh)
    leading_sizes = {}
    for name, value in local_batch.items():
        shape = np.shape(value)
        if not shape:
            raise ValueError(f"global_batch: entry {name!r} is a scalar; every entry needs a batch dimension")
        leading_sizes[name] = shape[0]
    if len(set(leading_sizes.values())) > 1:
        raise ValueError(f"global_batch: entries have different batch sizes {leading_sizes}")
    for name, size in leading_sizes.items():
        if size % shard_count:
            raise ValueError(
                f"global_batch: entry {name!r} has {size} rows on process {jax.process_index()}, not divisible "
                f"by the {shard_count} slices of the {DATA_AXIS!r} axis this process holds"
            )
    return {
        name: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for name, value in local_batch.items()
    }


def _host_copy(value) -> np.ndarray:
    """A writable numpy copy of a replicated value (also of a multi-process one: any local shard is whole)."""
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        value = value.addressable_data(0)
    return np.array(value)


def _is_key(value) -> bool:
    return isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key)


def replicate(tree, mesh: Mesh):
    """Host values (identical on every process) -> arrays replicated over ``mesh`` (PRNG keys stay keys)."""
    replicated = replicated_sharding(mesh)

    def place(value):
        if _is_key(value):
            placed = jax.make_array_from_process_local_data(replicated, _host_copy(jax.random.key_data(value)))
            return jax.random.wrap_key_data(placed, impl=jax.random.key_impl(value))
        return jax.make_array_from_process_local_data(replicated, _host_copy(value))

    return jax.tree.map(place, tree)


def to_host(tree):
    """Arrays -> writable host numpy on every process: replicated ones copied from a local shard,
    batch-sharded ones gathered across processes (PRNG keys stay keys)."""

    def bring(value):
        if _is_key(value):
            return jax.random.wrap_key_data(bring(jax.random.key_data(value)), impl=jax.random.key_impl(value))
        if isinstance(value, jax.Array) and not value.is_fully_addressable and not value.sharding.is_fully_replicated:
            return np.asarray(multihost_utils.process_allgather(value, tiled=True))
        return _host_copy(value)

    return jax.tree.map(bring, tree)


def is_main_process() -> bool:
    """True on process 0, the one that writes logs, metrics and plots."""
    return jax.process_index() == 0


def detect_cluster(environ: Mapping[str, str] | None = None) -> str | None:
    """Names the multi-process cluster this process was launched in, from environment variables.

    Returns ``"slurm"`` inside a Slurm step with more than one task (``srun``), ``"cloud_tpu"`` on a
    Cloud TPU slice with more than one worker (``TPU_WORKER_HOSTNAMES`` / ``TPU_PROCESS_ADDRESSES`` /
    ``MEGASCALE_COORDINATOR_ADDRESS``, as set on GKE and multislice), ``"environment"`` when
    ``JAX_COORDINATOR_ADDRESS`` is set, else ``None``. A plain TPU VM pod slice started with
    ``gcloud ... ssh --worker=all`` sets none of these: start it with mode ``"on"`` (JAX then asks the
    TPU metadata server), as ``launch/tpu_pod.sh`` does.

    Example::

        >>> detect_cluster({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "8", "SLURM_PROCID": "0"})
        'slurm'
        >>> detect_cluster({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None
        True
    """
    environ = os.environ if environ is None else environ
    slurm_tasks = environ.get("SLURM_STEP_NUM_TASKS") or environ.get("SLURM_NTASKS")
    if "SLURM_JOB_ID" in environ and "SLURM_PROCID" in environ and slurm_tasks:
        if int(slurm_tasks) > 1:
            return "slurm"
    if environ.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return "cloud_tpu"
    tpu_hosts = environ.get("TPU_PROCESS_ADDRESSES") or environ.get("TPU_WORKER_HOSTNAMES")
    if tpu_hosts and len([host for host in tpu_hosts.split(",") if host.strip()]) > 1:
        return "cloud_tpu"
    if environ.get("JAX_COORDINATOR_ADDRESS"):
        return "environment"
    return None


def _check_optional_int(name: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"initialize_distributed: {name} must be an int or None, got {value!r}")
    return int(value)


def initialize_distributed(
    mode: str = "off",
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Starts JAX's multi-process runtime (``jax.distributed.initialize``) according to ``mode``.

    Call it before any JAX computation. Modes:

    - ``"off"``: does nothing (one process). Passing coordinator arguments with it is an error, so a
      forgotten ``--jax_distributed=on`` does not silently train one copy per host.
    - ``"on"``: always initializes, with the given arguments; the ones left ``None`` come from JAX's
      cluster detection (Slurm, Cloud TPU metadata, Open MPI, ...) or the ``JAX_COORDINATOR_ADDRESS``
      environment variable.
    - ``"auto"``: initializes (as ``"on"``) only when :func:`detect_cluster` finds a multi-process
      cluster or explicit arguments are given; otherwise does nothing.

    A given ``coordinator_address`` (``"host:port"``) is also the address process 0's coordinator
    service binds to, so ``127.0.0.1:PORT`` listens on the loopback interface only (JAX's default
    listens on all interfaces).

    Args:
      mode: ``"off"``, ``"on"`` or ``"auto"``.
      coordinator_address: ``"host:port"`` of process 0, or ``None`` (``""`` also counts as unset).
      num_processes: the number of processes, or ``None``.
      process_id: this process's index in ``[0, num_processes)``, or ``None``.

    Returns:
      True when the distributed runtime is running after the call (also when it already was).

    Raises:
      ValueError: an unknown mode, arguments with mode ``"off"``, a malformed address, or a process id
        outside ``[0, num_processes)``.
      TypeError: a non-integer ``num_processes`` / ``process_id``.
    """
    if mode not in DISTRIBUTED_MODES:
        raise ValueError(f"initialize_distributed: mode must be one of {DISTRIBUTED_MODES}, got {mode!r}")
    coordinator_address = coordinator_address or None
    num_processes = _check_optional_int("num_processes", num_processes)
    process_id = _check_optional_int("process_id", process_id)
    explicit = {
        name: value
        for name, value in (
            ("coordinator_address", coordinator_address),
            ("num_processes", num_processes),
            ("process_id", process_id),
        )
        if value is not None
    }
    if mode == "off":
        if explicit:
            raise ValueError(
                f"initialize_distributed: mode 'off' but {sorted(explicit)} given; use mode 'on' (or 'auto') "
                "to start several processes, or drop these arguments"
            )
        return False
    if coordinator_address is not None and (
        ":" not in coordinator_address or not coordinator_address.rsplit(":", 1)[1].isdigit()
    ):
        raise ValueError(f"initialize_distributed: coordinator_address must be 'host:port', got {coordinator_address!r}")
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"initialize_distributed: num_processes must be >= 1, got {num_processes}")
    if process_id is not None and (process_id < 0 or (num_processes is not None and process_id >= num_processes)):
        raise ValueError(
            f"initialize_distributed: process_id must be in [0, num_processes={num_processes}), got {process_id}"
        )
    if mode == "auto" and not explicit:
        cluster = detect_cluster()
        if cluster is None:
            _logger.info("initialize_distributed(auto): no multi-process cluster detected; running one process")
            return False
        _logger.info("initialize_distributed(auto): detected %s", cluster)
    if jax.distributed.is_initialized():
        _logger.info("initialize_distributed: the distributed runtime is already running")
        return True
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        coordinator_bind_address=coordinator_address,
    )
    _logger.info(
        "initialize_distributed: process %d of %d, %d local devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
    )
    return True

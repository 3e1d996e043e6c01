"""``python -m jaxretrieval.train --config configs/<name>.py[:arg] --workdir DIR [--config.key=value]``.

Parses flags and calls :func:`jaxretrieval.trainer.train_and_evaluate`. The config is locked: an
override of a key that does not exist (``--config.optimizer.lr=0.1``) is an error naming the key.
Multi-host: ``--jax_distributed=on`` (or ``auto``: only inside a detected Slurm / Cloud TPU cluster)
starts ``jax.distributed`` before any computation, with ``--coordinator_address``,
``--num_processes`` and ``--process_id`` when the cluster does not provide them. A run stopped by
SIGTERM saves a checkpoint and exits with status 143; starting the same command resumes it.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file: configs/<name>.py[:arg].", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and evaluation outputs.")
_JAX_DISTRIBUTED = flags.DEFINE_enum(
    "jax_distributed", "off", ["off", "on", "auto"], "Start jax.distributed (multi-host) before computing."
)
_COORDINATOR_ADDRESS = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (multi-host).")

PREEMPTED_EXIT_STATUS = 143  # 128 + SIGTERM, what schedulers expect from a job stopped by SIGTERM.


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from jaxretrieval import sharding  # Imported after flag parsing; nothing has touched a device yet.

    sharding.initialize_distributed(
        _JAX_DISTRIBUTED.value,
        coordinator_address=_COORDINATOR_ADDRESS.value,
        num_processes=_NUM_PROCESSES.value,
        process_id=_PROCESS_ID.value,
    )
    # Orbax and grain log every checkpoint operation at INFO; the trainer prints what users need.
    absl_logging.set_verbosity(absl_logging.WARNING)
    from jaxretrieval import trainer

    result = trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    if result.preempted:
        sys.exit(PREEMPTED_EXIT_STATUS)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)

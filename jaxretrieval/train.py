"""``python -m jaxretrieval.train --config configs/<name>.py[:arg] --workdir DIR [--config.key=value]``.

Parses flags and calls :func:`jaxretrieval.training.trainer.train_and_evaluate`. The config is locked:
an override of a key that does not exist (``--config.optimizer.lr=0.1``) is a one-line error naming
the key and the keys that exist, exit status 2. Multi-host: ``--jax_distributed=on`` (or ``auto``:
only inside a detected Slurm / Cloud TPU cluster) starts ``jax.distributed`` before any computation,
with ``--coordinator_address``, ``--num_processes`` and ``--process_id`` when the cluster does not
provide them. A run stopped by SIGTERM saves a checkpoint and exits with status 143; starting the
same command resumes it.
"""
from __future__ import annotations

import sys

from absl import flags

from jaxretrieval import command_line, sharding
from jaxretrieval.training import config as config_lib
from jaxretrieval.training.trainer import train_and_evaluate

FLAGS = flags.FLAGS
PREEMPTED_EXIT_STATUS = 143  # 128 + SIGTERM, what schedulers expect from a job stopped by SIGTERM.



def define_flags() -> None:
    """The command's flags (defined when run, so that importing the module defines none)."""
    config_lib.define_config_flag()
    flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics and evaluation outputs.")
    flags.DEFINE_enum("jax_distributed", "off", ["off", "on", "auto"], "Start jax.distributed (multi-host) first.")
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host).")
    flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host).")
    flags.DEFINE_integer("process_id", None, "This process's index (multi-host).")
    flags.mark_flags_as_required(["config", "workdir"])


def main() -> None:
    sharding.initialize_distributed(
        FLAGS.jax_distributed,
        coordinator_address=FLAGS.coordinator_address,
        num_processes=FLAGS.num_processes,
        process_id=FLAGS.process_id,
    )
    result = train_and_evaluate(FLAGS.config, FLAGS.workdir)
    if result.preempted:
        sys.exit(PREEMPTED_EXIT_STATUS)


if __name__ == "__main__":
    define_flags()
    command_line.run(main)

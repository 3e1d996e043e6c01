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

FLAGS = flags.FLAGS
PREEMPTED_EXIT_STATUS = 143  # 128 + SIGTERM, what schedulers expect from a job stopped by SIGTERM.


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from jaxretrieval import sharding  # Imported after flag parsing; nothing has touched a device yet.

    sharding.initialize_distributed(
        FLAGS.jax_distributed,
        coordinator_address=FLAGS.coordinator_address,
        num_processes=FLAGS.num_processes,
        process_id=FLAGS.process_id,
    )
    # Orbax and grain log every checkpoint operation at INFO; the trainer prints what users need.
    absl_logging.set_verbosity(absl_logging.WARNING)
    from jaxretrieval import trainer

    result = trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    if result.preempted:
        sys.exit(PREEMPTED_EXIT_STATUS)


def define_flags() -> None:
    """The command line's flags (defined only when run as a program, so importing this is side-effect free)."""
    config_flags.DEFINE_config_file("config", None, "Config file: configs/<name>.py[:arg].", lock_config=True)
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and evaluation outputs.")
    flags.DEFINE_enum("jax_distributed", "off", ["off", "on", "auto"], "Start jax.distributed (multi-host) first.")
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host).")
    flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host).")
    flags.DEFINE_integer("process_id", None, "This process's index (multi-host).")
    flags.mark_flags_as_required(["config", "workdir"])


def unknown_override_message(argv: Sequence[str]) -> str | None:
    """A readable error for ``--config.a.b=v`` overrides naming keys the config lacks, else None.

    ml_collections rejects them too (the config is locked), but with a bare ``KeyError: 'b'``
    traceback; this names the whole key and the keys that do exist.
    """
    from jaxretrieval import config_utils

    config_spec = next((arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")), None)
    overrides = [arg[len("--config.") :].split("=", 1)[0] for arg in argv if arg.startswith("--config.")]
    if config_spec is None or not overrides:
        return None
    config = config_utils.load_config(config_spec)
    for dotted_key in overrides:
        node, walked = config, []
        for part in dotted_key.split("."):
            if not hasattr(node, "keys") or part not in node:
                choices = sorted(node.keys()) if hasattr(node, "keys") else []
                where = ".".join(["config", *walked])
                return f"--config.{dotted_key}: {where} has no key {part!r} (keys: {', '.join(choices)})"
            node, walked = node[part], [*walked, part]
    return None


if __name__ == "__main__":
    message = unknown_override_message(sys.argv[1:])
    if message:
        sys.exit(f"error: {message}")
    define_flags()
    app.run(main)

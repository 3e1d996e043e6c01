"""``python -m jaxretrieval.evaluate --workdir DIR [--step N]``: evaluates a run's checkpoint again.

Encodes the run's queries and database (the splits in its ``splits.json``), ranks them with the
method's retrieval rule (:mod:`jaxretrieval.methods`) and writes ``eval/metrics.json`` (mAP@k with
``config.eval.top_k``, 0 = whole database; mAP over the whole database, tie-aware mAP, precision@k and
precision within Hamming radius 2 for hash codes; the step and the query / database sizes),
``eval/pr_curve.png`` and ``eval/retrieval_grid.png`` (queries with their top results, correct ones
framed green). The training run writes the same at its end.
"""
from __future__ import annotations

from absl import flags

from jaxretrieval import command_line
from jaxretrieval import data as data_lib
from jaxretrieval.evaluation import EvaluationSettings, evaluate_run
from jaxretrieval.training.restore import restore_trained_model

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags (defined when run, so that importing the module defines none)."""
    flags.DEFINE_string("workdir", None, "Run directory of a training run (holds config.json and checkpoints/).")
    flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the latest).")
    flags.mark_flag_as_required("workdir")


def main() -> None:
    trained = restore_trained_model(FLAGS.workdir, step=FLAGS.step)
    data = data_lib.build_retrieval_data(
        trained.config.data, splits_file=trained.run.splits_file, load_report_file=trained.run.load_report_file
    )
    evaluate_run(
        trained.method, trained.model, data, mesh=trained.mesh, settings=EvaluationSettings.from_config(trained.config),
        step=trained.step, run=trained.run,
    )


if __name__ == "__main__":
    define_flags()
    command_line.run(main)

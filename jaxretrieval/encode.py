"""``python -m jaxretrieval.encode --workdir DIR --images PATH_OR_FOLDER --output index.npz``.

Encodes images with a trained run's latest checkpoint into a saved search index: the method's
retrieval rule (:meth:`jaxretrieval.methods.Method.new_index`): a Hamming index of sign codes for the
hash methods, a PQ index over the model's codebooks for SPQ, a flat index of the descriptors
(cosine similarity) for mAP_Q. The index file is the index's own versioned format; beside it,
``<output>.json`` records the image paths (id ``i`` is ``paths[i]``), the run directory and the index
kind (:mod:`jaxretrieval.evaluation.image_index`), which ``python -m jaxretrieval.query`` reads. Images
are decoded and resized to the run's image shape; unreadable files are skipped and listed.
"""
from __future__ import annotations

from absl import flags

from jaxretrieval import command_line
from jaxretrieval import data as data_lib
from jaxretrieval.evaluation import Encoder, host_model, save_image_index
from jaxretrieval.training.restore import restore_trained_model

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags (defined when run, so that importing the module defines none)."""
    flags.DEFINE_string("workdir", None, "Run directory of a training run.")
    flags.DEFINE_string("images", None, "An image file or a folder of images (searched recursively).")
    flags.DEFINE_string("output", None, "Index file to write (e.g. index.npz).")
    flags.mark_flags_as_required(["workdir", "images", "output"])


def main() -> None:
    trained = restore_trained_model(FLAGS.workdir)
    loaded = data_lib.load_images(FLAGS.images, trained.summary["image_shape"])
    encoder = Encoder(trained.method, trained.model, trained.mesh, batch_size=trained.config.eval_batch_size)
    index = trained.method.new_index(host_model(trained.model))
    index.add(encoder.encode_images(loaded.images))
    sidecar = save_image_index(index, loaded.paths, FLAGS.output, workdir=FLAGS.workdir, step=trained.step,
                               skipped=loaded.skipped)
    for path, reason in loaded.skipped:
        print(f"skipped {path}: {reason}")
    print(f"encoded {len(loaded.paths)} images into {FLAGS.output} ({index.kind} index; paths in {sidecar})")


if __name__ == "__main__":
    define_flags()
    command_line.run(main)

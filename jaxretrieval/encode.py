"""``python -m jaxretrieval.encode --workdir DIR --images PATH_OR_FOLDER --output index.npz``.

Encodes images with a trained run's latest checkpoint into a saved search index:

- hash methods (``csq``, ``pairwise``, ``triplet``) and ``map_q``: a :class:`jaxretrieval.index.HammingIndex`
  of the sign codes (``>= 0`` -> +1; for mAP_Q these are its binarised descriptors);
- ``spq``: a :class:`jaxretrieval.index.PQIndex` over the model's codebooks (database stored as PQ codes,
  searched with the run's ``config.loss.distance``).

The index file is the index's own versioned format; beside it, ``<output>.json`` records the image
paths (index id ``i`` is ``paths[i]``), the workdir and the index kind, which
``python -m jaxretrieval.query`` reads. Images are decoded and resized to the run's image shape;
unreadable files are skipped and listed, never silently dropped.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Sequence

import numpy as np
from absl import app, flags
from absl import logging as absl_logging

__all__ = [
    "IMAGE_EXTENSIONS",
    "LoadedImages",
    "build_index",
    "load_image_files",
    "load_images",
    "load_index",
    "query_vectors",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, PIL's "L" conversion.


@dataclasses.dataclass(frozen=True)
class LoadedImages:
    """Decoded images ``uint8 [N, H, W, C]``, their paths, and the files that could not be read."""

    images: np.ndarray
    paths: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]


def _image_paths(path: str | os.PathLike) -> list[pathlib.Path]:
    path = pathlib.Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"--images {path}: no such file or directory")
    paths = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise ValueError(f"--images {path}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found")
    return paths


def load_images(path: str | os.PathLike, image_shape: Sequence[int]) -> LoadedImages:
    """One image file or every image under a folder (recursively, sorted), as the model's input shape.

    Args:
      path: an image file or a folder.
      image_shape: ``(H, W, C)`` the run trained on (``C`` 1: converted to grayscale).

    Raises:
      FileNotFoundError / ValueError: no such path, no image in the folder, or none readable.
    """
    return load_image_files(_image_paths(path), image_shape, source=str(path))


def load_image_files(files: Sequence[str | os.PathLike], image_shape: Sequence[int], *, source: str = "") -> LoadedImages:
    """Decodes ``files`` to ``uint8 [N, H, W, C]`` (``image_shape``); unreadable ones are listed in ``skipped``."""
    from jaxretrieval.data import UnreadableExampleError, decode_image_file
    from jaxretrieval.data.sources import resize_image

    height, width, channels = (int(size) for size in image_shape)
    images, paths, skipped = [], [], []
    for file in files:
        try:
            image = decode_image_file(str(file))
        except UnreadableExampleError as error:
            skipped.append((str(file), str(error)))
            continue
        if image.shape[:2] != (height, width):
            image = resize_image(image, height) if height == width else _resize(image, height, width)
        if channels == 1:
            image = np.clip(np.round(image.astype(np.float64) @ _LUMA), 0, 255).astype(np.uint8)[..., None]
        images.append(image)
        paths.append(str(file))
    if not images:
        raise ValueError(f"{source or 'images'}: none of the files could be read: {skipped}")
    return LoadedImages(np.stack(images), tuple(paths), tuple(skipped))


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def _is_pq(trained) -> bool:
    return trained.method.head == "pq"


def build_index(trained, representations: np.ndarray):
    """The index of ``representations`` ``[N, D]`` for the trained run (see the module docstring)."""
    from jaxretrieval import index as index_lib

    if _is_pq(trained):
        codebooks = np.asarray(trained.model.head.codebooks[...])
        pq_index = index_lib.PQIndex(codebooks, distance=trained.config.loss.distance)
        pq_index.add(representations)
        return pq_index
    hamming_index = index_lib.HammingIndex(representations.shape[1])
    hamming_index.add(query_vectors(trained, representations))
    return hamming_index


def query_vectors(trained, representations: np.ndarray) -> np.ndarray:
    """What the run's index is searched with: +-1 codes (Hamming) or continuous descriptors (PQ)."""
    if _is_pq(trained):
        return representations
    return np.where(representations >= 0, 1, -1).astype(np.int8)


def _sidecar(index_path: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(str(index_path) + ".json")


def load_index(index_path: str | os.PathLike):
    """``(index, paths, metadata)`` from a file written by :func:`main`."""
    from jaxretrieval import index as index_lib

    sidecar = _sidecar(index_path)
    if not sidecar.is_file():
        raise FileNotFoundError(f"{sidecar} not found: was {index_path} written by python -m jaxretrieval.encode?")
    metadata = json.loads(sidecar.read_text())
    index_class = index_lib.PQIndex if metadata["kind"] == "pq" else index_lib.HammingIndex
    return index_class.load(index_path), tuple(metadata["paths"]), metadata


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every restore step at INFO.
    from jaxretrieval import evaluate, trainer

    trained = trainer.restore_trained_model(flags.FLAGS.workdir)
    summary = json.loads((pathlib.Path(flags.FLAGS.workdir) / trainer.SUMMARY_FILENAME).read_text())
    loaded = load_images(flags.FLAGS.images, summary["image_shape"])
    encoder = evaluate.Encoder(trained.config, trained.method, trained.eval_graphdef, trained.mesh)
    representations = encoder.encode_images(trained.state, loaded.images)
    index = build_index(trained, representations)
    output = pathlib.Path(flags.FLAGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    index.save(output)
    metadata = {
        "kind": "pq" if _is_pq(trained) else "hamming",
        "workdir": str(pathlib.Path(flags.FLAGS.workdir).absolute()),
        "step": trained.step,
        "paths": list(loaded.paths),
        "skipped": [list(entry) for entry in loaded.skipped],
    }
    _sidecar(output).write_text(json.dumps(metadata, indent=2))
    for path, reason in loaded.skipped:
        print(f"skipped {path}: {reason}")
    print(f"encoded {len(loaded.paths)} images into {output} ({metadata['kind']} index; paths in {_sidecar(output)})")


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "Workdir of a training run.")
    flags.DEFINE_string("images", None, "An image file or a folder of images (searched recursively).")
    flags.DEFINE_string("output", None, "Index file to write (e.g. index.npz).")
    flags.mark_flags_as_required(["workdir", "images", "output"])
    app.run(main)

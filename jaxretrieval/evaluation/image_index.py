"""A search index of image files: the index file plus a JSON sidecar naming the image of each id.

``python -m jaxretrieval.encode`` writes one, ``python -m jaxretrieval.query`` reads it. The index is
the method's retrieval rule (:meth:`jaxretrieval.methods.Method.new_index`) in its own versioned format
(:mod:`jaxretrieval.index`); ``<index>.json`` records the image paths (id ``i`` is ``paths[i]``),
the run directory and step it was encoded with, the index kind and the files that could not be read.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib

from jaxretrieval import index as index_lib
from jaxretrieval.methods import SearchIndex

__all__ = ["ImageIndex", "load_image_index", "save_image_index", "sidecar_path"]


@dataclasses.dataclass(frozen=True)
class ImageIndex:
    """An index of images: ``index`` (ids ``0..n-1``) and ``paths[id]``, plus what encoded it."""

    index: SearchIndex
    paths: tuple[str, ...]
    metadata: dict


def sidecar_path(index_path: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(str(index_path) + ".json")


def save_image_index(index: SearchIndex, paths, index_path: str | os.PathLike, *, workdir: str | os.PathLike,
                     step: int, skipped=()) -> pathlib.Path:
    """Writes ``index`` to ``index_path`` and its sidecar; returns the sidecar's path."""
    if len(paths) != len(index):
        raise ValueError(f"{len(paths)} paths for an index of {len(index)} items")
    index_path = pathlib.Path(index_path)
    index_path.parent.mkdir(parents=True, exist_ok=True)
    index.save(index_path)
    metadata = {
        "kind": index.kind,
        "workdir": str(pathlib.Path(workdir).absolute()),
        "step": int(step),
        "paths": [str(path) for path in paths],
        "skipped": [list(entry) for entry in skipped],
    }
    sidecar = sidecar_path(index_path)
    sidecar.write_text(json.dumps(metadata, indent=2))
    return sidecar


def load_image_index(index_path: str | os.PathLike) -> ImageIndex:
    """Reads an index written by :func:`save_image_index` (any kind)."""
    sidecar = sidecar_path(index_path)
    if not sidecar.is_file():
        raise FileNotFoundError(f"{sidecar} not found: was {index_path} written by python -m jaxretrieval.encode?")
    metadata = json.loads(sidecar.read_text())
    index = index_lib.load_index(index_path)
    if len(metadata.get("paths", ())) != len(index):
        raise ValueError(f"{sidecar} names {len(metadata.get('paths', ()))} images for an index of {len(index)}")
    return ImageIndex(index, tuple(metadata["paths"]), metadata)

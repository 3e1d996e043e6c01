"""Loose image files (a user's database or queries) decoded to a model's input shape.

Used by ``python -m jaxretrieval.encode`` / ``query`` and by anything that searches a user's own
images: files are decoded with the data pipeline's decoder, resized to the run's image shape and
converted to grayscale where the model takes one channel. Unreadable files are listed in
:attr:`LoadedImages.skipped`, never silently dropped.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

from jaxretrieval.data.report import UnreadableExampleError
from jaxretrieval.data.sources import decode_image_file, resize_image

__all__ = ["IMAGE_EXTENSIONS", "LoadedImages", "image_paths", "load_image_files", "load_images"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, PIL's "L" conversion.


@dataclasses.dataclass(frozen=True)
class LoadedImages:
    """Decoded images ``uint8 [N, H, W, C]``, their paths, and the files that could not be read."""

    images: np.ndarray
    paths: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]


def image_paths(path: str | os.PathLike) -> list[pathlib.Path]:
    """``[path]`` for a file; every image file under a folder (recursively, sorted) for a folder."""
    path = pathlib.Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or directory")
    paths = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise ValueError(f"{path}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found")
    return paths


def load_images(path: str | os.PathLike, image_shape: Sequence[int]) -> LoadedImages:
    """One image file or every image under a folder (recursively, sorted), as the model's input shape.

    Args:
      path: an image file or a folder.
      image_shape: ``(H, W, C)`` the run trained on (``C`` 1: converted to grayscale).

    Raises:
      FileNotFoundError / ValueError: no such path, no image in the folder, or none readable.
    """
    return load_image_files(image_paths(path), image_shape, source=str(path))


def load_image_files(files: Sequence[str | os.PathLike], image_shape: Sequence[int], *, source: str = "") -> LoadedImages:
    """Decodes ``files`` to ``uint8 [N, H, W, C]`` (``image_shape``); unreadable ones are listed in ``skipped``."""
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
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))

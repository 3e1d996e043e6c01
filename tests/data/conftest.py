"""Tiny generated image folders and list files for the data tests."""
import io

import numpy as np
import pytest
from PIL import Image


def write_image(path, pixel_value: int, size=(6, 5), image_format=None) -> None:
    """A solid ``size`` = (width, height) RGB image whose red channel is ``pixel_value``."""
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[..., 0] = pixel_value
    image[..., 1] = np.arange(size[0], dtype=np.uint8)[None, :] * 10
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format=image_format)


def truncated_jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()[:300]


@pytest.fixture(name="write_image")
def write_image_fixture():
    return write_image


@pytest.fixture(name="truncated_jpeg")
def truncated_jpeg_fixture():
    return truncated_jpeg_bytes()


@pytest.fixture
def image_folder(tmp_path):
    """``root/{train,test}/{cat,dog}/k.png``: 3 + 3 train and 2 + 2 test images; pixel value = 10 * k."""
    root = tmp_path / "images"
    for split, count in (("train", 3), ("test", 2)):
        for class_name in ("dog", "cat"):  # created unsorted: classes must come out sorted
            for k in range(count):
                write_image(root / split / class_name / f"{k}.png", 10 * k + (100 if class_name == "dog" else 0))
    return root

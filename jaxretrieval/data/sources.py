"""Random-access data sources for retrieval: image folders, hashing list files, TFDS, arrays, digits.

Every source is a grain ``RandomAccessDataSource`` (``__len__`` and ``__getitem__``) whose examples are
``{"image": uint8 [H, W, C], "label": float32 [num_classes] multi-hot, "index": int64}`` and which also
exposes, without decoding any image:

- ``labels``: ``uint8 [len, num_classes]`` multi-hot matrix (the protocols sample from it),
- ``class_names``: tuple of str, ``image_shape``: ``(H, W, C)``,
- ``report``: the :class:`~jaxretrieval.data.report.LoadReport` unreadable images are recorded in.

An image that cannot be decoded makes ``__getitem__`` raise
:class:`~jaxretrieval.data.report.UnreadableExampleError` (with the path and the reason); the pipeline
catches it, records it and carries on, so bad files neither crash a run nor vanish.
"""
from __future__ import annotations

import concurrent.futures
import functools
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from jaxretrieval.data.report import LoadReport, UnreadableExampleError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def _example(image: np.ndarray, label_row: np.ndarray, index: int) -> dict:
    return {"image": image, "label": label_row.astype(np.float32), "index": np.int64(index)}


def resize_image(image: np.ndarray, image_size: int) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize of ``uint8 [H, W, C]`` to ``[size, size, C]``."""
    if image.shape[0] == image_size and image.shape[1] == image_size:
        return image
    channels = image.shape[2]
    pil_image = Image.fromarray(image[..., 0] if channels == 1 else image)
    resized = np.asarray(pil_image.resize((image_size, image_size), Image.BILINEAR))
    return resized[..., None] if channels == 1 else resized


def decode_image_file(path: str, *, image_size: int = 0) -> np.ndarray:
    """Decodes an image file to ``uint8 [H, W, 3]`` RGB, resized to ``image_size`` squared if > 0.

    Raises:
      UnreadableExampleError: the file is missing, not an image, truncated or otherwise undecodable.
    """
    try:
        with Image.open(path) as pil_image:
            if image_size:
                # JPEG only: decode at a reduced scale close to the target size (much faster for big photos).
                pil_image.draft("RGB", (image_size, image_size))
            image = np.asarray(pil_image.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        # PIL signals corrupt data with OSError (truncated, unidentified), ValueError or SyntaxError.
        raise UnreadableExampleError(path, f"{type(error).__name__}: {error}") from None
    return resize_image(image, image_size) if image_size else image


class _ImageFileSource:
    """Images decoded lazily from files, with labels known up front."""

    def __init__(
        self,
        paths: Sequence[str],
        labels: np.ndarray,
        class_names: Sequence[str],
        *,
        image_size: int,
        report: LoadReport | None,
    ):
        self.paths = tuple(paths)
        self.labels = labels
        self.class_names = tuple(class_names)
        self.image_size = int(image_size)
        self.report = report if report is not None else LoadReport()
        self.image_shape = self._infer_image_shape()

    def _infer_image_shape(self) -> tuple[int, int, int]:
        if self.image_size:
            return (self.image_size, self.image_size, 3)
        # Native size: the first readable image sets it; others of another size count as unreadable.
        for path in self.paths:
            try:
                return tuple(decode_image_file(path).shape)
            except UnreadableExampleError as error:
                self.report.add(error.path, error.reason)
        raise ValueError(f"none of the {len(self.paths)} image files could be read (first: {self.paths[0]})")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        image = decode_image_file(path, image_size=self.image_size)
        if image.shape != self.image_shape:
            raise UnreadableExampleError(
                path,
                f"size {image.shape} differs from the data set's {self.image_shape} "
                "(set data.image_size to resize every image)",
            )
        return _example(image, self.labels[index], index)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {len(self.class_names)} classes)"


class ImageFolderSource(_ImageFileSource):
    """Images in ``root/<split>/<class>/<file>`` (jpg, jpeg, png); classes sorted alphabetically.

    Listing uses ``os.scandir`` (60,000 CIFAR-10 files in well under a second); images are decoded on
    access. Files are ordered by class, then by file name, so indices are stable across machines.

    Raises:
      FileNotFoundError: ``root`` or ``root/split`` does not exist (the message names the path).
      ValueError: no class folders, or a class folder without image files (named).
    """

    def __init__(self, root: str | os.PathLike, split: str, *, image_size: int = 0, report: LoadReport | None = None):
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"image folder root {root!r} does not exist or is not a directory")
        split_dir = os.path.join(root, split)
        if not os.path.isdir(split_dir):
            available = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
            raise FileNotFoundError(f"split folder {split_dir!r} does not exist (found splits: {available})")
        class_names = sorted(
            entry.name for entry in os.scandir(split_dir) if entry.is_dir() and not entry.name.startswith(".")
        )
        if not class_names:
            raise ValueError(f"{split_dir!r} holds no class folders (expected {split_dir}/<class>/<image>)")
        paths, class_ids = [], []
        for class_id, class_name in enumerate(class_names):
            class_dir = os.path.join(split_dir, class_name)
            files = sorted(
                entry.path
                for entry in os.scandir(class_dir)
                if entry.name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file()
            )
            if not files:
                raise ValueError(f"class folder {class_dir!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            paths.extend(files)
            class_ids.extend([class_id] * len(files))
        labels = np.eye(len(class_names), dtype=np.uint8)[np.asarray(class_ids)]
        super().__init__(paths, labels, class_names, image_size=image_size, report=report)


class ListFileSource(_ImageFileSource):
    """A list file in the DeepHash-pytorch / CSQ format: ``relative/path.jpg 0 1 0 ... 1`` per line.

    Used for NUS-WIDE, MS-COCO, ImageNet-100 and MIRFLICKR-25K. Paths are relative to ``root`` (absolute
    paths are kept). Blank lines are ignored.

    Raises:
      FileNotFoundError: the list file does not exist.
      ValueError: a malformed line (``file:line``, what was expected and what was found), or a label
        vector whose width differs from ``num_classes`` (or from the first line when not given).
    """

    def __init__(
        self,
        list_path: str | os.PathLike,
        root: str | os.PathLike,
        *,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        image_size: int = 0,
        report: LoadReport | None = None,
    ):
        list_path, root = os.fspath(list_path), os.fspath(root)
        if not os.path.isfile(list_path):
            raise FileNotFoundError(f"list file {list_path!r} does not exist")
        if class_names is not None:
            num_classes = len(class_names)
        width_origin = "num_classes" if num_classes is not None else None
        paths, rows = [], []
        with open(list_path, encoding="utf-8") as list_file:
            for line_number, line in enumerate(list_file, start=1):
                fields = line.split()
                if not fields:
                    continue
                where = f"{list_path}:{line_number}"
                if len(fields) < 2:
                    raise ValueError(
                        f"{where}: expected '<relative image path> <0/1 label> ...', found only {line.strip()!r}"
                    )
                label_fields = fields[1:]
                bad = [field for field in label_fields if field not in ("0", "1")]
                if bad:
                    raise ValueError(
                        f"{where}: expected a 0/1 label vector after the path {fields[0]!r}, found {bad[0]!r} "
                        "(paths containing spaces are not supported by this format)"
                    )
                if num_classes is None:
                    num_classes, width_origin = len(label_fields), f"line {line_number}"
                elif len(label_fields) != num_classes:
                    raise ValueError(
                        f"{where}: label vector has {len(label_fields)} entries, expected {num_classes} "
                        f"(as set by {width_origin})"
                    )
                paths.append(os.path.join(root, fields[0]))
                rows.append([field == "1" for field in label_fields])
        if not paths:
            raise ValueError(f"list file {list_path!r} holds no entries")
        labels = np.asarray(rows, dtype=np.uint8)
        if class_names is None:
            class_names = tuple(f"class_{class_id}" for class_id in range(num_classes))
        super().__init__(paths, labels, class_names, image_size=image_size, report=report)


def labels_to_multi_hot(labels: np.ndarray, num_classes: int | None = None, *, name: str = "labels") -> np.ndarray:
    """Integer class ids ``[N]`` or a 0/1 matrix ``[N, C]`` -> ``uint8 [N, C]`` multi-hot."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"{name}: class ids must be integers, got dtype {labels.dtype}")
        num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name}: class ids must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
        return np.eye(num_classes, dtype=np.uint8)[labels]
    if labels.ndim == 2:
        if num_classes is not None and labels.shape[1] != num_classes:
            raise ValueError(f"{name}: multi-hot width {labels.shape[1]} differs from num_classes={num_classes}")
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"{name}: a multi-hot label matrix must hold only 0 and 1")
        return labels.astype(np.uint8)
    raise ValueError(f"{name}: expected class ids [N] or multi-hot [N, C], got shape {labels.shape}")


class ArraySource:
    """In-memory images ``uint8 [N, H, W, C]`` (or ``[N, H, W]``) with class ids or multi-hot labels.

    ``unreadable`` maps indices whose image is a placeholder to ``(path, reason)`` (set by
    :func:`cache_in_memory`); reading them raises :class:`UnreadableExampleError` like the file sources.

    >>> source = ArraySource(np.zeros((3, 2, 2), np.uint8), np.array([0, 1, 1]))
    >>> source.image_shape, source.labels.shape, source[2]["label"]
    ((2, 2, 1), (3, 2), array([0., 1.], dtype=float32))
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        image_size: int = 0,
        paths: Sequence[str] | None = None,
        unreadable: dict[int, tuple[str, str]] | None = None,
        report: LoadReport | None = None,
    ):
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise TypeError(f"images must be uint8 [N, H, W, C], got dtype {images.dtype}")
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4:
            raise ValueError(f"images must be [N, H, W, C] or [N, H, W], got shape {images.shape}")
        if class_names is not None:
            num_classes = len(class_names)
        self.labels = labels_to_multi_hot(labels, num_classes)
        if len(self.labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(self.labels)} labels")
        self.images = images
        self.class_names = tuple(class_names or (f"class_{i}" for i in range(self.labels.shape[1])))
        self.image_size = int(image_size)
        size = self.image_size
        self.image_shape = (size, size, images.shape[3]) if size else tuple(images.shape[1:])
        self.paths = None if paths is None else tuple(paths)
        self.unreadable = dict(unreadable or {})
        self.report = report if report is not None else LoadReport()

    @classmethod
    def from_npz(cls, path: str | os.PathLike, **kwargs) -> tuple[ArraySource, np.ndarray | None]:
        """Loads ``images`` and ``labels`` (and the optional ``split`` array, returned beside the source)."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"array file {path!r} does not exist")
        with np.load(path, allow_pickle=False) as arrays:
            missing = {"images", "labels"} - set(arrays.files)
            if missing:
                raise ValueError(f"{path}: missing arrays {sorted(missing)} (has {arrays.files})")
            split = arrays["split"] if "split" in arrays.files else None
            return cls(arrays["images"], arrays["labels"], **kwargs), split

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        if index in self.unreadable:
            raise UnreadableExampleError(*self.unreadable[index])
        image = self.images[index]
        if self.image_size:
            image = resize_image(image, self.image_size)
        return _example(image, self.labels[index], index)

    def __repr__(self) -> str:
        return f"ArraySource({len(self)} images of {self.image_shape}, {len(self.class_names)} classes)"


def load_digits_source(*, image_size: int = 0) -> ArraySource:
    """scikit-learn's bundled 1,797 real 8x8 handwritten digits (offline): ``uint8 [8, 8, 1]``, 10 classes.

    The 0..16 intensities are scaled to 0..255; ``image_size`` > 0 resizes on reading.

    >>> digits = load_digits_source()
    >>> len(digits), digits.image_shape, int(digits.images.max())
    (1797, (8, 8, 1), 255)
    """
    from sklearn.datasets import load_digits  # scikit-learn takes a second to import: only when asked for

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return ArraySource(images, digits.target, class_names=[str(digit) for digit in range(10)], image_size=image_size)


class TfdsSource:
    """A TFDS data set read through ``tfds.data_source`` (ArrayRecord files; no TensorFlow needed).

    Preparing a catalogue data set (``tfds build NAME --file_format=array_record``) needs TensorFlow
    and, for most, the network; reading a prepared one does not. Integer ``ClassLabel`` labels become
    one-hot, ``Sequence(ClassLabel)`` multi-hot. ``labels`` is computed on first use by reading every
    record once (TFDS stores labels beside the images).
    """

    def __init__(
        self,
        name: str,
        split: str,
        *,
        data_dir: str | None = None,
        image_size: int = 0,
        image_key: str = "image",
        label_key: str = "label",
        report: LoadReport | None = None,
    ):
        import tensorflow_datasets as tfds

        try:
            self._records = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
        except Exception as error:  # tfds raises several unrelated types for "not prepared".
            raise FileNotFoundError(
                f"TFDS data set {name!r} split {split!r} is not prepared as ArrayRecord in data_dir={data_dir!r}; "
                f"prepare it once where TensorFlow is installed: "
                f"`tfds build {name} --file_format=array_record --data_dir=DIR` ({type(error).__name__}: {error})"
            ) from error
        features = self._records.dataset_info.features
        if image_key not in features or label_key not in features:
            raise ValueError(f"TFDS {name!r} features {list(features.keys())} lack {image_key!r} or {label_key!r}")
        label_feature = features[label_key]
        class_feature = getattr(label_feature, "feature", label_feature)  # Sequence(ClassLabel) -> ClassLabel
        self.multi_label = class_feature is not label_feature
        num_classes = getattr(class_feature, "num_classes", None)
        if num_classes is None:
            raise ValueError(f"TFDS {name!r} feature {label_key!r} is not a ClassLabel: {label_feature}")
        self.class_names = tuple(class_feature.names)
        self.image_key, self.label_key = image_key, label_key
        self.image_size = int(image_size)
        image_feature_shape = tuple(features[image_key].shape)
        channels = image_feature_shape[-1] or 3
        if self.image_size:
            self.image_shape = (self.image_size, self.image_size, channels)
        elif None in image_feature_shape[:2]:
            raise ValueError(f"TFDS {name!r} images have no fixed size {image_feature_shape}: set data.image_size")
        else:
            self.image_shape = image_feature_shape
        self.report = report if report is not None else LoadReport()
        self.description = f"tfds:{name}/{split}"
        self._labels: np.ndarray | None = None

    def _label_row(self, label) -> np.ndarray:
        row = np.zeros(len(self.class_names), np.uint8)
        row[np.asarray(label, dtype=np.int64)] = 1
        return row

    @property
    def labels(self) -> np.ndarray:
        if self._labels is None:
            self._labels = np.stack([self._label_row(self._records[i][self.label_key]) for i in range(len(self))])
        return self._labels

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict:
        record = self._records[index]
        image = np.asarray(record[self.image_key], dtype=np.uint8)
        if self.image_size:
            image = resize_image(image, self.image_size)
        return _example(image, self._label_row(record[self.label_key]), index)

    def __repr__(self) -> str:
        return f"TfdsSource({self.description}, {len(self)} examples)"


class ConcatSource:
    """Several sources with the same classes and image shape, indexed one after the other.

    ``partition[i]`` is the position (in ``parts``) of the part example ``i`` comes from; the
    retrieval protocols use it to tell train from test. The ``index`` of an example is its index here.
    """

    def __init__(self, parts: Sequence):
        if not parts:
            raise ValueError("ConcatSource needs at least one part")
        first = parts[0]
        for part in parts[1:]:
            if tuple(part.class_names) != tuple(first.class_names):
                raise ValueError(
                    f"class names differ between parts: {part!r} has {list(part.class_names)}, "
                    f"{first!r} has {list(first.class_names)}"
                )
            if tuple(part.image_shape) != tuple(first.image_shape):
                raise ValueError(f"image shapes differ: {part!r} {part.image_shape} vs {first!r} {first.image_shape}")
        self.parts = tuple(parts)
        self.offsets = np.cumsum([0] + [len(part) for part in parts])
        self.partition = np.repeat(np.arange(len(parts), dtype=np.int8), np.diff(self.offsets))
        self.class_names = tuple(first.class_names)
        self.image_shape = tuple(first.image_shape)
        self.report = first.report
        part_paths = [getattr(part, "paths", None) for part in parts]
        self.paths = None if any(paths is None for paths in part_paths) else sum(part_paths, ())

    @functools.cached_property
    def labels(self) -> np.ndarray:
        # On demand: a TFDS part reads every record to learn its labels.
        return np.concatenate([part.labels for part in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples")
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        example = self.parts[part][int(index - self.offsets[part])]
        example["index"] = np.int64(index)
        return example

    def __repr__(self) -> str:
        return f"ConcatSource({', '.join(map(repr, self.parts))})"


def cache_in_memory(source, *, num_threads: int | None = None) -> ArraySource:
    """Decodes every image of ``source`` once into one ``uint8`` array (threads; PIL releases the GIL).

    Worth it whenever the decoded data fit in memory (CIFAR-10: 184 MB, decoded in seconds): reading
    afterwards costs a copy, not a JPEG decode. Unreadable images keep a zero placeholder, are recorded
    in the source's report now, and still raise :class:`UnreadableExampleError` when read.
    """
    num_examples = len(source)
    images = np.zeros((num_examples, *source.image_shape), np.uint8)
    # Labels come with the decoded examples: one pass over the data, also for TFDS.
    labels = np.zeros((num_examples, len(source.class_names)), np.uint8)
    unreadable: dict[int, tuple[str, str]] = {}
    report = getattr(source, "report", None)
    report = LoadReport() if report is None else report

    def decode_range(start: int) -> None:
        for index in range(start, min(start + 256, num_examples)):
            try:
                example = source[index]
                images[index], labels[index] = example["image"], example["label"]
            except UnreadableExampleError as error:
                unreadable[index] = (error.path, error.reason)
                report.add(error.path, error.reason)

    num_threads = num_threads or min(8, (os.cpu_count() or 1) + 1)
    with concurrent.futures.ThreadPoolExecutor(num_threads) as executor:
        list(executor.map(decode_range, range(0, num_examples, 256)))
    if num_examples and len(unreadable) == num_examples:
        raise ValueError(f"none of the {num_examples} images of {source!r} could be read; first: {unreadable[0]}")
    if unreadable:
        labels[list(unreadable)] = source.labels[list(unreadable)]
    return ArraySource(
        images,
        labels,
        class_names=source.class_names,
        paths=getattr(source, "paths", None),
        unreadable=unreadable,
        report=report,
    )

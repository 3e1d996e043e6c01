"""The data pipeline (training layer): sources, retrieval protocols, grain batches, on-device augmentation.

Typical use::

    data = build_retrieval_data(config.data, splits_file=run.splits_file, load_report_file=run.load_report_file)
    batches = train_batches(data.train, global_batch_size=256, seed=0)
    for batch in eval_batches(data.query, global_batch_size=256): ...
    views = augment.hashing_train_view(key, batch_images)   # on device, under jit
"""
from jaxretrieval.data import augment
from jaxretrieval.data.image_files import LoadedImages, load_image_files, load_images
from jaxretrieval.data.pipeline import Subset, eval_batches, train_batches
from jaxretrieval.data.protocols import PROTOCOLS, Splits, load_or_make_splits, make_splits
from jaxretrieval.data.report import LoadReport, SkippedFile, UnreadableExampleError
from jaxretrieval.data.retrieval_data import SOURCES, RetrievalData, SourceBuilder, build_retrieval_data, register_source
from jaxretrieval.data.sources import (
    ArraySource,
    ConcatSource,
    ImageFolderSource,
    ListFileSource,
    TfdsSource,
    cache_in_memory,
    decode_image_file,
    load_digits_source,
)

__all__ = [
    "ArraySource",
    "ConcatSource",
    "ImageFolderSource",
    "ListFileSource",
    "LoadReport",
    "LoadedImages",
    "PROTOCOLS",
    "RetrievalData",
    "SOURCES",
    "SourceBuilder",
    "SkippedFile",
    "Splits",
    "Subset",
    "TfdsSource",
    "UnreadableExampleError",
    "augment",
    "build_retrieval_data",
    "cache_in_memory",
    "decode_image_file",
    "eval_batches",
    "load_digits_source",
    "load_image_files",
    "load_images",
    "load_or_make_splits",
    "make_splits",
    "register_source",
    "train_batches",
]

"""Search indexes over hash codes, PQ codes and float vectors: add, search, range search, remove, save, load.

:class:`HammingIndex` holds packed binary codes, :class:`PQIndex` product-quantization codes with
their codebooks, :class:`FlatIndex` real-valued vectors (inner product or cosine similarity). All
search exactly with :mod:`jaxretrieval.search` (Hamming and PQ: distances ascending; flat:
similarities descending; ties by insertion order, which is ascending id when ids are the defaults)
and return the user's ids. :func:`load_index` reads any of them, by the kind its file records.

File format (version 1): one ``.npz`` archive (``numpy.savez``, read with ``allow_pickle=False``,
so no pickle anywhere) holding the arrays plus ``header``, a ``uint8`` array of UTF-8 JSON::

    {"format": "jaxretrieval.index", "format_version": 1, "kind": "hamming" | "pq" | "flat",
     "count": n, "next_id": int, "checksum": "sha256:<hex>",
     # hamming: "num_bits": b, "bit_order": "big", "word_type": "uint8"
     # pq: "num_books": M, "num_words": K, "word_dim": L, "distance": "spq" | "squared_l2"
     # flat: "dimension": d, "metric": "inner_product" | "cosine"}

Arrays: ``codes`` (hamming: ``[n, ceil(b / 8)]`` uint8 packed as :func:`jaxretrieval.codes.pack_codes`,
most significant bit first; pq: ``[n, M]`` int32; flat: the ``[n, d]`` float32 vectors as added),
``ids`` ``[n]`` int64 and, for pq,
``codebooks`` ``[M, K, L]`` float32. The checksum is the SHA-256 over, for each array in name order,
its name, dtype, shape and bytes. Saving writes a temporary file in the target's directory and
renames it over the target (``os.replace``), so a crash never leaves a half-written index. Loading a
truncated, corrupted, wrong-version or wrong-kind file raises :class:`IndexFormatError` naming the
path and what was wrong.

faiss (optional) interop: :meth:`HammingIndex.to_faiss` / :meth:`HammingIndex.from_faiss` use
``IndexBinaryFlat`` (wrapped in ``IndexBinaryIDMap`` when ids are not ``0..n-1``),
:meth:`PQIndex.to_faiss` / :meth:`PQIndex.from_faiss` ``IndexPQ`` with 8-bit codes (``K = 256``;
``IndexIDMap`` likewise). faiss ranks PQ by squared distance, i.e. ``distance="squared_l2"``.
:meth:`FlatIndex.to_faiss` gives an ``IndexFlatIP`` (cosine: over the normalised vectors).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile

import jax.numpy as jnp
import numpy as np

from jaxretrieval import codes as codes_lib
from jaxretrieval import search
from jaxretrieval._stable import unit_rows
from jaxretrieval.search._float import check_vectors
from jaxretrieval.search._pq import check_codebooks, check_distance, check_pq_codes

__all__ = ["FORMAT_VERSION", "FlatIndex", "HammingIndex", "IndexFormatError", "PQIndex", "load_index"]

FORMAT_VERSION = 1
_FORMAT_NAME = "jaxretrieval.index"


class IndexFormatError(ValueError):
    """An index file cannot be read: truncated, corrupted, wrong version or wrong kind."""


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return "sha256:" + digest.hexdigest()


def _write(path, header: dict, arrays: dict[str, np.ndarray]) -> None:
    path = os.fspath(path)
    header = dict(header, format=_FORMAT_NAME, format_version=FORMAT_VERSION,
                  checksum=_checksum(arrays))
    encoded = np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8)
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-index-", suffix=".npz")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, header=encoded, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _read(path, kind: str | None) -> tuple[dict, dict[str, np.ndarray]]:
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as error:
        raise IndexFormatError(
            f"{path}: not a readable index archive (truncated or corrupted?): {error}"
        ) from error
    if "header" not in arrays:
        raise IndexFormatError(f"{path}: no 'header' entry; not a jaxretrieval index file")
    try:
        header = json.loads(arrays.pop("header").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IndexFormatError(f"{path}: header is not valid JSON: {error}") from error
    if header.get("format") != _FORMAT_NAME:
        raise IndexFormatError(f"{path}: format {header.get('format')!r}, expected {_FORMAT_NAME!r}")
    if header.get("format_version") != FORMAT_VERSION:
        raise IndexFormatError(
            f"{path}: format version {header.get('format_version')!r}; this version of "
            f"jaxretrieval reads version {FORMAT_VERSION}"
        )
    if header.get("kind") != kind and (kind is not None or header.get("kind") not in _INDEX_KINDS):
        expected = repr(kind) if kind is not None else f"one of {sorted(_INDEX_KINDS)}"
        raise IndexFormatError(f"{path}: holds a {header.get('kind')!r} index, not {expected}")
    if _checksum(arrays) != header.get("checksum"):
        raise IndexFormatError(f"{path}: checksum mismatch; the arrays are corrupted")
    if arrays["codes"].shape[0] != header.get("count") or arrays["ids"].shape != (
        header.get("count"),
    ):
        raise IndexFormatError(
            f"{path}: header count {header.get('count')} disagrees with codes "
            f"{arrays['codes'].shape} / ids {arrays['ids'].shape}"
        )
    return header, arrays


class _Index:
    """Ids, add/remove bookkeeping and the cached search layout shared by both index kinds."""

    kind: str

    def __init__(self, num_columns: int, code_dtype):
        self._codes = np.zeros((0, num_columns), code_dtype)
        self._ids = np.zeros((0,), np.int64)
        self._next_id = 0
        self._prepared = None

    def __len__(self) -> int:
        return self._ids.shape[0]

    @property
    def ids(self) -> np.ndarray:
        """``[n]`` int64 ids in insertion order (the tie order of searches)."""
        return self._ids.copy()

    def _append(self, codes: np.ndarray, ids) -> np.ndarray:
        count = codes.shape[0]
        if ids is None:
            ids = np.arange(self._next_id, self._next_id + count, dtype=np.int64)
        else:
            ids = np.asarray(ids)
            if ids.shape != (count,) or not np.issubdtype(ids.dtype, np.integer):
                raise ValueError(
                    f"ids must be {count} integers (one per code), got dtype {ids.dtype} "
                    f"shape {ids.shape}"
                )
            ids = ids.astype(np.int64)
            if np.unique(ids).shape[0] != count:
                raise ValueError("ids contain duplicates")
            if (ids < 0).any():
                raise ValueError("ids must be >= 0 (-1 marks a missing result)")
            clash = np.intersect1d(ids, self._ids)
            if clash.size:
                raise ValueError(f"ids already in the index: {clash[:10].tolist()}")
        self._codes = np.concatenate([self._codes, codes])
        self._ids = np.concatenate([self._ids, ids])
        if count:
            self._next_id = max(self._next_id, int(ids.max()) + 1)
        self._prepared = None
        return ids

    def remove(self, ids) -> int:
        """Removes the given ids; returns how many were removed. Unknown ids are an error."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        missing = np.setdiff1d(ids, self._ids)
        if missing.size:
            raise ValueError(f"ids not in the index: {missing[:10].tolist()}")
        keep = ~np.isin(self._ids, ids)
        self._codes, self._ids = self._codes[keep], self._ids[keep]
        self._prepared = None
        return int((~keep).sum())

    def _check_not_empty(self):
        if len(self) == 0:
            raise ValueError(f"the {type(self).__name__} is empty; add codes before searching")

    def _to_ids(self, positions) -> np.ndarray:
        positions = np.asarray(positions)
        return np.where(positions >= 0, self._ids[np.maximum(positions, 0)], -1)


class HammingIndex(_Index):
    """Exact Hamming search over binary codes; see the module docstring for the file format.

    Example:
      >>> index = HammingIndex(num_bits=4)
      >>> index.add(np.array([[1, 1, 1, 1], [-1, 1, 1, 1], [1, 1, 1, 1]]), ids=[10, 11, 12])
      >>> distances, ids = index.search(np.array([[1, 1, 1, -1]]), k=2)
      >>> distances, ids
      (array([[1, 1]], dtype=int32), array([[10, 12]]))
      >>> len(index), index.remove([10]), len(index)
      (3, 1, 2)
    """

    kind = "hamming"

    def __init__(self, num_bits: int):
        if isinstance(num_bits, bool) or not isinstance(num_bits, (int, np.integer)) or num_bits <= 0:
            raise ValueError(f"num_bits must be a positive int, got {num_bits!r}")
        self.num_bits = int(num_bits)
        self.num_bytes = -(-self.num_bits // 8)
        super().__init__(self.num_bytes, np.uint8)

    def _pack(self, codes, name: str) -> np.ndarray:
        """Accepts packed ``uint8 [n, num_bytes]`` or signed/real/bool ``[n, num_bits]`` codes."""
        codes = np.asarray(codes)
        if codes.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got shape {codes.shape}")
        if codes.dtype == np.uint8 and codes.shape[1] == self.num_bytes and (
            codes.shape[1] != self.num_bits
        ):
            return codes
        if codes.shape[1] != self.num_bits:
            raise ValueError(
                f"{name} must be [n, {self.num_bits}] codes or [n, {self.num_bytes}] packed uint8, "
                f"got dtype {codes.dtype} shape {codes.shape}"
            )
        return np.asarray(codes_lib.pack_codes(codes_lib.code_bits(codes, name=name)))

    def add(self, codes, ids=None) -> None:
        """Appends codes (``+-1``/real ``[n, num_bits]`` or packed ``uint8 [n, num_bytes]``).

        ``ids`` default to consecutive integers continuing after the largest id so far.
        """
        self._append(self._pack(codes, "codes"), ids)

    def _layout(self):
        if self._prepared is None:
            self._prepared = search.prepare_hamming_database(jnp.asarray(self._codes))
        return self._prepared

    def search(self, queries, k: int, *, num_threads: int | None = None):
        """``(distances [q, k] int32 ascending, ids [q, k] int64)``; ``-1`` / ``num_bits + 1`` pad.

        ``num_threads``: host threads (default one per core on the CPU), as
        :func:`jaxretrieval.search.hamming_knn`.
        """
        self._check_not_empty()
        queries = self._pack(queries, "queries")
        distances, positions = search.hamming_knn_prepared(
            queries, self._layout(), len(self), k, num_bits=self.num_bits, num_threads=num_threads
        )
        return np.asarray(distances), self._to_ids(positions)

    def range_search(self, queries, radius: int):
        """``(lims, distances, ids)`` of all items within distance ``<= radius`` (CSR, see
        :func:`jaxretrieval.search.hamming_range_search`)."""
        self._check_not_empty()
        lims, distances, positions = search.hamming_range_search(
            self._pack(queries, "queries"), self._codes, radius
        )
        return lims, distances, self._to_ids(positions)

    def save(self, path) -> None:
        """Writes the index atomically (see the module docstring for the format)."""
        header = {"kind": self.kind, "count": len(self), "next_id": self._next_id,
                  "num_bits": self.num_bits, "bit_order": "big", "word_type": "uint8"}
        _write(path, header, {"codes": self._codes, "ids": self._ids})

    @classmethod
    def load(cls, path) -> "HammingIndex":
        """Reads an index written by :meth:`save`; :class:`IndexFormatError` if it is not one."""
        return cls._from_file(path, *_read(path, cls.kind))

    @classmethod
    def _from_file(cls, path, header: dict, arrays: dict) -> "HammingIndex":
        index = cls(header["num_bits"])
        codes = arrays["codes"]
        if codes.dtype != np.uint8 or codes.shape[1:] != (index.num_bytes,) or header.get(
            "bit_order"
        ) != "big":
            raise IndexFormatError(
                f"{path}: codes {codes.dtype} {codes.shape} / bit order "
                f"{header.get('bit_order')!r} do not match {header['num_bits']} bits, big-endian"
            )
        index._codes, index._ids, index._next_id = codes, arrays["ids"], header["next_id"]
        return index

    def to_faiss(self):
        """A faiss ``IndexBinaryFlat`` (``IndexBinaryIDMap`` over it for custom ids)."""
        import faiss

        if self.num_bits % 8:
            raise ValueError(f"faiss binary indexes need num_bits % 8 == 0, got {self.num_bits}")
        flat = faiss.IndexBinaryFlat(self.num_bits)
        if np.array_equal(self._ids, np.arange(len(self))):
            flat.add(self._codes)
            return flat
        mapped = faiss.IndexBinaryIDMap(flat)
        mapped.add_with_ids(self._codes, self._ids)
        return mapped

    @classmethod
    def from_faiss(cls, faiss_index) -> "HammingIndex":
        """Imports a faiss ``IndexBinaryFlat`` or ``IndexBinaryIDMap`` over one."""
        import faiss

        ids = None
        if isinstance(faiss_index, faiss.IndexBinaryIDMap):
            ids = faiss.vector_to_array(faiss_index.id_map)
            faiss_index = faiss.downcast_IndexBinary(faiss_index.index)
        if not isinstance(faiss_index, faiss.IndexBinaryFlat):
            raise TypeError(f"expected faiss IndexBinaryFlat, got {type(faiss_index).__name__}")
        index = cls(faiss_index.d)
        codes = faiss.vector_to_array(faiss_index.xb).reshape(faiss_index.ntotal, index.num_bytes)
        index.add(codes, ids)
        return index


class PQIndex(_Index):
    """Exact ADC search over product-quantization codes with fixed ``[M, K, L]`` codebooks.

    ``add`` takes real features and encodes them (:func:`jaxretrieval.search.pq_encode`).

    Example:
      >>> codebooks = np.array([[[0.0], [1.0]], [[0.0], [5.0]]])
      >>> index = PQIndex(codebooks, distance="squared_l2")
      >>> index.add(np.array([[0.0, 0.0], [1.0, 5.0], [1.0, 0.0]]))
      >>> index.search(np.array([[1.0, 1.0]]), k=2)
      (array([[1., 2.]], dtype=float32), array([[2, 0]]))
    """

    kind = "pq"

    def __init__(self, codebooks, distance: str = "spq"):
        check_distance(distance)
        self.codebooks = np.asarray(check_codebooks(codebooks))
        self.distance = distance
        super().__init__(self.codebooks.shape[0], np.int32)

    @property
    def dimension(self) -> int:
        return self.codebooks.shape[0] * self.codebooks.shape[2]

    def add(self, features, ids=None) -> None:
        """Encodes ``[n, M * L]`` features and appends their codes."""
        self.add_codes(search.pq_encode(features, self.codebooks), ids)

    def add_codes(self, codes, ids=None) -> None:
        """Appends already encoded ``[n, M]`` codes."""
        codes = check_pq_codes(codes, jnp.asarray(self.codebooks))
        self._append(np.asarray(codes, np.int32), ids)

    def _layout(self):
        if self._prepared is None:
            self._prepared = search.prepare_pq_database(jnp.asarray(self._codes))
        return self._prepared

    def search(self, queries, k: int, *, num_threads: int | None = None):
        """``(distances [q, k] float32 ascending, ids [q, k] int64)``; ``-1`` / ``inf`` pad.

        ``num_threads``: as :func:`jaxretrieval.search.pq_knn`.
        """
        self._check_not_empty()
        distances, positions = search.pq_knn_prepared(
            queries, self._layout(), len(self), self.codebooks, k, distance=self.distance,
            num_threads=num_threads,
        )
        return np.asarray(distances), self._to_ids(positions)

    def range_search(self, queries, radius: float):
        """``(lims, distances, ids)`` of all items with distance ``<= radius`` (CSR)."""
        self._check_not_empty()
        lims, distances, positions = search.pq_range_search(
            queries, self._codes, self.codebooks, radius, distance=self.distance
        )
        return lims, distances, self._to_ids(positions)

    def save(self, path) -> None:
        """Writes the index atomically (see the module docstring for the format)."""
        num_books, num_words, word_dim = self.codebooks.shape
        header = {"kind": self.kind, "count": len(self), "next_id": self._next_id,
                  "num_books": num_books, "num_words": num_words, "word_dim": word_dim,
                  "distance": self.distance}
        _write(path, header, {"codes": self._codes, "ids": self._ids, "codebooks": self.codebooks})

    @classmethod
    def load(cls, path) -> "PQIndex":
        """Reads an index written by :meth:`save`; :class:`IndexFormatError` if it is not one."""
        return cls._from_file(path, *_read(path, cls.kind))

    @classmethod
    def _from_file(cls, path, header: dict, arrays: dict) -> "PQIndex":
        codebooks = arrays.get("codebooks")
        expected = (header.get("num_books"), header.get("num_words"), header.get("word_dim"))
        if codebooks is None or codebooks.shape != expected:
            raise IndexFormatError(
                f"{path}: codebooks {None if codebooks is None else codebooks.shape} do not match "
                f"the header's {expected}"
            )
        index = cls(codebooks, distance=header["distance"])
        codes = arrays["codes"]
        if codes.dtype != np.int32 or codes.shape[1:] != (expected[0],):
            raise IndexFormatError(f"{path}: codes {codes.dtype} {codes.shape} do not match M={expected[0]}")
        if codes.size and (codes.min() < 0 or codes.max() >= expected[1]):
            raise IndexFormatError(f"{path}: codes outside [0, {expected[1]})")
        index._codes, index._ids, index._next_id = codes, arrays["ids"], header["next_id"]
        return index

    def to_faiss(self):
        """A faiss ``IndexPQ`` with these codebooks and codes (``IndexIDMap`` for custom ids)."""
        import faiss

        num_books, num_words, word_dim = self.codebooks.shape
        if num_words != 256:
            raise ValueError(f"faiss export supports 8-bit codes (K = 256), got K = {num_words}")
        pq_index = faiss.IndexPQ(num_books * word_dim, num_books, 8)
        faiss.copy_array_to_vector(self.codebooks.ravel(), pq_index.pq.centroids)
        pq_index.is_trained = True
        if np.array_equal(self._ids, np.arange(len(self))):
            faiss.copy_array_to_vector(self._codes.astype(np.uint8).ravel(), pq_index.codes)
            pq_index.ntotal = len(self)
            return pq_index
        mapped = faiss.IndexIDMap(pq_index)
        faiss.copy_array_to_vector(self._codes.astype(np.uint8).ravel(), pq_index.codes)
        pq_index.ntotal = len(self)
        faiss.copy_array_to_vector(self._ids, mapped.id_map)
        mapped.ntotal = len(self)
        return mapped

    @classmethod
    def from_faiss(cls, faiss_index, distance: str = "squared_l2") -> "PQIndex":
        """Imports a faiss ``IndexPQ`` (8-bit codes) or ``IndexIDMap`` over one."""
        import faiss

        ids = None
        if isinstance(faiss_index, faiss.IndexIDMap):
            ids = faiss.vector_to_array(faiss_index.id_map)
            faiss_index = faiss.downcast_index(faiss_index.index)
        if not isinstance(faiss_index, faiss.IndexPQ):
            raise TypeError(f"expected faiss IndexPQ, got {type(faiss_index).__name__}")
        pq = faiss_index.pq
        if pq.nbits != 8:
            raise ValueError(f"only 8-bit faiss PQ codes are supported, got nbits={pq.nbits}")
        codebooks = faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub)
        index = cls(codebooks, distance=distance)
        codes = faiss.vector_to_array(faiss_index.codes).reshape(faiss_index.ntotal, pq.M)
        index.add_codes(codes.astype(np.int32), ids)
        return index


_METRICS = ("inner_product", "cosine")


class FlatIndex(_Index):
    """Exact search over real-valued vectors by similarity (descending), ties by insertion order.

    ``metric="inner_product"`` ranks by ``<q, x>`` (for vectors already of unit norm, such as mAP_Q's
    descriptors, this is the cosine similarity); ``"cosine"`` normalises queries and vectors first
    (an all-zero vector has similarity 0). The vectors are kept as added.

    Example:
      >>> index = FlatIndex(dimension=2)
      >>> index.add(np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]), ids=[7, 8, 9])
      >>> similarities, ids = index.search(np.array([[0.0, 1.0]]), k=2)
      >>> similarities.round(3), ids
      (array([[1. , 0.8]], dtype=float32), array([[8, 9]]))
    """

    kind = "flat"

    def __init__(self, dimension: int, metric: str = "inner_product"):
        if isinstance(dimension, bool) or not isinstance(dimension, (int, np.integer)) or dimension <= 0:
            raise ValueError(f"dimension must be a positive int, got {dimension!r}")
        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
        self.dimension = int(dimension)
        self.metric = metric
        super().__init__(self.dimension, np.float32)

    def add(self, vectors, ids=None) -> None:
        """Appends ``[n, dimension]`` float vectors (finite)."""
        self._append(np.asarray(check_vectors("vectors", vectors, self.dimension)), ids)

    def _layout(self):
        if self._prepared is None:
            vectors = jnp.asarray(self._codes)
            self._prepared = unit_rows(vectors) if self.metric == "cosine" else vectors
        return self._prepared

    def _queries(self, queries) -> jnp.ndarray:
        queries = check_vectors("queries", queries, self.dimension)
        return unit_rows(queries) if self.metric == "cosine" else queries

    def search(self, queries, k: int, *, num_threads: int | None = None):
        """``(similarities [q, k] float32 descending, ids [q, k] int64)``; ``-1`` / ``-inf`` pad.

        ``num_threads``: as :func:`jaxretrieval.search.inner_product_knn`.
        """
        self._check_not_empty()
        similarities, positions = search.inner_product_knn(
            self._queries(queries), self._layout(), k, num_threads=num_threads
        )
        return np.asarray(similarities), self._to_ids(positions)

    def range_search(self, queries, threshold: float):
        """``(lims, similarities, ids)`` of all items with similarity ``>= threshold`` (CSR, items in
        insertion order), as :func:`jaxretrieval.search.hamming_range_search` lays them out."""
        self._check_not_empty()
        if not np.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number, got {threshold}")
        lims, similarities, positions = search.inner_product_range_search(
            self._queries(queries), self._layout(), float(threshold)
        )
        return lims, similarities, self._to_ids(positions)

    def save(self, path) -> None:
        """Writes the index atomically (see the module docstring for the format)."""
        header = {"kind": self.kind, "count": len(self), "next_id": self._next_id,
                  "dimension": self.dimension, "metric": self.metric}
        _write(path, header, {"codes": self._codes, "ids": self._ids})

    @classmethod
    def load(cls, path) -> "FlatIndex":
        """Reads an index written by :meth:`save`; :class:`IndexFormatError` if it is not one."""
        return cls._from_file(path, *_read(path, cls.kind))

    @classmethod
    def _from_file(cls, path, header: dict, arrays: dict) -> "FlatIndex":
        if header.get("metric") not in _METRICS:
            raise IndexFormatError(f"{path}: unknown metric {header.get('metric')!r}")
        index = cls(header["dimension"], metric=header["metric"])
        vectors = arrays["codes"]
        if vectors.dtype != np.float32 or vectors.shape[1:] != (index.dimension,):
            raise IndexFormatError(f"{path}: vectors {vectors.dtype} {vectors.shape} do not match dimension {index.dimension}")
        index._codes, index._ids, index._next_id = vectors, arrays["ids"], header["next_id"]
        return index

    def to_faiss(self):
        """A faiss ``IndexFlatIP`` over the vectors (normalised for ``"cosine"``; ``IndexIDMap`` for custom ids)."""
        import faiss

        flat = faiss.IndexFlatIP(self.dimension)
        vectors = np.ascontiguousarray(np.asarray(self._layout()), np.float32)
        if np.array_equal(self._ids, np.arange(len(self))):
            flat.add(vectors)
            return flat
        mapped = faiss.IndexIDMap(flat)
        mapped.add_with_ids(vectors, self._ids)
        return mapped


_INDEX_KINDS = {index_class.kind: index_class for index_class in (HammingIndex, PQIndex, FlatIndex)}


def load_index(path) -> HammingIndex | PQIndex | FlatIndex:
    """Reads any index written by ``save``, of the kind its file records.

    Raises:
      FileNotFoundError: no such file.
      IndexFormatError: not a readable index file of a known kind (see the module docstring).
    """
    header, arrays = _read(path, None)
    return _INDEX_KINDS[header["kind"]]._from_file(path, header, arrays)

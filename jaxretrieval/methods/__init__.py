"""Training methods, one module each: CSQ and its baselines (:mod:`.hashing`), SPQ, mAP_Q.

Each is a :class:`Method` (its loss, extras, encoding and retrieval rule), registered by
``config.method`` name; :func:`build_method` makes the one a config asks for. Add a method by
subclassing :class:`Method` (or :class:`ListwiseMethod`) and calling :func:`register_method`.

- ``csq``, ``pairwise``, ``triplet``: hash head; sign codes searched by Hamming distance.
- ``spq``: PQ head; the database as PQ codes, queries continuous (asymmetric distance).
- ``map_q``: AP head; L2-normalised descriptors by cosine similarity (and their sign codes, reported
  as ``binary_*`` metrics); whitening fitted after training.
"""
from jaxretrieval.methods.base import Extras, ListwiseMethod, Method, SearchIndex
from jaxretrieval.methods.hashing import CSQ, HashMethod, PairwiseLikelihood, TripletMargin
from jaxretrieval.methods.inputs import InputTransform
from jaxretrieval.methods.map_q import MapQ
from jaxretrieval.methods.registry import METHODS, build_method, get_method_class, register_method
from jaxretrieval.methods.spq import SPQ

for _method_class in (CSQ, PairwiseLikelihood, TripletMargin, SPQ, MapQ):
    register_method(_method_class)
del _method_class

__all__ = [
    "CSQ",
    "METHODS",
    "Extras",
    "HashMethod",
    "InputTransform",
    "ListwiseMethod",
    "MapQ",
    "Method",
    "PairwiseLikelihood",
    "SPQ",
    "SearchIndex",
    "TripletMargin",
    "build_method",
    "get_method_class",
    "register_method",
]

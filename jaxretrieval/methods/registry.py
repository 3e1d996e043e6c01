"""The method registry: ``config.method`` -> :class:`~jaxretrieval.methods.base.Method` subclass.

The built-in methods are registered by :mod:`jaxretrieval.methods`; a new one is registered with
:func:`register_method` before its config is built (see docs/architecture.md, "Adding a method").
"""
from __future__ import annotations

import ml_collections

from jaxretrieval.methods.base import Method

__all__ = ["METHODS", "build_method", "get_method_class", "register_method"]

METHODS: dict[str, type[Method]] = {}
"""``config.method`` name -> method class, in registration order."""


def register_method(method_class: type[Method]) -> type[Method]:
    """Adds ``method_class`` under its ``name``; returns it (so it also works as a class decorator).

    Raises:
      ValueError: the name is taken (no silent replacement of a registered method), or the class
        lacks ``name`` / ``head``.
    """
    for attribute in ("name", "head"):
        if not isinstance(getattr(method_class, attribute, None), str):
            raise ValueError(f"{method_class.__name__} needs a class attribute {attribute!r} (a string)")
    if method_class.name in METHODS:
        raise ValueError(f"a method named {method_class.name!r} is already registered ({METHODS[method_class.name].__name__})")
    METHODS[method_class.name] = method_class
    return method_class


def get_method_class(name: str) -> type[Method]:
    """The method class registered as ``name``; a clear error naming the choices otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}: config.method must be one of {sorted(METHODS)}")
    return METHODS[name]


def build_method(config: ml_collections.ConfigDict) -> Method:
    """The method of ``config.method``, built from its config section; checks the model head."""
    method_class = get_method_class(config.method)
    if config.model.head != method_class.head:
        raise ValueError(
            f"config.method={config.method!r} trains a {method_class.head!r} head but "
            f"config.model.head={config.model.head!r}"
        )
    return method_class.from_config(config)

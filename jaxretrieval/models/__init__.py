"""Flax NNX retrieval models: a backbone and a head, built from ``config.model``.

>>> import jax, ml_collections
>>> from flax import nnx
>>> config = ml_collections.ConfigDict(
...     {"backbone": "small_cnn", "head": "hash", "num_bits": 16, "hidden_dim": 32, "width": 8})
>>> model = build_model(config, rngs=nnx.Rngs(params=0, dropout=1))  # doctest: +SKIP
>>> # Shapes without computing anything: an abstract model and an abstract forward pass.
>>> model = nnx.eval_shape(lambda: build_model(config, rngs=nnx.Rngs(params=0, dropout=1)))
>>> graphdef, state = nnx.split(model)
>>> images = jax.ShapeDtypeStruct((2, 8, 8, 1), "float32")
>>> jax.eval_shape(lambda state, images: nnx.merge(graphdef, state)(images), state, images).shape
(2, 16)

Conventions (the trainer relies on them):

- Input images float32 ``[batch, height, width, channels]`` (NHWC). A model built for 3 channels also
  takes 1-channel (grayscale) images and repeats the channel, so the bundled 8x8x1 digits work with
  every backbone; ``config.model.in_channels = 1`` builds a grayscale-only model.
- Output: one float32 array (see ``heads``): hash -> pre-tanh logits ``[batch, num_bits]``; pq ->
  descriptor ``[batch, M * L]`` (``model.head.codebooks`` ``[M, K, L]``); ap -> L2-normalised
  descriptor ``[batch, descriptor_dim]`` (whitened in eval mode once ``model.head.fit_whitening`` ran).
- ``model.train()`` / ``model.eval()`` switch Dropout and BatchNorm (running statistics are
  ``nnx.BatchStat`` and change only in train mode). Dropout draws from the ``"dropout"`` stream of the
  ``rngs`` given at construction (its state is part of the model state); ``nnx.reseed(model,
  dropout=key)`` sets it from a key, e.g. ``jax.random.fold_in(rng, step)``.
- Parameter paths start with ``"backbone"`` or ``"head"``: ``is_backbone_path`` /
  ``backbone_parameter_filter`` select the backbone (CSQ's backbone learning-rate multiplier).
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxretrieval.models.backbones import (
    BACKBONES,
    BackboneBuilder,
    build_backbone,
    register_backbone,
    takes_config_width,
)
from jaxretrieval.models.heads import APHead, HashHead, PQHead, Whitening
from jaxretrieval.models.pretrained import load_pretrained
from jaxretrieval.models.retrieval_model import RetrievalModel

__all__ = [
    "BACKBONES",
    "BackboneBuilder",
    "HEADS",
    "RetrievalModel",
    "Whitening",
    "backbone_parameter_filter",
    "build_model",
    "is_backbone_path",
    "load_pretrained",
    "register_backbone",
]

HEADS = ("hash", "pq", "ap")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float64": jnp.float64}
_REQUIRED = object()


def is_backbone_path(path: tuple) -> bool:
    """Whether a state path (as from ``nnx.to_flat_state`` / ``nnx.iter_graph``) lies in the backbone."""
    return len(path) > 0 and path[0] == "backbone"


def backbone_parameter_filter(path: tuple, value: Any) -> bool:
    """An nnx filter for the backbone's trainable parameters (``nnx.Param`` under ``backbone``)."""
    return isinstance(value, nnx.Param) and is_backbone_path(path)


def _get(config, key: str, default=_REQUIRED):
    if key in config:
        return config[key]
    if default is _REQUIRED:
        raise ValueError(f"config.model.{key} is required for this model (keys given: {sorted(config.keys())})")
    return default


def _positive_int(config, key: str, default=_REQUIRED, *, allow_zero: bool = False) -> int:
    value = _get(config, key, default)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < (0 if allow_zero else 1):
        raise ValueError(f"config.model.{key} must be an integer >= {0 if allow_zero else 1}, got {value!r}")
    return int(value)


def _dropout_rate(config) -> float:
    rate = _get(config, "dropout", 0.5)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"config.model.dropout must be in [0, 1), got {rate!r}")
    return float(rate)


def build_model(model_config, *, rngs: nnx.Rngs) -> RetrievalModel:
    """Build the model described by ``config.model`` (an ml_collections ConfigDict or a dict).

    Keys: ``backbone`` (one of ``BACKBONES``), ``head`` (one of ``HEADS``); hash: ``num_bits``,
    ``hidden_dim`` (1024), ``dropout`` (0.5); pq: ``pq_num_books``, ``pq_num_words``, ``pq_word_dim``,
    ``pq_hidden_dim`` (512: SPQ's Linear(512, 512) + ReLU; 0 = none); ap: ``descriptor_dim``,
    ``gem_p`` (3.0); all: ``width`` (small_cnn's base number of features, 32; the ResNets always
    have their published widths, thin ones come from ``backbones.build_backbone(..., width=...)``),
    ``in_channels`` (3),
    ``dtype`` ("float32" | "bfloat16" | "float64", the compute dtype; parameters stay float32; float64
    needs ``jax_enable_x64``, for numerical checks),
    ``pretrained_path`` ("" = from scratch; else converted torchvision weights loaded into the backbone,
    see ``load_pretrained``; when building under ``jax.jit`` / ``nnx.eval_shape``, leave it empty and
    call ``load_pretrained(model, path)`` on the concrete model afterwards). ``rngs`` needs a ``"params"`` stream (or a default) and, for the hash
    head, a ``"dropout"`` stream (or a default).
    """
    backbone_name = _get(model_config, "backbone")
    head_name = _get(model_config, "head")
    if backbone_name not in BACKBONES:
        raise ValueError(f"unknown model.backbone {backbone_name!r}; choose one of {', '.join(BACKBONES)}")
    if head_name not in HEADS:
        raise ValueError(f"unknown model.head {head_name!r}; choose one of {', '.join(HEADS)}")
    dtype_name = _get(model_config, "dtype", "float32")
    if dtype_name not in _DTYPES:
        raise ValueError(f"unknown model.dtype {dtype_name!r}; choose one of {', '.join(_DTYPES)}")
    dtype = _DTYPES[dtype_name]
    if dtype_name == "float64" and not jax.config.jax_enable_x64:
        # Without x64 JAX would compute in float32 and say nothing.
        raise ValueError("model.dtype 'float64' needs jax.config.update('jax_enable_x64', True) first")
    in_channels = _positive_int(model_config, "in_channels", 3)

    width = _get(model_config, "width", None) if takes_config_width(backbone_name) else None
    backbone = build_backbone(backbone_name, in_channels=in_channels, width=width, dtype=dtype, rngs=rngs)
    if head_name == "hash":
        head = HashHead(
            backbone.num_features,
            _positive_int(model_config, "num_bits"),
            hidden_dim=_positive_int(model_config, "hidden_dim", 1024),
            dropout=_dropout_rate(model_config),
            dtype=dtype,
            rngs=rngs,
        )
    elif head_name == "pq":
        head = PQHead(
            backbone.num_features,
            num_books=_positive_int(model_config, "pq_num_books"),
            num_words=_positive_int(model_config, "pq_num_words"),
            word_dim=_positive_int(model_config, "pq_word_dim"),
            hidden_dim=_positive_int(model_config, "pq_hidden_dim", 512, allow_zero=True),
            dtype=dtype,
            rngs=rngs,
        )
    else:
        head = APHead(
            backbone.num_features,
            _positive_int(model_config, "descriptor_dim"),
            gem_p=float(_get(model_config, "gem_p", 3.0)),
            dtype=dtype,
            rngs=rngs,
        )
    model = RetrievalModel(backbone, head, in_channels=in_channels)
    pretrained_path = _get(model_config, "pretrained_path", "")
    if pretrained_path:
        load_pretrained(model, pretrained_path)
    return model

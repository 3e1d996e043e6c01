"""Load converted pretrained weights (``.npz``, or ``.safetensors`` when that package is installed).

A weight file is a flat mapping from a state path inside the target module, joined with ``/``
(``"layer1/0/conv1/kernel"``, ``"bn1/mean"``), to an array in our layout (conv kernels HWIO). It holds
the module's ``nnx.Param`` and ``nnx.BatchStat`` entries, nothing else. Nothing is ever downloaded:
``scripts/convert_torchvision_resnet.py`` turns a local torchvision state dict into such a file.
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxretrieval.models.retrieval_model import RetrievalModel

PATH_SEPARATOR = "/"


def path_key(path: tuple) -> str:
    """``("layer1", 0, "conv1", "kernel")`` -> ``"layer1/0/conv1/kernel"``."""
    return PATH_SEPARATOR.join(str(part) for part in path)


def flat_weights(module: nnx.Module) -> dict[str, np.ndarray]:
    """The module's parameters and BatchNorm statistics as ``{path_key: numpy array}``."""
    state = nnx.state(module, nnx.Any(nnx.Param, nnx.BatchStat))
    return {path_key(path): np.asarray(variable[...]) for path, variable in nnx.to_flat_state(state)}


def save_weights(weights: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write ``{path_key: array}`` to ``path`` (``.npz`` or ``.safetensors``)."""
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        _safetensors_numpy().save_file({key: np.ascontiguousarray(value) for key, value in weights.items()}, path)
    elif path.endswith(".npz"):
        np.savez(path, **weights)
    else:
        raise ValueError(f"weight file {path!r}: the name must end in .npz or .safetensors")


def read_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a weight file written by ``save_weights`` (or the converter script)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"pretrained weight file not found: {path!r} (model.pretrained_path). Convert a local torchvision "
            "state dict with scripts/convert_torchvision_resnet.py; nothing is downloaded."
        )
    if path.endswith(".safetensors"):
        return dict(_safetensors_numpy().load_file(path))
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    raise ValueError(f"weight file {path!r}: the name must end in .npz or .safetensors")


def load_pretrained(module: nnx.Module, path: str | os.PathLike) -> None:
    """Copy the weights in ``path`` into ``module`` (in place): every Param and BatchStat, exactly.

    Given a ``RetrievalModel`` the weights go into its backbone (the head is trained from scratch);
    given any other module, into that module.
    Raises ``FileNotFoundError`` naming the path when it is missing, and ``ValueError`` listing every
    missing, unexpected and mis-shaped key when the file does not match the module.
    """
    weights = read_weights(path)
    if isinstance(module, RetrievalModel):
        module = module.backbone
    state = nnx.state(module, nnx.Any(nnx.Param, nnx.BatchStat))
    flat_state = dict(nnx.to_flat_state(state))
    expected = {path_key(state_path): state_path for state_path in flat_state}
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    mis_shaped = sorted(
        f"{key}: file {tuple(weights[key].shape)}, model {tuple(flat_state[expected[key]].shape)}"
        for key in set(expected) & set(weights)
        if tuple(weights[key].shape) != tuple(flat_state[expected[key]].shape)
    )
    if missing or unexpected or mis_shaped:
        problems = []
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mis_shaped)):
            if keys:
                problems.append(f"{len(keys)} {title}: " + ", ".join(keys))
        raise ValueError(f"pretrained weights {os.fspath(path)!r} do not match the model; " + "; ".join(problems))
    for key, state_path in expected.items():
        variable = flat_state[state_path]
        variable[...] = jnp.asarray(weights[key], dtype=variable.dtype)
    nnx.update(module, state)


# torchvision leaf names -> ours (nnx.Conv / nnx.BatchNorm); "weight" depends on the layer kind.
_TORCH_BATCH_NORM_LEAVES = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
# torchvision's classifier and BatchNorm step counters have no counterpart in a backbone.
_TORCH_SKIPPED_LEAVES = ("num_batches_tracked",)
_TORCH_SKIPPED_PREFIXES = ("fc.",)


def convert_torchvision_resnet(state_dict) -> dict[str, np.ndarray]:
    """A torchvision ResNet state dict (names -> numpy arrays, NCHW layout) -> our flat backbone weights.

    ``conv1.weight`` -> ``conv1/kernel`` (OIHW -> HWIO), ``bn1.running_var`` -> ``bn1/var``,
    ``layer2.0.downsample.0.weight`` -> ``layer2/0/downsample_conv/kernel``, ``downsample.1.*`` ->
    ``downsample_bn/*``. The classifier (``fc.*``) and ``num_batches_tracked`` are dropped; a
    ``module.`` prefix (DataParallel) is removed. Unknown names are converted mechanically, so
    ``load_pretrained`` lists them as unexpected rather than losing them silently.

    >>> import numpy as np
    >>> weights = convert_torchvision_resnet({"conv1.weight": np.zeros((64, 3, 7, 7)), "fc.bias": np.zeros(10)})
    >>> {key: value.shape for key, value in weights.items()}
    {'conv1/kernel': (7, 7, 3, 64)}
    """
    converted = {}
    for name, value in state_dict.items():
        name = name.removeprefix("module.")
        if name.startswith(_TORCH_SKIPPED_PREFIXES) or name.endswith(_TORCH_SKIPPED_LEAVES):
            continue
        value = np.asarray(value)
        parts = name.replace("downsample.0.", "downsample_conv.").replace("downsample.1.", "downsample_bn.").split(".")
        *module_path, leaf = parts
        if value.ndim == 4:  # convolution kernel
            if leaf != "weight":
                raise ValueError(f"torch state dict key {name!r}: a 4-d tensor that is not a conv weight")
            converted[PATH_SEPARATOR.join([*module_path, "kernel"])] = np.transpose(value, (2, 3, 1, 0))
        else:
            converted[PATH_SEPARATOR.join([*module_path, _TORCH_BATCH_NORM_LEAVES.get(leaf, leaf)])] = value
    return converted


def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ImportError as error:
        raise ImportError(
            "reading or writing .safetensors needs the optional package 'safetensors' (pip install safetensors); "
            "or use an .npz file"
        ) from error
    return safetensors.numpy

"""The training configuration: the schema (every key, with its default) and the one way to load a config.

A config file in ``configs/`` defines ``get_config(arg=None)``, starts from :func:`base_config` and
sets **only what differs from the schema's defaults**: the schema lives here, in one place, and a
file reads as the list of its choices (a test holds every config file to this). It never adds keys:
the config is locked, so a mistyped key (``--config.optimizer.lr=1``) is an error that names it and
the keys that exist. Files are loaded, and ``--config.key=value`` overrides applied, by ml_collections'
``config_flags`` (:func:`load_config`, and the command lines through :func:`parse_command_line`).

Sections and their readers:

- ``data``: :func:`jaxretrieval.data.build_retrieval_data` (source, protocol, paths, image size,
  seed). ``root`` has no default: a user passes ``--config.data.root=/path/to/data``.
- ``augment``: the method's input transform (:class:`jaxretrieval.methods.InputTransform`: ``name``
  ``"hashing"`` crop + flip or ``"none"``, crop padding, flip, normalisation ``mean`` / ``std``, empty =
  inputs stay in [0, 1]); SPQ always trains on its own two-view recipe.
- ``model``: :func:`jaxretrieval.models.build_model` (backbone, head, bits, PQ shape, descriptor size);
  ``head`` defaults to the one the method trains.
- ``loss``: the method's hyperparameters; keys and defaults are the method's
  :attr:`~jaxretrieval.methods.Method.loss_defaults`.
- ``optimizer`` / ``schedule``: :mod:`jaxretrieval.training.optimizer`.
- ``eval``: :class:`jaxretrieval.evaluation.EvaluationSettings` (``top_k`` 0 = whole database).
- top level: ``method``, ``seed``, ``rng_impl``, batch sizes, length (``num_steps`` wins over
  ``num_epochs`` when > 0), logging / checkpoint intervals, resume sources, ``mesh``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_flags

from jaxretrieval.methods import get_method_class

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ConfigError",
    "base_config",
    "csq_resnet50_recipe",
    "define_config_flag",
    "load_config",
    "parse_bits",
    "parse_command_line",
    "unknown_key_message",
]


# torchvision's ImageNet normalisation, which ImageNet-pretrained backbones expect (``config.augment``).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConfigError(ValueError):
    """A config that cannot be loaded or overridden; the message is one line a user can act on."""


def base_config(method: str = "csq") -> ml_collections.ConfigDict:
    """The full schema with the defaults for ``method`` (a registered method's name)."""
    loss_defaults = get_method_class(method).loss_defaults
    config = ml_collections.ConfigDict()
    config.method = method
    config.seed = 0
    # PRNG implementation of every key the trainer makes: "rbg" compiles several times faster than
    # "threefry2x32" on CPU (seconds per run); both are deterministic on a given machine and mesh.
    config.rng_impl = "rbg"

    config.data = ml_collections.ConfigDict(
        dict(
            source="digits",
            root="",
            train_split="train",
            test_split="test",
            train_list="",
            test_list="",
            database_list="",
            tfds_name="",
            tfds_data_dir="",
            path="",
            image_size=0,
            protocol="digits",
            num_query_per_class=100,
            num_train_per_class=500,
            seed=0,
            worker_count=0,
            prefetch=2,
        )
    )
    config.augment = ml_collections.ConfigDict(dict(name="hashing", crop_padding=4, flip=True, mean=(), std=()))
    config.model = ml_collections.ConfigDict(
        dict(
            backbone="small_cnn",
            head=get_method_class(method).head,
            in_channels=3,
            width=32,
            num_bits=32,
            hidden_dim=1024,
            dropout=0.5,
            pq_num_books=8,
            pq_num_words=16,
            pq_word_dim=16,
            pq_hidden_dim=512,
            descriptor_dim=128,
            gem_p=3.0,
            pretrained_path="",
            dtype="float32",
        )
    )
    config.loss = ml_collections.ConfigDict(dict(loss_defaults))
    config.optimizer = ml_collections.ConfigDict(
        dict(
            name="adam",
            learning_rate=1e-3,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            momentum=0.9,
            nesterov=False,
            rmsprop_decay=0.9,
            weight_decay=0.0,
            backbone_multiplier=1.0,
            grad_clip_norm=0.0,
        )
    )
    config.schedule = ml_collections.ConfigDict(
        dict(name="constant", warmup_steps=0, decay_factor=0.7, decay_every_epochs=10.0, end_factor=0.0)
    )
    config.batch_size = 64
    config.eval_batch_size = 256
    config.micro_batch_size = 0
    config.num_epochs = 1.0
    config.num_steps = 0
    config.log_every_steps = 50
    config.checkpoint_every_steps = 500
    config.keep_checkpoints = 3
    config.resume_from = ""
    config.init_checkpoint = ""
    config.evaluate_at_end = True
    config.eval = ml_collections.ConfigDict(
        dict(top_k=0, map_all=True, precision_at=100, radius=2, tie_aware=True, grid_queries=8, grid_results=10)
    )
    config.mesh = [("data", -1)]
    return config


# ---------------------------------------------------------------------------------------------------
# Loading


def unknown_key_message(config: ml_collections.ConfigDict, dotted_key: str) -> str | None:
    """``"--config.a.b: config.a has no key 'b' (keys: ...)"`` when ``config`` lacks ``dotted_key``, else None."""
    node, walked = config, []
    for part in dotted_key.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            choices = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            where = ".".join(["config", *walked])
            return f"--config.{dotted_key}: {where} has no key {part!r} (keys: {', '.join(choices)})"
        node, walked = node[part], [*walked, part]
    return None


def _one_line(error: BaseException) -> str:
    """The part of an error message a user acts on: ml_collections wraps errors raised by a config
    file's ``get_config`` with the whole traceback; its last line is the original error."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def load_config(spec: str, overrides: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
    """``"configs/<name>.py[:arg]"`` -> its locked config, with dotted-key ``overrides`` applied.

    The file is loaded by ml_collections' ``config_flags``, as ``--config configs/<name>.py[:arg]``
    on the command line; ``overrides`` (``{"optimizer.learning_rate": 0.1}``, Python values) are set
    on the locked config, so a key the schema lacks, or a value of the wrong type, is an error.

    Raises:
      ConfigError: the file does not exist or its ``get_config`` fails, or an override names a key
        that does not exist or has a value of the wrong type; the message names it.
    """
    argv = ["load_config", f"--config={spec}"]
    flag_values = flags.FlagValues()
    define_config_flag(flag_values, sys_argv=argv)
    try:
        flag_values(argv)
        config = flag_values.config
        config.lock()  # also reads the config: a missing file's deferred error is raised here
    except (flags.Error, OSError, ValueError, TypeError, AttributeError, KeyError) as error:
        raise ConfigError(f"--config={spec}: {_one_line(error)}") from error
    for dotted_key, value in (overrides or {}).items():
        message = unknown_key_message(config, dotted_key)
        if message:
            raise ConfigError(message)
        *parents, leaf = dotted_key.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        try:
            node[leaf] = value
        except (TypeError, ValueError) as error:
            raise ConfigError(f"--config.{dotted_key}={value!r}: {_one_line(error)}") from error
    return config


_OVERRIDE = re.compile(r"^--?(?:no)?config\.([^=]+)")


def _config_spec(argv: Sequence[str]) -> str | None:
    """The value of ``--config=X`` or ``--config X`` in ``argv``."""
    for position, argument in enumerate(argv):
        if argument.startswith(("--config=", "-config=")):
            return argument.split("=", 1)[1]
        if argument in ("--config", "-config") and position + 1 < len(argv):
            return argv[position + 1]
    return None


def parse_command_line(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """Parses ``argv`` into ``flag_values`` (absl), turning every flag or config error into a one-line
    :class:`ConfigError`.

    The config flag (``--config``, defined with :func:`define_config_flag`) is parsed by
    ml_collections; an override of a key the config lacks, in either form (``--config.a.b=v`` or
    ``--config.a.b v``), names the key and the keys that exist. Returns the arguments left over.
    """
    try:
        remaining = flag_values(argv)
        if "config" in flag_values and flag_values["config"].present:
            flag_values.config.lock()  # reads the config: a missing file's deferred error is raised here
        return remaining
    except (flags.Error, OSError, ValueError, TypeError, AttributeError, KeyError) as error:
        spec = _config_spec(argv[1:])
        overrides = [match.group(1) for match in map(_OVERRIDE.match, argv[1:]) if match]
        if spec is not None and overrides:
            try:
                config = load_config(spec)
            except ConfigError as config_error:
                raise config_error from error
            for dotted_key in overrides:
                message = unknown_key_message(config, dotted_key)
                if message:
                    raise ConfigError(message) from error
        raise ConfigError(_one_line(error)) from error


def define_config_flag(flag_values: flags.FlagValues = flags.FLAGS, *, sys_argv: Sequence[str] | None = None) -> None:
    """Defines ``--config`` (a locked ml_collections config file with ``--config.key=value`` overrides).

    ``sys_argv``: where ml_collections finds the overrides (default: ``sys.argv``).
    """
    config_flags.DEFINE_config_file(
        "config", None, "Config file: configs/<name>.py[:arg].", flag_values=flag_values, lock_config=True,
        sys_argv=None if sys_argv is None else list(sys_argv),
    )


# ---------------------------------------------------------------------------------------------------
# Helpers for config files


def csq_resnet50_recipe(*, num_bits: int, backbone_multiplier: float, top_k: int) -> ml_collections.ConfigDict:
    """The official CSQ ResNet-50 recipe (yuanli2333/Hadamard-Matrix-for-hashing, ``train.py``).

    Shared by the ImageNet-100, MS-COCO and NUS-WIDE configs, which differ in the data, the
    backbone learning-rate multiplier (``--multi_lr``) and the mAP cut-off (``--R``):
    ImageNet-pretrained ResNet-50 (``model.pretrained_path``, converted from torchvision), the hash
    layer Linear(2048, 1024)-ReLU-Dropout(0.5)-Linear(1024, 1024)-ReLU-Linear(1024, bits); Adam
    lr 1e-3, betas (0.9, 0.999), no weight decay; lr x0.7 every 10 epochs; 90 epochs; batch 64;
    central BCE + 0.05 x squared quantization (``--lambda2 0.05``, pairwise term off: ``--lambda1 0``);
    224 px inputs normalised with the ImageNet mean / std; DeepHash list files ``train.txt``,
    ``test.txt``, ``database.txt`` in ``config.data.root`` (image paths relative to it).
    The official training view is Resize(255) + RandomResizedCrop(224) + flip; ours is a 224 px
    image with a padded random crop (16 px) + flip.
    """
    config = base_config("csq")
    config.data.source = "list_file"
    config.data.protocol = "list_files"
    config.data.image_size = 224
    config.data.worker_count = 8
    config.augment.crop_padding = 16
    config.augment.mean = IMAGENET_MEAN
    config.augment.std = IMAGENET_STD
    config.model.backbone = "resnet50"
    config.model.num_bits = num_bits
    config.model.pretrained_path = "pretrained/resnet50.npz"
    config.optimizer.backbone_multiplier = backbone_multiplier
    config.schedule.name = "step"
    config.num_epochs = 90
    config.log_every_steps = 100
    config.checkpoint_every_steps = 2000
    config.eval.top_k = top_k
    config.eval.precision_at = 1000
    return config


def parse_bits(arg, *, config_name: str, choices=(16, 32, 64), default: int = 64) -> int:
    """``"bits=N"`` (the ``configs/<name>.py:bits=N`` argument) -> N, one of ``choices``."""
    if not arg:
        return default
    key, _, value = str(arg).partition("=")
    if key != "bits" or not value.isdigit() or int(value) not in choices:
        raise ValueError(f"configs/{config_name}.py takes 'bits=' one of {choices}, got {arg!r}")
    return int(value)

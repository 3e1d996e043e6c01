"""The training configuration schema: every key the trainer and its parts read, with defaults.

Each file in ``configs/`` starts from :func:`base_config` and changes values; it never adds keys, so
the schema lives in one place and a locked config turns a mistyped key (``--config.optimizer.lr=1``)
into an error that names it. Sub-dicts and their readers:

- ``data``: :func:`jaxretrieval.data.build_retrieval_data` (source, protocol, paths, image size, seed).
- ``augment``: the trainer's input views (``name``: ``"hashing"`` crop + flip, ``"none"``; SPQ always
  uses its own two-view recipe), crop padding, flip, and the normalisation ``mean`` / ``std`` (empty =
  inputs stay in [0, 1]).
- ``model``: :func:`jaxretrieval.models.build_model` (backbone, head, bits, PQ shape, descriptor size).
- ``loss``: the method's hyperparameters (:data:`LOSS_DEFAULTS` ``[method]``, read by the method's
  entry in :data:`jaxretrieval.methods.METHODS`).
- ``optimizer`` / ``schedule``: optax optimiser, weight decay, backbone learning-rate multiplier and the
  learning-rate schedule (:mod:`jaxretrieval.trainer`).
- ``eval``: retrieval metrics (``top_k`` 0 = whole database), precision cut-off, Hamming radius, plots.
- top level: ``method``, ``seed``, ``rng_impl``, batch sizes, length (``num_steps`` wins over ``num_epochs`` when > 0),
  logging / checkpoint intervals, resume sources, ``mesh``.
"""
from __future__ import annotations

import json
import pathlib

import ml_collections

__all__ = ["CONFIG_FILENAME", "LOSS_DEFAULTS", "base_config", "csq_resnet50_recipe", "load_config", "load_config_json", "parse_bits"]

CONFIG_FILENAME = "config.json"
"""Name of the JSON copy of the run's config written into the workdir at train time."""


LOSS_DEFAULTS = {
    # CSQ: total = central BCE + quantization_weight * quantization term ("squared" as the official code,
    # "log_cosh" as the paper); 0.05 is the official ResNet-50 runs' lambda.
    "csq": {"quantization_weight": 0.05, "quantization": "squared"},
    # Baselines on the hash head.
    "pairwise": {"quantization_weight": 0.0},
    # Triplet on tanh outputs, which are not unit vectors: cosine distance with FaceNet's margin of 0.2 in
    # squared L2 on the unit sphere (= 2 x cosine distance), so 0.1; a squared-L2 margin of 0.2 between
    # 64-dim tanh codes (distances up to 256) would be no margin at all. Batch-all: batch-hard mining
    # collapsed the small CNN trained from scratch on CIFAR-10 (every output equal; docs/results.md).
    "triplet": {"margin": 0.1, "mining": "batch_all", "distance": "cosine"},
    # SPQ: soft-quantization temperature (multiplies squared distances), NT-Xent temperature, and the
    # retrieval distance ("spq": sum of unsquared per-book distances, the reference; or "squared_l2").
    "spq": {"quantization_temperature": 5.0, "contrastive_temperature": 0.5, "distance": "spq"},
    # mAP_Q: histogram bins over the cosine-similarity range.
    "map_q": {"num_bins": 20, "score_min": -1.0, "score_max": 1.0, "tie_aware": False},
}
"""``config.loss`` keys and defaults per method (the method table's loss functions read them)."""


def base_config(method: str = "csq") -> ml_collections.ConfigDict:
    """The full schema with defaults for ``method`` (a key of :data:`LOSS_DEFAULTS`)."""
    if method not in LOSS_DEFAULTS:
        raise ValueError(f"unknown method {method!r}: choose one of {sorted(LOSS_DEFAULTS)}")
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
    config.augment = ml_collections.ConfigDict(
        dict(name="hashing", crop_padding=4, flip=True, mean=(), std=())
    )
    config.model = ml_collections.ConfigDict(
        dict(
            backbone="small_cnn",
            head="hash",
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
    config.loss = ml_collections.ConfigDict(dict(LOSS_DEFAULTS[method]))
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


def load_config_json(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    """The locked config a run saved as ``<workdir>/config.json`` (for evaluate / encode / query)."""
    path = pathlib.Path(workdir) / CONFIG_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {workdir} the workdir of a training run?")
    values = json.loads(path.read_text())
    # JSON turns tuples into lists; the mesh pairs and normalisation constants read the same either way.
    config = ml_collections.ConfigDict(values)
    config.lock()
    return config


def csq_resnet50_recipe(*, data_root: str, num_bits: int, backbone_multiplier: float, top_k: int) -> ml_collections.ConfigDict:
    """The official CSQ ResNet-50 recipe (yuanli2333/Hadamard-Matrix-for-hashing, ``train.py``).

    Shared by the ImageNet-100, MS-COCO and NUS-WIDE configs, which differ in the data, the
    backbone learning-rate multiplier (``--multi_lr``) and the mAP cut-off (``--R``):
    ImageNet-pretrained ResNet-50 (``model.pretrained_path``, converted from torchvision), the hash
    layer Linear(2048, 1024)-ReLU-Dropout(0.5)-Linear(1024, 1024)-ReLU-Linear(1024, bits); Adam
    lr 1e-3, betas (0.9, 0.999), no weight decay; lr x0.7 every 10 epochs; 90 epochs; batch 64;
    central BCE + 0.05 x squared quantization (``--lambda2 0.05``, pairwise term off: ``--lambda1 0``);
    224 px inputs normalised with the ImageNet mean / std; DeepHash list files
    (``train.txt``, ``test.txt``, ``database.txt``, image paths relative to ``data_root``).
    The official training view is Resize(255) + RandomResizedCrop(224) + flip; ours is a 224 px
    image with a padded random crop (16 px) + flip.
    """
    config = base_config("csq")
    config.data.source = "list_file"
    config.data.protocol = "list_files"
    config.data.root = data_root
    config.data.train_list = f"{data_root}/train.txt"
    config.data.test_list = f"{data_root}/test.txt"
    config.data.database_list = f"{data_root}/database.txt"
    config.data.image_size = 224
    config.data.worker_count = 8
    config.augment.name = "hashing"
    config.augment.crop_padding = 16
    config.augment.flip = True
    config.augment.mean = (0.485, 0.456, 0.406)
    config.augment.std = (0.229, 0.224, 0.225)
    config.model.backbone = "resnet50"
    config.model.head = "hash"
    config.model.num_bits = num_bits
    config.model.hidden_dim = 1024
    config.model.dropout = 0.5
    config.model.pretrained_path = "pretrained/resnet50.npz"
    config.loss.quantization_weight = 0.05
    config.loss.quantization = "squared"
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.weight_decay = 0.0
    config.optimizer.backbone_multiplier = backbone_multiplier
    config.schedule.name = "step"
    config.schedule.decay_factor = 0.7
    config.schedule.decay_every_epochs = 10.0
    config.batch_size = 64
    config.eval_batch_size = 256
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


def load_config(spec: str, overrides: dict | None = None) -> ml_collections.ConfigDict:
    """``"configs/<name>.py[:arg]"`` -> its locked config, with dotted-key ``overrides`` applied.

    The same as ``--config configs/<name>.py[:arg] --config.key=value`` on the command line, for
    notebooks and tests; an override of a key the schema lacks is an error naming it.
    """
    import importlib.util

    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
    if module_spec is None or not pathlib.Path(path).is_file():
        raise FileNotFoundError(f"config file {path} not found")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg or None)
    config.lock()
    for dotted_key, value in (overrides or {}).items():
        *parents, leaf = dotted_key.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        if leaf not in node:
            raise KeyError(f"config has no key {dotted_key!r} (in {path})")
        node[leaf] = value
    return config

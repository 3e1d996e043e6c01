"""The reproduction study's runs: method x bits x protocol x seed, one budget per comparison.

Three comparisons, each on CIFAR-10 through the image-folder source, and inside each one every method
gets the SAME backbone, input size, batch size and number of training steps (the budget):

- ``supervised``: CSQ vs the pairwise-likelihood (DPSH/HashNet) and batch-hard triplet baselines on the
  hash head; protocols I and II; 16 / 32 / 64 bits. Configs: ``configs/csq_cifar10.py`` with only
  ``method`` and ``loss`` swapped for the baselines.
- ``unsupervised``: SPQ (``configs/spq_cifar10.py``, 8 books x 2**(bits/8) words) vs LSH and PCA-ITQ,
  each of the two fitted on pixels and on the same backbone's untrained (randomly initialised)
  features; protocol II (mAP@1000); 16 / 32 / 64 bits.
- ``listwise``: mAP_Q (``configs/mapq_cifar10.py``, descriptor of ``bits`` dimensions) vs the triplet
  loss on a ``bits``-output hash head; real-valued ranking (cosine) and sign-binarised codes.

Budgets (:data:`BUDGETS`): ``cpu20`` fits each run in 20 minutes on the 2-core CPU (see
docs/results.md for the measured step times behind the step counts), ``gpu`` is a longer run for
one GPU, and ``tiny`` is the test suite's smoke size (a few steps on a few hundred images).

Every config is one of ``configs/`` loaded by :func:`jaxretrieval.training.config.load_config`, then
unlocked to change what the comparison and the budget need, then locked again.
"""
from __future__ import annotations

import dataclasses
import pathlib

import ml_collections

from jaxretrieval.methods import get_method_class
from jaxretrieval.training.config import load_config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
STUDIES = ("supervised", "unsupervised", "listwise")
PROTOCOLS = {"I": "cifar10_I", "II": "cifar10_II"}
BITS = (16, 32, 64)

# The methods of each comparison; classic hashes are fitted, not trained (``kind="classic"``).
SUPERVISED_METHODS = ("csq", "pairwise", "triplet")
LISTWISE_METHODS = ("map_q", "triplet")
CLASSIC_METHODS = ("lsh", "itq")
CLASSIC_FEATURES = ("pixels", "backbone")


@dataclasses.dataclass(frozen=True)
class Budget:
    """What every method of a comparison shares.

    Attributes:
      backbone: ``config.model.backbone``; ``width`` its channel width (small CNN only).
      steps: training steps per study (the same for every method and protocol of that study).
      batch_size: per study, the same for every method of that study.
      hardware: where the budget is meant to run.
      minutes: the wall-time target of one run (training + evaluation), or None (tiny).
      hidden_dim: the hash head's hidden width.
      eval_batch_size: evaluation batch.
      top_k, precision_at: mAP@k for protocol II and precision@k (protocol I ranks the whole database).
    """

    backbone: str
    width: int
    steps: dict
    batch_size: dict
    hardware: str
    minutes: int | None
    hidden_dim: int = 1024
    eval_batch_size: int = 500
    top_k: int = 1000
    precision_at: int = 1000


BUDGETS = {
    # The small CNN at width 16 (not the configs' 32): at width 32 a 20-minute CPU run allows only
    # about 100 SPQ steps. Steps = (20 minutes - data loading, compilation, encoding 60,000 images and
    # the metrics) / the CPU seconds per step measured by `--measure-steps` (the slowest case: one
    # busy core per step); docs/results.md, "Budget", has the measurements and the arithmetic.
    "cpu20": Budget(
        backbone="small_cnn",
        width=16,
        steps={"supervised": 1500, "unsupervised": 300, "listwise": 300},
        batch_size={"supervised": 128, "unsupervised": 256, "listwise": 512},
        hardware="2-core CPU",
        minutes=20,
    ),
    # SPQ's CIFAR ResNet-18 (width unused); protocol II epochs: 100 (supervised, listwise), 200 (SPQ).
    # Not yet timed on a GPU.
    "gpu": Budget(
        backbone="cifar_resnet18",
        width=32,
        steps={"supervised": 39_000, "unsupervised": 39_000, "listwise": 9_800},
        batch_size={"supervised": 128, "unsupervised": 256, "listwise": 512},
        hardware="1 GPU",
        minutes=None,
    ),
    "tiny": Budget(
        backbone="small_cnn",
        width=4,
        steps={"supervised": 2, "unsupervised": 2, "listwise": 2},
        batch_size={"supervised": 16, "unsupervised": 16, "listwise": 16},
        hardware="any",
        minutes=None,
        hidden_dim=16,
        eval_batch_size=64,
        top_k=50,
        precision_at=20,
    ),
}

# Tiny runs use a symlinked subset of the image folders (``studies.reproduce.make_tiny_image_folder``):
# these many files per class and split, resized to TINY_IMAGE_SIZE (pixel features of 192 dims keep
# PCA-ITQ's eigendecomposition small); protocol I becomes ``per_class`` with these draws.
TINY_IMAGES_PER_CLASS = {"train": 16, "test": 4}
TINY_IMAGE_SIZE = 8
TINY_PROTOCOL_I = {"num_query_per_class": 2, "num_train_per_class": 8}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of the study.

    Attributes:
      study: one of :data:`STUDIES`.
      method: a trained method (``config.method``) or a classic hash (``"lsh"`` / ``"itq"``).
      num_bits: code length (listwise: descriptor dimensions = bits after sign binarisation).
      protocol: ``"I"`` or ``"II"``.
      seed: ``config.seed`` and ``config.data.seed`` (model init, data order, classic hash draws).
      budget: a key of :data:`BUDGETS`.
      features: classic hashes only: ``"pixels"`` or ``"backbone"`` (untrained backbone features).
      config: the full training config (for classic runs: the comparison's SPQ config, whose data,
        backbone and evaluation settings they share).
    """

    study: str
    method: str
    num_bits: int
    protocol: str
    seed: int
    budget: str
    config: ml_collections.ConfigDict
    features: str = ""

    @property
    def kind(self) -> str:
        return "classic" if self.method in CLASSIC_METHODS else "trained"

    @property
    def label(self) -> str:
        """The method as shown in tables, e.g. ``"csq"`` or ``"itq (backbone)"``."""
        return f"{self.method} ({self.features})" if self.features else self.method

    @property
    def name(self) -> str:
        """A unique, file-name-safe run name, e.g. ``supervised-csq-64b-II-s0-cpu20``."""
        method = f"{self.method}_{self.features}" if self.features else self.method
        return f"{self.study}-{method}-{self.num_bits}b-{self.protocol}-s{self.seed}-{self.budget}"


def _load(config_file: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """``configs/<config_file>[:arg]`` loaded as the training command loads it, unlocked."""
    spec = str(REPO_ROOT / "configs" / config_file) + (f":{arg}" if arg else "")
    return load_config(spec).unlock()


def _swap_method(config: ml_collections.ConfigDict, method: str) -> ml_collections.ConfigDict:
    """``config`` with another method of the same head: only ``method`` and ``loss`` change."""
    config.method = method
    config.loss = ml_collections.ConfigDict(dict(get_method_class(method).loss_defaults))
    return config


def _base_config(study: str, method: str, num_bits: int) -> ml_collections.ConfigDict:
    if study == "supervised":
        return _swap_method(_load("csq_cifar10.py", f"bits={num_bits}"), method)
    if study == "unsupervised":
        config = _load("spq_cifar10.py")
        # 8 books of 2**(bits / 8) words: 16 bits = 8 x 4 words, 32 = 8 x 16 (SPQ's default), 64 = 8 x 256.
        config.model.pq_num_words = 2 ** (num_bits // config.model.pq_num_books)
        return config
    if method == "map_q":
        config = _load("mapq_cifar10.py")
        config.model.descriptor_dim = num_bits
        return config
    # The listwise triplet baseline: the map_q recipe's data, augmentation and optimiser on a hash head.
    config = _swap_method(_load("csq_cifar10.py", f"bits={num_bits}"), method)
    mapq = _load("mapq_cifar10.py")
    config.optimizer = mapq.optimizer
    config.schedule = mapq.schedule
    config.augment = mapq.augment
    return config


def _apply_budget(config, *, study: str, budget: Budget, protocol: str, seed: int, data_root: str, tiny: bool):
    config.seed = seed
    config.data.seed = seed
    config.data.root = data_root
    config.data.protocol = PROTOCOLS[protocol]
    if tiny:
        config.data.image_size = TINY_IMAGE_SIZE
        config.augment.crop_padding = 1
    if tiny and protocol == "I":
        config.data.protocol = "per_class"
        config.data.num_query_per_class = TINY_PROTOCOL_I["num_query_per_class"]
        config.data.num_train_per_class = TINY_PROTOCOL_I["num_train_per_class"]
    config.model.backbone = budget.backbone
    config.model.width = budget.width
    config.model.hidden_dim = budget.hidden_dim
    if config.model.head == "pq":
        config.model.pq_hidden_dim = max(budget.hidden_dim // 2, 8)
    config.batch_size = budget.batch_size[study]
    config.eval_batch_size = budget.eval_batch_size
    config.num_steps = budget.steps[study]
    config.schedule.warmup_steps = min(int(config.schedule.warmup_steps), config.num_steps // 10)
    config.log_every_steps = max(1, min(int(config.log_every_steps), config.num_steps))
    # Four checkpoints a run; a tiny run saves only its last step (each save costs seconds).
    config.checkpoint_every_steps = config.num_steps if tiny else max(config.num_steps // 4, 1)
    # The study evaluates itself (studies.reproduce) once, keeping curves and the retrieval grid.
    config.evaluate_at_end = False
    # Protocol I: mAP over the whole database; II: mAP@1000 (plus mAP over all where computed).
    config.eval.top_k = 0 if protocol == "I" else budget.top_k
    config.eval.precision_at = budget.precision_at
    config.lock()
    return config


def study_runs(
    study: str,
    *,
    bits=BITS,
    protocols=("II",),
    seeds=(0, 1),
    budget: str = "cpu20",
    data_root: str,
    tiny: bool = False,
    methods=None,
) -> list[RunSpec]:
    """The runs of ``study`` for every bits x protocol x seed x method, in that nesting order.

    ``data_root`` is the CIFAR-10 image folder (``<root>/{train,test}/<class>/*.jpg``); it has no default.

    ``methods`` (optional) keeps only the runs whose method is among them (e.g. ``("csq",)``,
    ``("lsh", "itq")``; a classic hash on one kind of features as ``"itq_pixels"``), to rerun or
    test part of a comparison.

    ``tiny`` replaces ``budget`` by :data:`BUDGETS` ``["tiny"]`` for the configs (the run names keep
    ``budget`` so a tiny run is still labelled as a smoke run of it: ``tiny-`` prefixes the name).
    The unsupervised study is defined on protocol II only (SPQ's protocol); asking it for protocol
    I is an error.
    """
    if study not in STUDIES:
        raise ValueError(f"study must be one of {STUDIES}, got {study!r}")
    if budget not in BUDGETS or budget == "tiny":
        raise ValueError(f"budget must be one of {[name for name in BUDGETS if name != 'tiny']}, got {budget!r}")
    unknown = [protocol for protocol in protocols if protocol not in PROTOCOLS]
    if unknown:
        raise ValueError(f"protocols must be among {sorted(PROTOCOLS)}, got {unknown}")
    if study == "unsupervised" and "I" in protocols:
        raise ValueError("the unsupervised study (SPQ vs LSH / PCA-ITQ) is defined on protocol II only")
    bad_bits = [num_bits for num_bits in bits if num_bits not in BITS]
    if bad_bits:
        raise ValueError(f"bits must be among {BITS}, got {bad_bits}")
    budget_values = BUDGETS["tiny" if tiny else budget]
    budget_name = f"tiny-{budget}" if tiny else budget
    runs = []
    for num_bits in bits:
        for protocol in protocols:
            for seed in seeds:
                common = dict(study=study, num_bits=num_bits, protocol=protocol, seed=int(seed), budget=budget_name)

                def configured(method):
                    return _apply_budget(
                        _base_config(study, method, num_bits),
                        study=study, budget=budget_values, protocol=protocol, seed=int(seed),
                        data_root=data_root, tiny=tiny,
                    )

                if study == "unsupervised":
                    spq_config = configured("spq")
                    runs.append(RunSpec(method="spq", config=spq_config, **common))
                    for method in CLASSIC_METHODS:
                        for features in CLASSIC_FEATURES:
                            runs.append(RunSpec(method=method, features=features, config=spq_config, **common))
                else:
                    study_methods = SUPERVISED_METHODS if study == "supervised" else LISTWISE_METHODS
                    runs.extend(RunSpec(method=method, config=configured(method), **common) for method in study_methods)
    if methods is not None:
        def names(run):
            return {run.method, f"{run.method}_{run.features}"} if run.features else {run.method}

        known = set().union(*(names(run) for run in runs))
        unknown = sorted(set(methods) - known)
        if unknown:
            raise ValueError(f"methods {unknown} are not in the {study} study (its methods: {sorted(known)})")
        runs = [run for run in runs if names(run) & set(methods)]
    return runs

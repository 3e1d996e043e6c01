"""Every config in configs/ parses, and trains two steps on tiny stand-in data.

Paper configs name data that is not on this machine: they get a few generated images (an image
folder, or DeepHash list files) in tmp_path. ResNet-18/50/101 backbones are swapped for the small
CNN and pretrained weights dropped, because compiling a ResNet train step takes minutes on the test
machine's two cores; everything else (method, head, optimiser, schedule, augmentation,
normalisation, multistage backprop) runs as configured.
"""
import pathlib

import numpy as np
import pytest
from PIL import Image

from .trainer_test_utils import REPO_ROOT

CONFIG_DIR = REPO_ROOT / "configs"
CONFIGS = sorted(path.stem for path in CONFIG_DIR.glob("*.py"))
BITS_ARGS = {"csq_cifar10": (16, 32, 64), "spq_cifar10_paper": (16, 32, 64), "csq_imagenet100_resnet50": (16, 32, 64),
             "csq_coco_resnet50": (16, 32, 64), "csq_nuswide_resnet50": (16, 32, 64)}


def test_the_expected_configs_exist():
    assert set(CONFIGS) >= {
        "quickstart", "smoke", "csq_cifar10", "spq_cifar10", "mapq_cifar10", "csq_imagenet100_resnet50",
        "csq_coco_resnet50", "csq_nuswide_resnet50", "spq_cifar10_paper", "mapq_landmarks_resnet101",
    }


@pytest.mark.parametrize("name", CONFIGS)
def test_config_parses_with_a_docstring_command(name):
    from jaxretrieval import methods
    from jaxretrieval.training import config as config_utils

    path = CONFIG_DIR / f"{name}.py"
    for bits in BITS_ARGS.get(name, (None,)):
        config = config_utils.load_config(f"{path}:bits={bits}" if bits else str(path))
        assert config.method in methods.METHODS
        assert methods.get_method_class(config.method).head == config.model.head
        if bits and config.model.head == "hash":
            assert config.model.num_bits == bits
        elif bits:
            assert config.model.pq_num_books * np.log2(config.model.pq_num_words) == bits
    source = path.read_text()
    assert f"python -m jaxretrieval.train --config configs/{name}.py" in source, "docstring must hold the command"


def test_config_argument_errors_name_the_config():
    from jaxretrieval.training import config as config_utils

    with pytest.raises(ValueError, match="csq_cifar10.*bits"):
        config_utils.load_config(f"{CONFIG_DIR / 'csq_cifar10.py'}:bits=48")


def _write_image_folder(root: pathlib.Path, *, per_class: int = 8) -> None:
    generator = np.random.default_rng(0)
    for split in ("train", "test"):
        for class_name in ("cat", "dog"):
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for position in range(per_class):
                pixels = generator.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{position}.png")


def _write_list_files(root: pathlib.Path, *, num_classes: int = 3) -> None:
    generator = np.random.default_rng(1)
    images = root / "images"
    images.mkdir(parents=True)
    lines = []
    for position in range(24):
        Image.fromarray(generator.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(images / f"{position}.jpg")
        labels = np.zeros(num_classes, int)
        labels[position % num_classes] = 1
        labels[(position // num_classes) % num_classes] = 1  # multi-label, as COCO / NUS-WIDE
        lines.append(f"images/{position}.jpg " + " ".join(map(str, labels)))
    (root / "train.txt").write_text("\n".join(lines[:16]) + "\n")
    (root / "test.txt").write_text("\n".join(lines[16:]) + "\n")
    (root / "database.txt").write_text("\n".join(lines[:16]) + "\n")


def _tiny_overrides(config, tmp_path: pathlib.Path) -> dict:
    overrides = {
        "num_steps": 2,
        "batch_size": 16,
        "eval_batch_size": 16,
        # Evaluation of the hash methods runs in test_trainer_e2e; here SPQ's (PQ index, asymmetric
        # distance) and mAP_Q's (whitening, cosine ranking, sign codes) run on the stand-in data.
        "evaluate_at_end": config.method in ("spq", "map_q") and config.data.source == "image_folder",
        "log_every_steps": 1,
        "checkpoint_every_steps": 100,
        "model.pretrained_path": "",
        "model.width": 4,
        "model.hidden_dim": 16,
        "model.pq_hidden_dim": 16,
        "model.descriptor_dim": 16,
        "data.worker_count": 0,
    }
    if config.model.backbone != "small_cnn":
        overrides["model.backbone"] = "small_cnn"
    if config.micro_batch_size:
        overrides["micro_batch_size"] = 8  # Still multistage backprop: two micro-batches of 8.
    if config.data.source == "image_folder":
        _write_image_folder(tmp_path / "folder")
        overrides.update({"data.root": str(tmp_path / "folder"), "data.image_size": 16})
    elif config.data.source == "list_file":
        _write_list_files(tmp_path / "lists")
        overrides.update({
            "data.root": str(tmp_path / "lists"),
            "data.train_list": str(tmp_path / "lists" / "train.txt"),
            "data.test_list": str(tmp_path / "lists" / "test.txt"),
            "data.database_list": str(tmp_path / "lists" / "database.txt"),
            "data.image_size": 16,
        })
    return overrides


# configs/smoke.py trains (and evaluates) in test_trainer_e2e's shared run.
@pytest.mark.parametrize("name", [name for name in CONFIGS if name != "smoke"])
def test_config_trains_two_steps(name, tmp_path):
    from jaxretrieval.training import config as config_utils
    from jaxretrieval.training import trainer

    path = str(CONFIG_DIR / f"{name}.py")
    overrides = _tiny_overrides(config_utils.load_config(path), tmp_path)
    config = config_utils.load_config(path, overrides)
    result = trainer.train_and_evaluate(config, tmp_path / "workdir")
    assert int(result.state.step) == 2
    lines = (tmp_path / "workdir" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all('"loss"' in line for line in lines)
    if config.evaluate_at_end:
        assert result.eval_metrics and all(0.0 <= value <= 1.0 for value in result.eval_metrics.values())
        assert (tmp_path / "workdir" / "eval" / "retrieval_grid.png").is_file()
    if config.method == "map_q" and config.evaluate_at_end:
        projection = result.state.model_state["head"]["whitening_projection"][...]
        assert not np.allclose(projection, np.eye(projection.shape[0])), "whitening was not fitted"

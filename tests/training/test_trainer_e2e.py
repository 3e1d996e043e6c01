"""End to end: train the smoke config, then evaluate / encode / query from the command line."""
import json
import re

import numpy as np
from PIL import Image

from .trainer_test_utils import run_module


def test_smoke_run_leaves_metrics_checkpoints_and_plots(smoke_run):
    workdir, result = smoke_run
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [2, 4, 6]  # log_every_steps = 2, num_steps = 6
    assert {"loss", "learning_rate", "grad_norm", "images_per_second"} <= set(records[-1])
    assert sorted(int(path.name) for path in (workdir / "checkpoints").iterdir()) == [3, 6]
    report = json.loads((workdir / "eval" / "metrics.json").read_text())
    assert report["step"] == 6 and report["num_queries"] == 500 and report["num_database"] == 1297
    assert set(report["metrics"]) == {
        "mAP@100", "mAP", "tie_aware_mAP@100", "precision@10", "precision_within_radius_2"
    }
    assert report["metrics"] == result.eval_metrics
    assert all(0.0 <= value <= 1.0 for value in report["metrics"].values())
    for name in ("pr_curve.png", "retrieval_grid.png"):
        assert (workdir / "eval" / name).read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["image_shape"] == [8, 8, 1] and summary["data_report"] is not None
    assert list((workdir / "tensorboard").iterdir()), "no TensorBoard event file"
    assert json.loads((workdir / "config.json").read_text())["method"] == "csq"


def test_evaluate_command_reproduces_the_training_evaluation(smoke_run):
    workdir, result = smoke_run
    (workdir / "eval" / "metrics.json").unlink()
    completed = run_module("jaxretrieval.evaluate", f"--workdir={workdir}")
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads((workdir / "eval" / "metrics.json").read_text())
    assert report["metrics"] == result.eval_metrics


def _write_digit_images(folder, images, labels):
    for position, (image, label) in enumerate(zip(images, labels)):
        class_folder = folder / str(int(label))
        class_folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).save(class_folder / f"{position:03d}.png")


def test_encode_then_query_returns_the_nearest_images(smoke_run, tmp_path):
    from sklearn.datasets import load_digits

    workdir, _ = smoke_run
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    _write_digit_images(tmp_path / "database", images[:40], digits.target[:40])
    index_path = tmp_path / "index.npz"
    encoded = run_module(
        "jaxretrieval.encode", f"--workdir={workdir}", f"--images={tmp_path / 'database'}", f"--output={index_path}"
    )
    assert encoded.returncode == 0, encoded.stderr[-3000:]
    metadata = json.loads((tmp_path / "index.npz.json").read_text())
    assert metadata["kind"] == "hamming" and len(metadata["paths"]) == 40

    # A database image queried against its own index is at Hamming distance 0 (possibly tied with
    # others: the barely trained smoke model maps many digits to one code), so rank the whole index.
    query_file = tmp_path / "database" / str(int(digits.target[7])) / "007.png"
    grid = tmp_path / "grid.png"
    queried = run_module(
        "jaxretrieval.query", f"--workdir={workdir}", f"--index={index_path}", f"--images={query_file}",
        "--k=40", f"--grid={grid}",
    )
    assert queried.returncode == 0, queried.stderr[-3000:]
    ranked = [line.split() for line in queried.stdout.splitlines() if re.match(r"^\s+\d+\. ", line)]
    assert len(ranked) == 40 and sorted(line[1] for line in ranked) == sorted(metadata["paths"])
    distances = [float(line[-1]) for line in ranked]
    assert distances[0] == 0.0 and distances == sorted(distances)
    assert str(query_file) in {line[1] for line in ranked if float(line[-1]) == 0.0}
    assert grid.read_bytes()[:4] == b"\x89PNG"

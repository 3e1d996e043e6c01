"""Plots: files are written, frames are coloured by correctness, bad shapes are rejected."""

import numpy as np
import pytest
from PIL import Image

from jaxretrieval.evaluation import plots

GREEN, RED = (0x1A, 0x98, 0x50), (0xD7, 0x30, 0x27)


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def _count(pixels, color) -> int:
    return int(np.all(np.abs(pixels.astype(int) - color) <= 2, axis=-1).sum())


def test_precision_recall_plot_draws_one_line_per_curve(tmp_path):
    recall = np.linspace(0, 1, 11)
    path = plots.plot_precision_recall(
        {"16 bits": (recall, 1 - 0.5 * recall), "32 bits": (recall, 1 - 0.3 * recall)}, tmp_path / "sub" / "pr.png"
    )
    pixels = _pixels(path)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    # matplotlib's first two cycle colours (blue, orange) are both drawn.
    assert _count(pixels, (0x1F, 0x77, 0xB4)) > 50 and _count(pixels, (0xFF, 0x7F, 0x0E)) > 50


@pytest.mark.parametrize("all_correct", [True, False])
def test_retrieval_grid_frames_results_green_when_correct_and_red_when_wrong(tmp_path, all_correct):
    queries = np.full((2, 8, 8, 1), 128, np.uint8)  # grayscale uint8
    results = np.full((2, 3, 8, 8, 1), 200, np.uint8)
    correct = np.full((2, 3), all_correct)
    pixels = _pixels(plots.plot_retrieval_grid(queries, results, correct, tmp_path / "grid.png", titles=["a", "b"]))
    frame, other = (GREEN, RED) if all_correct else (RED, GREEN)
    assert _count(pixels, frame) > 100
    assert _count(pixels, other) == 0


def test_retrieval_grid_mixed_results_use_both_colours_and_float_images(tmp_path):
    queries = np.random.default_rng(0).uniform(size=(1, 6, 6, 3)).astype(np.float32)
    results = np.random.default_rng(1).uniform(size=(1, 4, 6, 6, 3)).astype(np.float32)
    pixels = _pixels(plots.plot_retrieval_grid(queries, results, [[True, False, True, False]], tmp_path / "grid.png"))
    assert _count(pixels, GREEN) > 50 and _count(pixels, RED) > 50


def test_series_plot_and_log_axis(tmp_path):
    x = [1, 10, 100, 1000]
    series = {"jax": [1.0, 2.0, 3.0, 4.0], "faiss": [2.0, 3.0, 4.0, 5.0]}
    linear = _pixels(plots.plot_series(x, series, tmp_path / "linear.png", xlabel="batch", ylabel="seconds"))
    logarithmic = _pixels(plots.plot_series(x, series, tmp_path / "log.png", xlabel="batch", ylabel="seconds", logx=True))
    assert linear.shape != logarithmic.shape or not np.array_equal(linear, logarithmic)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p: plots.plot_precision_recall({}, p), "curves is empty"),
        (lambda p: plots.plot_precision_recall({"a": ([0, 1], [1])}, p), "curve 'a' has recall"),
        (lambda p: plots.plot_series([1, 2], {"a": [1]}, p, xlabel="x", ylabel="y"), "series 'a' has 1 values for 2"),
        (lambda p: plots.plot_retrieval_grid(np.zeros((2, 4, 4, 3)), np.zeros((2, 3, 4, 4, 3)), np.ones((2, 2), bool), p), "must agree"),
        (lambda p: plots.plot_retrieval_grid(np.zeros((4, 4, 3)), np.zeros((2, 3, 4, 4, 3)), np.ones((2, 3), bool), p), r"\[num_queries, H, W, C\]"),
        (lambda p: plots.plot_retrieval_grid(np.zeros((2, 4, 4, 3)), np.zeros((2, 3, 4, 4, 3)), np.ones((2, 3), bool), p, titles=["a"]), "1 titles for 2 queries"),
    ],
)
def test_bad_inputs_are_rejected_with_the_reason(tmp_path, call, message):
    with pytest.raises(ValueError, match=message):
        call(tmp_path / "figure.png")
    assert not (tmp_path / "figure.png").exists()

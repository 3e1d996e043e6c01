"""jaxretrieval.evaluation.image_index: an index of image files and its sidecar, for every index kind."""
import json

import numpy as np
import pytest

from jaxretrieval import index
from jaxretrieval.evaluation import load_image_index, save_image_index


@pytest.mark.parametrize("kind", ["hamming", "pq", "flat"])
def test_an_image_index_round_trips_with_its_paths(kind, tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((6, 8)).astype(np.float32)
    made = {
        "hamming": lambda: index.HammingIndex(8),
        "pq": lambda: index.PQIndex(rng.standard_normal((2, 4, 4)).astype(np.float32)),
        "flat": lambda: index.FlatIndex(8),
    }[kind]()
    made.add(vectors)
    paths = [f"images/{position}.png" for position in range(6)]
    sidecar = save_image_index(made, paths, tmp_path / "sub" / "index.npz", workdir=tmp_path, step=7,
                               skipped=[("bad.png", "truncated")])
    loaded = load_image_index(tmp_path / "sub" / "index.npz")
    assert loaded.paths == tuple(paths) and loaded.metadata["kind"] == kind and loaded.metadata["step"] == 7
    assert loaded.metadata["skipped"] == [["bad.png", "truncated"]] and sidecar.name == "index.npz.json"
    np.testing.assert_array_equal(loaded.index.search(vectors[:2], 3)[1], made.search(vectors[:2], 3)[1])


def test_an_index_without_its_sidecar_or_with_a_wrong_one_is_refused(tmp_path):
    made = index.FlatIndex(2)
    made.add(np.eye(2, dtype=np.float32))
    with pytest.raises(ValueError, match="1 paths for an index of 2 items"):
        save_image_index(made, ["a.png"], tmp_path / "index.npz", workdir=tmp_path, step=0)
    made.save(tmp_path / "index.npz")
    with pytest.raises(FileNotFoundError, match="written by python -m jaxretrieval.encode"):
        load_image_index(tmp_path / "index.npz")
    (tmp_path / "index.npz.json").write_text(json.dumps({"kind": "flat", "paths": ["a.png"]}))
    with pytest.raises(ValueError, match="names 1 images for an index of 2"):
        load_image_index(tmp_path / "index.npz")

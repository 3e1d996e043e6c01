"""Retrieval protocols: sizes, determinism, the split file (re-use, checksum, mismatch) and the builder."""
import json

import numpy as np
import pytest

from jaxretrieval.data import Subset, build_retrieval_data, eval_batches, protocols


def _single_label(class_ids, num_classes):
    return np.eye(num_classes, dtype=np.uint8)[np.asarray(class_ids)]


# A CIFAR-10-shaped pool without images: 5,000 train + 1,000 test per class, train first.
CIFAR_LABELS = _single_label(np.concatenate([np.repeat(np.arange(10), 5000), np.repeat(np.arange(10), 1000)]), 10)
CIFAR_PARTITION = np.repeat([0, 1], [50000, 10000])


def _assert_per_class(labels, indices, per_class):
    np.testing.assert_array_equal(labels[indices].sum(0), [per_class] * labels.shape[1])


def test_protocol_I_sizes_disjoint_and_per_class():
    splits = protocols.make_splits(CIFAR_LABELS, protocol="cifar10_I", seed=0, partition=CIFAR_PARTITION)
    assert (len(splits.query), len(splits.train), len(splits.database)) == (1000, 5000, 54000)
    _assert_per_class(CIFAR_LABELS, splits.query, 100)
    _assert_per_class(CIFAR_LABELS, splits.train, 500)
    everything = np.concatenate([splits.query, splits.train, splits.database])
    np.testing.assert_array_equal(np.sort(everything), np.arange(60000))  # a partition of the pool
    # drawn from train AND test: some queries come from the test part
    assert 0 < (splits.query >= 50000).sum() < 1000


def test_protocol_II_is_test_queries_and_train_database():
    splits = protocols.make_splits(CIFAR_LABELS, protocol="cifar10_II", seed=0, partition=CIFAR_PARTITION)
    np.testing.assert_array_equal(splits.query, np.arange(50000, 60000))
    np.testing.assert_array_equal(splits.train, np.arange(50000))
    np.testing.assert_array_equal(np.sort(splits.database), np.arange(50000))


@pytest.mark.parametrize("protocol", ["cifar10_I", "cifar10_II", "deephash_cifar10_1"])
def test_database_order_is_mixed_across_classes_and_fixed_by_the_seed(protocol):
    # The pool is class-sorted; ranking ties go by database position, so the database must not be.
    splits = protocols.make_splits(CIFAR_LABELS, protocol=protocol, seed=0, partition=CIFAR_PARTITION)
    first_classes = CIFAR_LABELS[splits.database[:1000]].sum(0)
    assert first_classes.min() > 60 and first_classes.max() < 140  # about 100 of each class
    again = protocols.make_splits(CIFAR_LABELS, protocol=protocol, seed=0, partition=CIFAR_PARTITION)
    other = protocols.make_splits(CIFAR_LABELS, protocol=protocol, seed=1, partition=CIFAR_PARTITION)
    np.testing.assert_array_equal(splits.database, again.database)
    assert not np.array_equal(splits.database, other.database)


def test_deephash_cifar10_1_train_inside_database():
    splits = protocols.make_splits(CIFAR_LABELS, protocol="deephash_cifar10_1", seed=3, partition=CIFAR_PARTITION)
    assert (len(splits.query), len(splits.train), len(splits.database)) == (1000, 5000, 59000)
    assert np.isin(splits.train, splits.database).all()
    assert not np.isin(splits.query, splits.database).any()


def test_splits_are_deterministic_from_the_seed():
    first = protocols.make_splits(CIFAR_LABELS, protocol="cifar10_I", seed=7)
    again = protocols.make_splits(CIFAR_LABELS, protocol="cifar10_I", seed=7)
    other = protocols.make_splits(CIFAR_LABELS, protocol="cifar10_I", seed=8)
    np.testing.assert_array_equal(first.query, again.query)
    np.testing.assert_array_equal(first.train, again.train)
    assert not np.array_equal(first.query, other.query)


def test_per_class_multi_label_draws_each_example_once_and_reports_shortage():
    labels = np.array([[1, 1], [1, 0], [0, 1], [1, 1], [0, 1], [1, 0]], np.uint8)
    splits = protocols.make_splits(labels, protocol="per_class", num_query_per_class=1, num_train_per_class=1)
    assert len(np.unique(np.concatenate([splits.query, splits.train]))) == 4
    np.testing.assert_array_equal(np.sort(splits.database), np.setdiff1d(np.arange(6), splits.query))
    with pytest.raises(ValueError, match=r"class 'b' has \d examples left .* 2 queries \+ 1 training"):
        protocols.make_splits(
            labels, protocol="per_class", num_query_per_class=2, num_train_per_class=1, class_names=["a", "b"]
        )


def test_split_file_is_written_reused_and_checked(tmp_path):
    kwargs = dict(protocol="cifar10_I", seed=1, partition=CIFAR_PARTITION, splits_file=tmp_path / "splits.json")
    written = protocols.load_or_make_splits(CIFAR_LABELS, **kwargs)
    stored = json.loads((tmp_path / "splits.json").read_text())
    assert stored["protocol"] == "cifar10_I" and stored["seed"] == 1 and len(stored["checksum"]) == 64
    assert stored["query"] == written.query.tolist()
    # Re-use: the file's indices win over a fresh draw (edit them consistently to prove it).
    stored["query"][0], stored["database"][0] = stored["database"][0], stored["query"][0]
    stored["checksum"] = protocols._indices_checksum(stored)
    (tmp_path / "splits.json").write_text(json.dumps(stored))
    reused = protocols.load_or_make_splits(CIFAR_LABELS, **kwargs)
    assert reused.query.tolist() == sorted(stored["query"])
    assert reused.database.tolist() == stored["database"]  # the database keeps its written order
    assert stored["database"] != sorted(stored["database"])
    # Another seed, protocol or data set is an error naming the difference and the file.
    with pytest.raises(ValueError, match=r"splits\.json was written for another split \(seed: file has 1, this run has 2\)"):
        protocols.load_or_make_splits(CIFAR_LABELS, **{**kwargs, "seed": 2})
    with pytest.raises(ValueError, match=r"protocol: file has 'cifar10_I', this run has 'deephash_cifar10_1'"):
        protocols.load_or_make_splits(CIFAR_LABELS, **{**kwargs, "protocol": "deephash_cifar10_1"})
    with pytest.raises(ValueError, match=r"data: file has"):
        protocols.load_or_make_splits(CIFAR_LABELS[::-1], **kwargs)
    # A damaged or hand-edited file fails its checksum.
    stored["train"] = stored["train"][1:]
    (tmp_path / "splits.json").write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="checksum does not match"):
        protocols.load_or_make_splits(CIFAR_LABELS, **kwargs)


def test_unknown_protocol_and_missing_partition():
    with pytest.raises(ValueError, match="unknown protocol 'cifar100'"):
        protocols.make_splits(CIFAR_LABELS, protocol="cifar100")
    with pytest.raises(ValueError, match="'cifar10_II' needs a partition"):
        protocols.make_splits(CIFAR_LABELS, protocol="cifar10_II")


def test_build_digits_writes_split_file_and_rebuilds_identically(tmp_path):
    config = {"source": "digits", "protocol": "digits", "seed": 0}
    data = build_retrieval_data(config, splits_file=tmp_path / "splits.json")
    assert (len(data.query), len(data.train), len(data.database)) == (500, 1297, 1297)
    _assert_per_class(data.query.source.labels, data.query.indices, 50)
    assert data.class_names == tuple("0123456789") and data.image_shape == (8, 8, 1)
    assert (tmp_path / "splits.json").exists()
    again = build_retrieval_data(config, splits_file=tmp_path / "splits.json")
    np.testing.assert_array_equal(again.query.indices, data.query.indices)


def test_build_list_files(tmp_path, image_folder):
    lines = {
        "train.txt": ["train/cat/0.png 1 0", "train/dog/0.png 0 1"],
        "test.txt": ["test/cat/1.png 1 1"],
        "db.txt": ["train/cat/1.png 1 0", "train/dog/1.png 0 1", "train/dog/2.png 0 1"],
    }
    for name, content in lines.items():
        (tmp_path / name).write_text("\n".join(content) + "\n")
    config = {
        "source": "list_file", "root": str(image_folder), "protocol": "list_files", "image_size": 4,
        "train_list": str(tmp_path / "train.txt"), "test_list": str(tmp_path / "test.txt"),
        "database_list": str(tmp_path / "db.txt"),
    }
    data = build_retrieval_data(config)
    assert (len(data.train), len(data.query), len(data.database)) == (2, 1, 3)
    assert data.image_shape == (4, 4, 3) and data.num_classes == 2
    np.testing.assert_array_equal(data.query.source[int(data.query.indices[0])]["label"], [1.0, 1.0])


def test_build_image_folder_caches_and_reports_a_corrupt_file_in_the_workdir(tmp_path, image_folder):
    bad_path = image_folder / "test" / "dog" / "7.jpg"
    bad_path.write_bytes(b"not a jpeg")
    config = {"source": "image_folder", "root": str(image_folder), "protocol": "cifar10_II", "seed": 0}
    workdir = tmp_path / "run"
    data = build_retrieval_data(config, splits_file=workdir / "splits.json", load_report_file=workdir / "load_report.jsonl")
    assert (len(data.query), len(data.train)) == (5, 6)  # the bad file keeps its index: nothing vanishes
    summary = data.report.summary()
    assert summary["num_skipped"] == 1 and summary["skipped"][0]["path"] == str(bad_path)
    assert "cannot identify image file" in summary["skipped"][0]["reason"]
    # The log in the workdir carries it too (that is how worker processes' skips are collected).
    assert str(bad_path) in (workdir / "load_report.jsonl").read_text()
    masks = np.concatenate([batch["mask"] for batch in eval_batches(data.query, global_batch_size=8, shard_index=0, shard_count=1)])
    assert masks.tolist() == [True, True, True, True, False, False, False, False]


def test_build_tfds_from_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    config = {"source": "tfds", "tfds_name": "mnist", "protocol": "cifar10_II", "cache": "none"}
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, num_examples=4):
        data = build_retrieval_data(config)
        assert (len(data.query), len(data.train), data.num_classes, data.image_shape) == (4, 4, 10, (28, 28, 1))
        example = data.query.source[int(data.query.indices[0])]
        assert example["index"] == 4 and example["image"].shape == (28, 28, 1)


def test_build_arrays_with_split_names(tmp_path):
    images = np.zeros((8, 3, 3, 1), np.uint8)
    split = np.array(["train"] * 6 + ["test"] * 2)
    np.savez(tmp_path / "toy.npz", images=images, labels=np.arange(8) % 2, split=split)
    config = {"source": "arrays", "path": str(tmp_path / "toy.npz"), "protocol": "cifar10_II"}
    data = build_retrieval_data(config)
    np.testing.assert_array_equal(data.query.indices, [6, 7])
    np.testing.assert_array_equal(np.sort(data.database.indices), np.arange(6))


@pytest.mark.shared
def test_real_cifar10_listing_protocol_sizes(cifar10_root, tmp_path):
    """Lists the 60,000 real files (no decoding beyond the first image) and checks both protocols."""
    base = {"source": "image_folder", "root": str(cifar10_root), "cache": "none", "seed": 0}
    data = build_retrieval_data({**base, "protocol": "cifar10_I"}, splits_file=tmp_path / "splits.json")
    assert (len(data.query), len(data.train), len(data.database)) == (1000, 5000, 54000)
    assert data.class_names[:3] == ("airplane", "automobile", "bird") and data.image_shape == (32, 32, 3)
    _assert_per_class(data.train.source.labels, data.train.indices, 500)
    example = data.query.source[int(data.query.indices[-1])]
    assert example["image"].shape == (32, 32, 3) and example["index"] == data.query.indices[-1]
    # Decode a real sample (a few hundred files) through the evaluation pipeline.
    sample = Subset(data.query.source, data.query.indices[::4])  # 250 queries, 25 per class
    batches = list(eval_batches(sample, global_batch_size=128, shard_index=0, shard_count=1))
    images = np.concatenate([batch["image"] for batch in batches])[:250]
    labels = np.concatenate([batch["label"] for batch in batches])[:250]
    assert all(batch["mask"][: 250 - 128 * i].all() for i, batch in enumerate(batches))
    assert images.std() > 30  # real photos, not placeholders
    np.testing.assert_array_equal(labels, data.query.source.labels[sample.indices])
    assert len(data.report) == 0
    data = build_retrieval_data({**base, "protocol": "cifar10_II"})
    assert (len(data.query), len(data.train), len(data.database)) == (10000, 50000, 50000)
    np.testing.assert_array_equal(data.query.source.labels[data.query.indices].sum(0), [1000] * 10)

"""grain pipelines: shuffling, host shards, exact resume, eval padding, and bad files never lost."""
import numpy as np
import pytest

from jaxretrieval.data import ArraySource, LoadReport, Subset, eval_batches, sources, train_batches


def _toy_subset(num_examples=23, num_classes=3):
    """Image pixel (0, 0) holds the example's source index, so batches can be traced back."""
    images = np.zeros((num_examples + 5, 2, 2, 1), np.uint8)
    images[:, 0, 0, 0] = np.arange(num_examples + 5)
    source = ArraySource(images, np.arange(num_examples + 5) % num_classes)
    return Subset(source, np.arange(5, num_examples + 5))  # a subset that is not the whole source


def _indices(batches):
    return [batch["index"].tolist() for batch in batches]


def test_train_batches_shapes_content_and_drop_remainder():
    subset = _toy_subset()
    iterator = train_batches(subset, global_batch_size=4, seed=0, shard_index=0, shard_count=1, num_epochs=1)
    batches = list(iterator)
    assert len(batches) == 23 // 4
    batch = batches[0]
    assert batch["image"].shape == (4, 2, 2, 1) and batch["image"].dtype == np.uint8
    assert batch["label"].shape == (4, 3) and batch["label"].dtype == np.float32
    assert batch["index"].dtype == np.int64
    np.testing.assert_array_equal(batch["image"][:, 0, 0, 0], batch["index"])
    np.testing.assert_array_equal(batch["label"].argmax(1), batch["index"] % 3)
    seen = np.concatenate(_indices(batches))
    assert len(set(seen.tolist())) == 20 and set(seen.tolist()) <= set(range(5, 28))


def test_each_epoch_is_a_different_permutation_and_the_seed_decides():
    subset = _toy_subset(num_examples=16)
    order = lambda seed: np.concatenate(_indices(train_batches(subset, global_batch_size=8, seed=seed, shard_index=0, shard_count=1, num_epochs=2)))
    first = order(0)
    np.testing.assert_array_equal(np.sort(first[:16]), np.arange(5, 21))
    np.testing.assert_array_equal(np.sort(first[16:]), np.arange(5, 21))
    assert not np.array_equal(first[:16], first[16:])
    np.testing.assert_array_equal(order(0), first)
    assert not np.array_equal(order(1), first)


def test_restoring_the_state_continues_with_exactly_the_next_batches():
    subset = _toy_subset()
    make = lambda: train_batches(subset, global_batch_size=4, seed=3, shard_index=1, shard_count=2)
    uninterrupted = make()
    reference = [next(uninterrupted)["index"].tolist() for _ in range(12)]  # crosses two epoch ends
    interrupted = make()
    for _ in range(7):
        next(interrupted)
    state = interrupted.get_state()
    resumed = make()
    resumed.set_state(state)
    assert [next(resumed)["index"].tolist() for _ in range(5)] == reference[7:]


@pytest.mark.parametrize("global_batch_size", [4, 8])
def test_two_hosts_see_disjoint_halves_of_every_global_batch(global_batch_size):
    subset = _toy_subset(num_examples=24)
    per_host = [
        _indices(train_batches(subset, global_batch_size=global_batch_size, seed=5, shard_index=host, shard_count=2, num_epochs=1))
        for host in (0, 1)
    ]
    single = _indices(train_batches(subset, global_batch_size=global_batch_size, seed=5, shard_index=0, shard_count=1, num_epochs=1))
    assert len(per_host[0]) == len(per_host[1]) == 24 // global_batch_size
    for host0, host1, whole in zip(*per_host, single):
        assert not set(host0) & set(host1)
        assert host0 + host1 == whole  # same global order as one host: the host count does not change training
    covered = sorted(sum(per_host[0] + per_host[1], []))
    assert covered == list(range(5, 29))


def test_shards_default_to_the_jax_process():
    import jax

    batch = next(train_batches(_toy_subset(), global_batch_size=4, seed=0))
    assert len(batch["index"]) == 4 // jax.process_count()


def test_batch_size_must_divide_among_hosts():
    with pytest.raises(ValueError, match="global_batch_size=6 must be a positive multiple of shard_count=4"):
        train_batches(_toy_subset(), global_batch_size=6, seed=0, shard_index=0, shard_count=4)
    with pytest.raises(ValueError, match=r"shard_index=2 must lie in \[0, shard_count=2\)"):
        eval_batches(_toy_subset(), global_batch_size=4, shard_index=2, shard_count=2)


def test_eval_batches_cover_everything_once_in_order_with_equal_counts():
    subset = _toy_subset(num_examples=23)
    per_host = [list(eval_batches(subset, global_batch_size=8, shard_index=host, shard_count=2)) for host in (0, 1)]
    assert len(per_host[0]) == len(per_host[1]) == 3  # ceil(23 / 8) on every host
    # Re-assemble the global batches as make_array_from_process_local_data would.
    order, mask = [], []
    for host0, host1 in zip(*per_host):
        for batch in (host0, host1):
            assert batch["image"].shape == (4, 2, 2, 1) and batch["mask"].dtype == bool
            order += batch["index"].tolist()
            mask += batch["mask"].tolist()
    assert order[:23] == list(range(5, 28)) and order[23:] == [-1]
    assert mask == [True] * 23 + [False]
    padding = per_host[1][-1]
    assert padding["image"][-1].sum() == 0 and padding["label"][-1].sum() == 0


def _folder_with_corrupt_file(image_folder):
    bad_path = image_folder / "train" / "cat" / "1.png"
    bad_path.write_bytes(b"\x89PNG truncated")
    report = LoadReport()
    source = sources.ImageFolderSource(image_folder, "train", report=report)
    return source, str(bad_path), source.paths.index(str(bad_path)), report


def test_training_skips_a_corrupt_file_reports_it_and_keeps_batches_full(image_folder):
    source, bad_path, bad_index, report = _folder_with_corrupt_file(image_folder)
    batches = list(train_batches(Subset(source, np.arange(len(source))), global_batch_size=2, seed=0, shard_index=0, shard_count=1, num_epochs=2))
    assert len(batches) == 6 and all(batch["image"].shape == (2, 5, 6, 3) for batch in batches)
    seen = np.concatenate(_indices(batches))
    assert bad_index not in seen
    summary = report.summary()
    assert summary["num_skipped"] == 1 and summary["skipped"][0]["path"] == bad_path
    assert "UnidentifiedImageError" in summary["skipped"][0]["reason"] or "OSError" in summary["skipped"][0]["reason"]


def test_evaluation_masks_a_corrupt_file_and_reports_it(image_folder):
    source, bad_path, bad_index, report = _folder_with_corrupt_file(image_folder)
    (batch,) = list(eval_batches(Subset(source, np.arange(len(source))), global_batch_size=8, shard_index=0, shard_count=1))
    assert batch["index"].tolist() == [0, 1, 2, 3, 4, 5, -1, -1]
    assert batch["mask"].tolist() == [index not in (bad_index, -1) for index in batch["index"].tolist()]
    assert [record.path for record in report.skipped] == [bad_path]


def test_worker_process_skips_reach_the_report_through_its_log(image_folder, tmp_path):
    _, bad_path, _, _ = _folder_with_corrupt_file(image_folder)
    report = LoadReport(tmp_path / "load_report.jsonl")
    source = sources.ImageFolderSource(image_folder, "train", report=report)
    iterator = train_batches(Subset(source, np.arange(len(source))), global_batch_size=6, seed=0, shard_index=0, shard_count=1, num_epochs=1, worker_count=1)
    try:
        (batch,) = list(iterator)
    finally:
        iterator.close()
    assert batch["image"].shape == (6, 5, 6, 3)  # the whole epoch: the bad file is met
    assert report.summary() == {"num_skipped": 1, "skipped": [{"path": bad_path, "reason": report.skipped[0].reason}]}

"""Sources: image folders, list files, arrays, digits, TFDS, and the handling of bad input."""
import numpy as np
import pytest

from jaxretrieval.data import sources
from jaxretrieval.data.report import LoadReport, UnreadableExampleError


def test_image_folder_lists_sorted_classes_and_decodes(image_folder):
    source = sources.ImageFolderSource(image_folder, "train")
    assert source.class_names == ("cat", "dog")
    assert len(source) == 6
    assert source.image_shape == (5, 6, 3)
    np.testing.assert_array_equal(source.labels.argmax(1), [0, 0, 0, 1, 1, 1])
    example = source[4]  # dog/1.png
    assert example["image"].dtype == np.uint8 and example["image"].shape == (5, 6, 3)
    assert example["image"][0, 0, 0] == 110
    np.testing.assert_array_equal(example["label"], np.array([0.0, 1.0], np.float32))
    assert example["label"].dtype == np.float32 and example["index"] == 4


def test_image_folder_resizes_to_image_size(image_folder):
    source = sources.ImageFolderSource(image_folder, "test", image_size=4)
    assert source.image_shape == (4, 4, 3)
    assert source[0]["image"].shape == (4, 4, 3)


def test_missing_root_split_and_empty_class_folder_name_the_path(tmp_path, image_folder):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        sources.ImageFolderSource(tmp_path / "does-not-exist", "train")
    with pytest.raises(FileNotFoundError, match=r"validation.*found splits: \['test', 'train'\]"):
        sources.ImageFolderSource(image_folder, "validation")
    (image_folder / "train" / "emu").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*train/emu' holds no image files"):
        sources.ImageFolderSource(image_folder, "train")


@pytest.mark.parametrize("content", [b"definitely not an image", "truncated", b""])
def test_corrupt_image_raises_with_path_and_reason(image_folder, content, truncated_jpeg):
    content = truncated_jpeg if content == "truncated" else content
    bad_path = image_folder / "train" / "cat" / "9.jpg"
    bad_path.write_bytes(content)
    source = sources.ImageFolderSource(image_folder, "train")
    bad_index = source.paths.index(str(bad_path))
    with pytest.raises(UnreadableExampleError) as raised:
        source[bad_index]
    assert raised.value.path == str(bad_path)
    assert raised.value.reason  # e.g. "UnidentifiedImageError: cannot identify image file ..."
    assert str(bad_path) in str(raised.value)


def test_image_of_another_native_size_is_unreadable_not_a_crash(image_folder, write_image):
    write_image(image_folder / "train" / "dog" / "big.png", 1, size=(9, 9))
    source = sources.ImageFolderSource(image_folder, "train")
    big = source.paths.index(str(image_folder / "train" / "dog" / "big.png"))
    with pytest.raises(UnreadableExampleError, match=r"size \(9, 9, 3\) differs .*image_size"):
        source[big]


def _write_list(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_list_file_parses_paths_and_multi_hot_labels(image_folder, tmp_path):
    list_path = _write_list(tmp_path / "train.txt", ["train/cat/0.png 1 0 1", "", "train/dog/2.png 0 1 1"])
    source = sources.ListFileSource(list_path, image_folder)
    assert len(source) == 2 and source.class_names == ("class_0", "class_1", "class_2")
    np.testing.assert_array_equal(source.labels, [[1, 0, 1], [0, 1, 1]])
    np.testing.assert_array_equal(source[1]["label"], [0.0, 1.0, 1.0])
    assert source[1]["image"][0, 0, 0] == 120


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("train/cat/1.png", r"bad\.txt:2: expected '<relative image path> <0/1 label> \.\.\.', found only"),
        ("train/cat/1.png 0 2 1", r"bad\.txt:2: expected a 0/1 label vector after the path .*found '2'"),
        ("train/cat/1.png 0 1", r"bad\.txt:2: label vector has 2 entries, expected 3 \(as set by line 1\)"),
    ],
)
def test_malformed_list_line_names_file_and_line(image_folder, tmp_path, bad_line, message):
    list_path = _write_list(tmp_path / "bad.txt", ["train/cat/0.png 1 0 0", bad_line])
    with pytest.raises(ValueError, match=message):
        sources.ListFileSource(list_path, image_folder)


def test_list_label_width_checked_against_num_classes(image_folder, tmp_path):
    list_path = _write_list(tmp_path / "coco.txt", ["train/cat/0.png 1 0 0"])
    with pytest.raises(ValueError, match=r"coco\.txt:1: label vector has 3 entries, expected 80 \(as set by num_classes\)"):
        sources.ListFileSource(list_path, image_folder, num_classes=80)


def test_array_source_and_npz(tmp_path):
    images = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    np.savez(tmp_path / "data.npz", images=images, labels=np.array([[1, 0], [0, 1], [1, 1], [0, 0]]), split=np.array([0, 0, 1, 1]))
    source, split = sources.ArraySource.from_npz(tmp_path / "data.npz")
    np.testing.assert_array_equal(split, [0, 0, 1, 1])
    np.testing.assert_array_equal(source[2]["image"], images[2])
    np.testing.assert_array_equal(source[2]["label"], [1.0, 1.0])
    with pytest.raises(TypeError, match="uint8"):
        sources.ArraySource(images.astype(np.float32), np.zeros(4, int))
    with pytest.raises(ValueError, match=r"class ids must lie in \[0, 2\)"):
        sources.ArraySource(images, np.array([0, 1, 2, 0]), num_classes=2)


def test_digits_are_real_bundled_images():
    digits = sources.load_digits_source()
    assert len(digits) == 1797 and digits.image_shape == (8, 8, 1)
    np.testing.assert_array_equal(digits.labels.sum(0), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    assert digits.images.max() == 255 and digits.images.min() == 0


def test_concat_source_indexes_globally_and_checks_classes(image_folder, tmp_path, write_image):
    pool = sources.ConcatSource([sources.ImageFolderSource(image_folder, s) for s in ("train", "test")])
    assert len(pool) == 10
    np.testing.assert_array_equal(pool.partition, [0] * 6 + [1] * 4)
    example = pool[7]  # test/cat/1.png
    assert example["index"] == 7 and example["image"][0, 0, 0] == 10
    write_image(tmp_path / "other" / "test" / "zebra" / "0.png", 0)
    other = sources.ImageFolderSource(tmp_path / "other", "test")
    with pytest.raises(ValueError, match="class names differ"):
        sources.ConcatSource([pool.parts[0], other])


def test_cache_in_memory_decodes_once_and_keeps_unreadable_visible(image_folder):
    bad_path = image_folder / "train" / "dog" / "broken.jpg"
    bad_path.write_bytes(b"garbage")
    report = LoadReport()
    source = sources.ImageFolderSource(image_folder, "train", report=report)
    cached = sources.cache_in_memory(source)
    bad_index = source.paths.index(str(bad_path))
    assert [record.path for record in report.skipped] == [str(bad_path)]
    for index in range(len(source)):
        if index != bad_index:
            np.testing.assert_array_equal(cached[index]["image"], source[index]["image"])
    with pytest.raises(UnreadableExampleError, match="broken.jpg"):
        cached[bad_index]


def test_tfds_source_reads_mock_data_without_tensorflow():
    import sys

    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, num_examples=6):
        source = sources.TfdsSource("mnist", "train")
        assert len(source) == 6 and source.image_shape == (28, 28, 1)
        assert source.class_names == tuple(str(digit) for digit in range(10))
        example = source[3]
        assert example["image"].shape == (28, 28, 1) and example["image"].dtype == np.uint8
        assert example["label"].shape == (10,) and example["label"].sum() == 1
        np.testing.assert_array_equal(source.labels[3], example["label"])
    assert "tensorflow" not in sys.modules


def test_tfds_not_prepared_says_how_to_prepare(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError, match=r"not prepared as ArrayRecord.*tfds build mnist"):
        sources.TfdsSource("mnist", "train", data_dir=str(tmp_path))

import gzip

import numpy as np
import pytest
from PIL import Image

from tandem.data import formats
from tandem.errors import UsageError


@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-128, -1, 0, 127], dtype=np.int8),
        np.array([[-30000, 2], [3, 30000]], dtype=np.int16),
        np.array([1, -2, 70000, 2**31 - 1], dtype=np.int32),
        np.array([[0.5, -1.25], [3e8, 0]], dtype=np.float32),
        np.array([np.pi, -np.e], dtype=np.float64),
    ],
    ids=lambda a: str(a.dtype),
)
@pytest.mark.parametrize("suffix", [".gz", ""])
def test_read_idx_round_trips_every_type(tmp_path, make, array, suffix):
    raw = make.idx_bytes(array)
    path = tmp_path / f"data-idx{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix else raw)
    parsed = formats.read_idx(path)
    assert parsed.shape == array.shape and parsed.dtype == array.dtype
    np.testing.assert_array_equal(parsed, array)  # big-endian bytes decoded, not byte-swapped garbage
    parsed[...] = 0  # a writable copy, safe for torch.from_numpy


def test_read_idx_header_is_big_endian(tmp_path):
    # 0x0803: uint8, 3 dims of 1, 2, 3; values 0..5
    raw = bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 1, 2, 3, 4, 5])
    (tmp_path / "x").write_bytes(raw)
    np.testing.assert_array_equal(formats.read_idx(tmp_path / "x"), np.arange(6).reshape(1, 2, 3))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[:-7], "header says"),
        (lambda b: b + b"\0", "header says"),
        (lambda b: b[:6], "truncated inside its header"),
        (lambda b: b"\x01" + b[1:], "bad magic"),
        (lambda b: b[:2] + b"\x07" + b[3:], "bad magic"),
    ],
    ids=["short", "long", "header", "magic", "type"],
)
def test_read_idx_rejects_a_malformed_file(tmp_path, make, damage, message):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(damage(make.idx_bytes(np.zeros((3, 4, 4), np.uint8))))
    with pytest.raises(UsageError, match=message) as info:
        formats.read_idx(path)
    assert str(path) in str(info.value) and "downloaded again" in str(info.value)


def test_read_idx_rejects_a_truncated_gzip(tmp_path, make):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(make.idx_bytes(np.zeros((30, 28, 28), np.uint8)))[:-20])
    with pytest.raises(UsageError, match="cannot read"):
        formats.read_idx(path)


def test_read_idx_pair_gives_one_channel_uint8_and_int64_labels(tmp_path, make):
    arrays = make.tiny_idx_dataset()
    for name, content in make.idx_gz_files(arrays).items():
        (tmp_path / name).write_bytes(content)
    pair = formats.read_idx_pair(tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "train-labels-idx1-ubyte.gz")
    assert pair.images.shape == (12, 1, 28, 28) and pair.images.dtype == np.uint8
    assert pair.labels.dtype == np.int64
    np.testing.assert_array_equal(pair.images[:, 0], arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(pair.labels, arrays["train-labels-idx1-ubyte.gz"])


def test_read_idx_pair_rejects_mismatched_counts(tmp_path, make):
    (tmp_path / "images").write_bytes(make.idx_bytes(np.zeros((4, 2, 2), np.uint8)))
    (tmp_path / "labels").write_bytes(make.idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(UsageError, match="do not pair up"):
        formats.read_idx_pair(tmp_path / "images", tmp_path / "labels")


def test_read_cifar10_decodes_the_channel_planar_row_major_layout(tmp_path, make):
    # Row k of `data` holds red plane, green plane, blue plane, each 32 rows of 32 pixels.
    flat = np.stack([(np.arange(3072) + k) % 256 for k in range(2)]).astype(np.uint8)
    batches = make.tiny_cifar(per_batch=2)
    batches["data_batch_1"] = (flat.reshape(2, 3, 32, 32), [7, 3])
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(make.cifar_tar_bytes(batches, ["plane", "car", *"abcdefgh"]))

    train, test, class_names = formats.read_cifar10(path)
    assert class_names == ["plane", "car", *"abcdefgh"]
    assert train.images.shape == (10, 3, 32, 32) and test.images.shape == (2, 3, 32, 32)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    c, y, x = 2, 5, 9
    assert train.images[1, c, y, x] == (c * 1024 + y * 32 + x + 1) % 256
    # Batches are concatenated in order 1..5; the test batch stays apart.
    assert train.labels[:2].tolist() == [7, 3]
    expected = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    np.testing.assert_array_equal(train.images, expected)
    np.testing.assert_array_equal(test.labels, batches["test_batch"][1])


def test_read_cifar10_names_a_missing_batch(tmp_path, make):
    batches = make.tiny_cifar()
    del batches["data_batch_4"]
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(make.cifar_tar_bytes(batches, list("abcdefghij")))
    with pytest.raises(UsageError, match="lacks data_batch_4"):
        formats.read_cifar10(path)


def test_read_cifar10_rejects_a_truncated_tarball(tmp_path, make):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(make.cifar_tar_bytes(make.tiny_cifar(), list("abcdefghij"))[:-100])
    with pytest.raises(UsageError, match="cannot read"):
        formats.read_cifar10(path)


def test_class_folders_are_sorted_visible_directories(tmp_path):
    for name in ["zebra", "ant", ".cache"]:
        (tmp_path / name).mkdir()
    (tmp_path / "notes.txt").write_text("not a class")
    assert formats.class_folders(tmp_path) == ["ant", "zebra"]


def test_read_image_folder_labels_resizes_and_converts_to_rgb(tmp_path, make):
    make.write_image(tmp_path / "blue" / "b1.png", (0, 0, 255), size=(20, 20))
    make.write_image(tmp_path / "blue" / "b2.jpg", (0, 0, 255), size=(5, 9))
    make.write_image(tmp_path / "gray" / "g1.png", 77, mode="L")
    (tmp_path / "gray" / "readme.txt").write_text("skipped: not an image extension")
    make.write_image(tmp_path / "gray" / ".hidden.png", 0)
    data = formats.read_image_folder(tmp_path, 6, ["blue", "gray"])
    assert data.images.shape == (3, 3, 6, 6) and data.images.dtype == np.uint8
    assert data.labels.tolist() == [0, 0, 1]
    assert np.abs(data.images[:2].astype(int) - np.array([0, 0, 255])[:, None, None]).max() <= 2  # jpeg
    assert (data.images[2] == 77).all()  # grayscale becomes three equal channels


def test_read_image_folder_center_crops_before_resizing(tmp_path):
    # A wide image: red bands left and right, green in the middle third. Cropping to a centered
    # square keeps only green; squashing the whole image would bring red in.
    image = np.zeros((10, 30, 3), np.uint8)
    image[:, :10, 0] = image[:, 20:, 0] = 255
    image[:, 10:20, 1] = 255
    (tmp_path / "c").mkdir()
    Image.fromarray(image).save(tmp_path / "c" / "wide.png")
    data = formats.read_image_folder(tmp_path, 4, ["c"])
    assert (data.images[0, 0] < 20).all() and (data.images[0, 1] > 235).all()


def test_read_image_folder_names_an_unreadable_image(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UsageError, match=r"cannot read image .*broken\.png.*fix or remove it"):
        formats.read_image_folder(tmp_path, 4, ["c"])

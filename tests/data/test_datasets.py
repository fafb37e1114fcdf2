import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from tandem.data import DATASETS, ImageData, load_dataset
from tandem.data.datasets import IMAGE_SHAPES
from tandem.errors import UsageError


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return load_dataset("digits", tmp_path_factory.mktemp("data"))


def test_dataset_names():
    assert DATASETS == ("digits", "mnist", "fashion-mnist", "cifar10", "imagefolder", "synthetic")


def test_the_shapes_settings_are_checked_against_are_those_loaded(digits, tmp_path):
    # The published datasets' shapes are their formats' (the loaders check them); these two load offline.
    assert IMAGE_SHAPES == {
        "digits": (1, 8, 8),
        "mnist": (1, 28, 28),
        "fashion-mnist": (1, 28, 28),
        "cifar10": (3, 32, 32),
        "synthetic": (3, 32, 32),
    }
    assert digits.image_shape == IMAGE_SHAPES["digits"]
    assert load_dataset("synthetic", tmp_path, synthetic_size=8).image_shape == IMAGE_SHAPES["synthetic"]


def test_unknown_dataset_lists_the_valid_names(tmp_path):
    with pytest.raises(UsageError) as info:
        load_dataset("imagenet", tmp_path)
    assert "imagenet" in str(info.value) and all(name in str(info.value) for name in DATASETS)


@pytest.mark.parametrize("size", [0, -3, 2.5])
def test_rejects_a_bad_image_size(tmp_path, size):
    with pytest.raises(UsageError, match="image size"):
        load_dataset("digits", tmp_path, image_size=size)


def test_digits_split_sizes_types_and_range(digits):
    assert (len(digits.train_labels), len(digits.test_labels)) == (1437, 360)
    assert digits.image_shape == (1, 8, 8) and digits.num_classes == 10 and not digits.flip
    assert digits.class_names == [str(d) for d in range(10)]
    for images, labels in [(digits.train_images, digits.train_labels), (digits.test_images, digits.test_labels)]:
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        assert images.min() == 0 and images.max() == 255
        assert labels.min() == 0 and labels.max() == 9


def test_digits_split_is_stratified(digits):
    train = torch.bincount(digits.train_labels, minlength=10)
    test = torch.bincount(digits.test_labels, minlength=10)
    expected = (train + test) * 360 / 1797
    assert ((test - expected).abs() <= 1).all()


def test_digits_split_partitions_the_scaled_source(digits):
    source = load_digits()
    expected = np.rint(source.images * 255 / 16).astype(np.uint8).reshape(len(source.images), -1)
    ours = torch.cat([digits.train_images, digits.test_images]).flatten(1).numpy()
    labels = torch.cat([digits.train_labels, digits.test_labels]).numpy()
    # Same multiset of (image, label) rows: nothing duplicated across the split, nothing dropped.
    key = lambda images, y: sorted(map(bytes, np.column_stack([images, y.astype(np.uint8)])))  # noqa: E731
    assert key(ours, labels) == key(expected, source.target)


def test_digits_split_is_fixed(digits, tmp_path):
    again = load_dataset("digits", tmp_path, seed=123)  # the run seed never moves the split
    assert torch.equal(again.test_images, digits.test_images)
    assert torch.equal(again.train_labels, digits.train_labels)


def test_image_size_resizes_and_keeps_uint8(digits, tmp_path):
    big = load_dataset("digits", tmp_path, image_size=16)
    assert big.image_shape == (1, 16, 16) and big.train_images.dtype == torch.uint8
    assert big.test_images.shape == (360, 1, 16, 16)
    mean = lambda t: t.float().mean().item()  # noqa: E731
    assert abs(mean(big.train_images) - mean(digits.train_images)) < 2


COLORS = {"cat": (200, 10, 10), "dog": (10, 200, 10), "owl": (10, 10, 200)}


@pytest.mark.training
def test_imagefolder_uses_train_and_test_subfolders(tmp_path, make):
    for split, count in [("train", 3), ("test", 1)]:
        for name, color in COLORS.items():
            for i in range(count):
                make.write_image(tmp_path / "pets" / split / name / f"{i}.png", color, size=(12, 10))
    make.write_image(tmp_path / "pets" / "test" / "cat" / "extra.png", COLORS["cat"])
    data = load_dataset("imagefolder", tmp_path, folder=tmp_path / "pets", image_size=8)
    assert data.class_names == ["cat", "dog", "owl"] and data.flip
    assert data.image_shape == (3, 8, 8) and data.train_images.dtype == torch.uint8
    assert data.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert data.test_labels.tolist() == [0, 0, 1, 2]
    assert data.test_images[3, :, 4, 4].tolist() == list(COLORS["owl"])


def test_imagefolder_rejects_test_classes_unknown_to_train(tmp_path, make):
    make.write_image(tmp_path / "train" / "cat" / "0.png", 0)
    make.write_image(tmp_path / "test" / "cow" / "0.png", 0)
    with pytest.raises(UsageError, match="cow"):
        load_dataset("imagefolder", tmp_path, folder=tmp_path, image_size=4)


def test_imagefolder_without_splits_gets_a_fixed_stratified_split(tmp_path, make, monkeypatch):
    for name, color in COLORS.items():
        for i in range(10):
            make.write_image(tmp_path / "data" / "pets" / name / f"{i:02d}.png", (*color[:2], i))
    monkeypatch.chdir(tmp_path)  # a relative folder is found in the data directory too
    data = load_dataset("imagefolder", tmp_path / "data", folder="pets", image_size=4)
    assert (len(data.train_labels), len(data.test_labels)) == (24, 6)
    assert torch.bincount(data.test_labels).tolist() == [2, 2, 2]
    again = load_dataset("imagefolder", tmp_path / "data", folder="pets", image_size=4, seed=9)
    assert torch.equal(again.test_images, data.test_images)
    # Each image appears in exactly one split (the blue channel numbers them within a class).
    ids = lambda d: (d.train_labels * 10 + d.train_images[:, 2, 0, 0].long()).tolist()  # noqa: E731
    test_ids = (data.test_labels * 10 + data.test_images[:, 2, 0, 0].long()).tolist()
    assert sorted(ids(data) + test_ids) == list(range(30))


def test_imagefolder_with_two_images_still_splits(tmp_path, make):
    make.write_image(tmp_path / "a" / "0.png", 0)
    make.write_image(tmp_path / "b" / "0.png", 255)
    data = load_dataset("imagefolder", tmp_path, folder=tmp_path, image_size=4)
    assert (len(data.train_labels), len(data.test_labels)) == (1, 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image_size": 8}, "needs a folder"),
        ({"folder": "missing", "image_size": 8}, "not found"),
        ({"folder": ".", "image_size": None}, "needs an image size"),
        ({"folder": "empty", "image_size": 8}, "at least two images"),
    ],
)
def test_imagefolder_usage_errors(tmp_path, kwargs, message):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(UsageError, match=message):
        load_dataset("imagefolder", tmp_path, **kwargs)


def test_synthetic_is_seeded_and_shaped(tmp_path):
    data = load_dataset("synthetic", tmp_path, synthetic_shape=(2, 5, 7), synthetic_size=64, num_classes=3, seed=4)
    assert data.image_shape == (2, 5, 7) and len(data.train_labels) == 64 and len(data.test_labels) == 8
    assert data.train_images.dtype == torch.uint8 and data.num_classes == 3
    assert set(data.train_labels.tolist()) == {0, 1, 2}
    same = load_dataset("synthetic", tmp_path, synthetic_shape=(2, 5, 7), synthetic_size=64, num_classes=3, seed=4)
    other = load_dataset("synthetic", tmp_path, synthetic_shape=(2, 5, 7), synthetic_size=64, num_classes=3, seed=5)
    assert torch.equal(same.train_images, data.train_images) and torch.equal(same.test_labels, data.test_labels)
    assert not torch.equal(other.train_images, data.train_images)
    assert load_dataset("synthetic", tmp_path, synthetic_size=16, image_size=12).image_shape == (3, 12, 12)


def test_to_moves_every_tensor_and_keeps_the_rest(digits):
    moved = digits.to("meta")
    tensors = [moved.train_images, moved.train_labels, moved.test_images, moved.test_labels]
    assert all(t.device.type == "meta" for t in tensors)
    assert digits.train_images.device.type == "cpu"  # the original is untouched
    assert (moved.name, moved.class_names, moved.flip, moved.image_shape) == (
        "digits",
        digits.class_names,
        False,
        (1, 8, 8),
    )


def test_image_data_rejects_wrong_dtypes():
    images, labels = torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError, match="uint8"):
        ImageData("x", images.float(), labels, images, labels, ["a"], False)
    with pytest.raises(ValueError, match="int64"):
        ImageData("x", images, labels.int(), images, labels, ["a"], False)
    with pytest.raises(ValueError, match="test images"):
        ImageData("x", images, labels, images[:, :, :2], labels, ["a"], False)


def test_a_validation_split_is_held_out_of_the_training_images_per_class():
    import torch

    from tandem.data import ImageData
    from tandem.data.datasets import hold_out

    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 1, 2, 2).contiguous()
    data = ImageData("toy", images, labels, images[:4], labels[:4], ["a", "b", "c"], flip=False)
    kept, val_images, val_labels = hold_out(data, 0.1)
    assert torch.bincount(val_labels).tolist() == [5, 3, 2]  # a tenth of each class
    assert len(kept.train_images) == 90 and torch.bincount(kept.train_labels).tolist() == [45, 27, 18]
    held = set(val_images[:, 0, 0, 0].tolist())
    assert not held & set(kept.train_images[:, 0, 0, 0].tolist())  # no image on both sides
    again = hold_out(data, 0.1)[1]
    assert set(again[:, 0, 0, 0].tolist()) == held  # the same split every time
    assert hold_out(data, 0.0)[0] is data and len(hold_out(data, 0.0)[1]) == 0


def test_digits_are_scikit_learns_with_its_own_split():
    """Read from the CSV scikit-learn ships, split as train_test_split splits them (stored: no import)."""
    import numpy as np
    from sklearn.datasets import load_digits

    from tandem.data.datasets import DIGITS_TEST_SIZE, SPLIT_SEED, _split, load_dataset

    digits = load_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[:, None]
    train, test = _split(images, digits.target.astype(np.int64), DIGITS_TEST_SIZE)
    data = load_dataset("digits", "unused")
    assert (len(data.train_images), len(data.test_images), SPLIT_SEED) == (1437, 360, 0)
    assert np.array_equal(data.train_images.numpy(), train.images) and np.array_equal(
        data.test_images.numpy(), test.images
    )
    assert np.array_equal(data.train_labels.numpy(), train.labels) and np.array_equal(
        data.test_labels.numpy(), test.labels
    )

"""MNIST, Fashion-MNIST and CIFAR-10 through torchvision's downloaders, from tiny files in the real formats
served over HTTP on loopback: downloaded, checked against their md5s, cached, and parsed to uint8 tensors."""

import pytest
import torch

from tandem.data import load_dataset
from tandem.errors import UsageError

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
RAW = {"mnist": "MNIST/raw", "fashion-mnist": "FashionMNIST/raw"}


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_datasets_download_verify_and_parse(tmp_path, make, publish, name):
    arrays = make.tiny_idx_dataset(n_train=12, n_test=5)
    served = publish(name, make.idx_gz_files(arrays))
    data = load_dataset(name, tmp_path / "data")
    assert data.flip is False and data.num_classes == 10  # mirrored glyphs are other glyphs
    assert data.train_images.shape == (12, 1, 28, 28) and data.test_images.shape == (5, 1, 28, 28)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert torch.equal(data.train_images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte.gz"]))
    assert torch.equal(data.test_labels, torch.from_numpy(arrays["t10k-labels-idx1-ubyte.gz"]).long())
    raw = tmp_path / "data" / name / RAW[name]
    assert sorted(p.name for p in raw.iterdir()) == sorted([*arrays, *(n.removesuffix(".gz") for n in arrays)])

    # With the files cached, the source is never touched again.
    for path in served.iterdir():
        path.unlink()
    assert torch.equal(load_dataset(name, tmp_path / "data").train_images, data.train_images)


def test_class_names(tmp_path, make, publish):
    publish("fashion-mnist", make.idx_gz_files(make.tiny_idx_dataset()))
    publish("mnist", make.idx_gz_files(make.tiny_idx_dataset()))
    names = load_dataset("fashion-mnist", tmp_path).class_names
    assert names[0] == "T-shirt/top" and names[9] == "Ankle boot" and len(names) == 10
    assert load_dataset("mnist", tmp_path).class_names == [str(d) for d in range(10)]


def test_a_download_cut_short_is_fetched_again(tmp_path, make, publish):
    files = make.idx_gz_files(make.tiny_idx_dataset())
    publish("mnist", files)
    cached = tmp_path / "mnist" / RAW["mnist"] / "t10k-images-idx3-ubyte.gz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(files[cached.name][:50])
    data = load_dataset("mnist", tmp_path)
    assert cached.read_bytes() == files[cached.name]
    assert data.test_images.shape == (5, 1, 28, 28)


def test_a_download_with_the_wrong_checksum_is_refused(tmp_path, make, publish, monkeypatch):
    from torchvision import datasets

    publish("cifar10", {"cifar-10-python.tar.gz": b"not the real tarball"})
    monkeypatch.setattr(datasets.CIFAR10, "tgz_md5", "c58f30108f718f92721af3b95e74349a")
    with pytest.raises(UsageError, match=r"could not get cifar10 into .* \(File not found or corrupted\.\)"):
        load_dataset("cifar10", tmp_path)


def test_an_unreachable_source_is_one_line(tmp_path, make, publish, monkeypatch):
    from torchvision import datasets

    publish("mnist", make.idx_gz_files(make.tiny_idx_dataset()))
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # the discard port: refused
    with pytest.raises(UsageError) as info:
        load_dataset("mnist", tmp_path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"could not get mnist into {tmp_path / 'mnist'} (")
    assert "check the network and run again" in message


def test_cifar10_download_and_parse(tmp_path, make, publish):
    batches = make.tiny_cifar(per_batch=4)
    publish("cifar10", {"cifar-10-python.tar.gz": make.cifar_tar_bytes(batches, CIFAR_CLASSES)})
    data = load_dataset("cifar10", tmp_path)
    assert data.flip and data.class_names == CIFAR_CLASSES
    assert data.image_shape == (3, 32, 32) and len(data.train_labels) == 20 and len(data.test_labels) == 4
    # The tarball stores each image as 1024 red, then green, then blue values, row by row.
    assert torch.equal(data.test_images, torch.from_numpy(batches["test_batch"][0]))
    assert data.test_labels.tolist() == batches["test_batch"][1]
    small = load_dataset("cifar10", tmp_path, image_size=16)
    assert small.image_shape == (3, 16, 16) and small.train_images.dtype == torch.uint8

"""Image folders: torchvision lists them, tandem reads each image as square RGB uint8."""

import numpy as np
import pytest
from PIL import Image

from tandem.data import folders
from tandem.errors import UsageError


def test_class_folders_are_sorted_visible_directories(tmp_path):
    for name in ["zebra", "ant", ".cache"]:
        (tmp_path / name).mkdir()
    (tmp_path / "notes.txt").write_text("not a class")
    assert folders.class_folders(tmp_path) == ["ant", "zebra"]


def test_read_image_folder_labels_resizes_and_converts_to_rgb(tmp_path, make):
    make.write_image(tmp_path / "blue" / "b1.png", (0, 0, 255), size=(20, 20))
    make.write_image(tmp_path / "blue" / "b2.jpg", (0, 0, 255), size=(5, 9))
    make.write_image(tmp_path / "gray" / "g1.png", 77, mode="L")
    (tmp_path / "gray" / "readme.txt").write_text("skipped: not an image extension")
    make.write_image(tmp_path / "gray" / ".hidden.png", 0)
    data = folders.read_image_folder(tmp_path, 6, ["blue", "gray"])
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
    data = folders.read_image_folder(tmp_path, 4, ["c"])
    assert (data.images[0, 0] < 20).all() and (data.images[0, 1] > 235).all()


def test_read_image_folder_names_an_unreadable_image(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UsageError, match=r"cannot read image .*broken\.png.*fix or remove it"):
        folders.read_image_folder(tmp_path, 4, ["c"])

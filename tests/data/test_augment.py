import pytest
import torch
import torch.nn.functional as F

from tandem.data import Augment
from tandem.data.augment import AugmentParams

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def generator(seed=0, device="cpu"):
    return torch.Generator(device=device).manual_seed(seed)


def distinct_images(batch=16, channels=3, height=9, width=7, dtype=torch.float32):
    """Images whose every pixel value is different, so any shift or mirror shows."""
    values = torch.arange(batch * channels * height * width) % 251 + 1
    return values.reshape(batch, channels, height, width).to(dtype)


def reference(images, params, pad, pad_mode):
    """Flip, pad and crop one image at a time with F.pad: the slow, obvious version."""
    mode = {"reflect": "reflect", "zeros": "constant"}[pad_mode]
    out = []
    for image, dy, dx, flip in zip(images, *params, strict=True):
        image = image.flip(-1) if flip else image
        padded = F.pad(image[None].float(), (pad, pad, pad, pad), mode=mode)[0].to(images.dtype)
        top, left = pad + int(dy), pad + int(dx)
        out.append(padded[:, top : top + image.shape[1], left : left + image.shape[2]])
    return torch.stack(out)


def test_disabled_augmentation_is_the_identity_and_draws_nothing():
    images = distinct_images()
    g = generator()
    state = g.get_state()
    assert Augment()(images, g) is images
    assert torch.equal(g.get_state(), state)


@pytest.mark.parametrize("pad_mode", ["reflect", "zeros"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_matches_per_sample_pad_and_crop(pad_mode, dtype):
    images = distinct_images(dtype=dtype)
    augment = Augment(pad=3, flip=True, pad_mode=pad_mode)
    params = augment.sample(len(images), generator(1), "cpu")
    out = augment.apply(images, params)
    assert out.dtype == dtype and out.shape == images.shape
    assert torch.equal(out, reference(images, params, 3, pad_mode))


def test_call_applies_exactly_the_sampled_offsets():
    # One bright pixel per image on a black field: after a zero-padded translation it must sit at
    # (row - dy, col - dx) for the offsets drawn from the same seed.
    batch, size, row, col, pad = 64, 11, 5, 4, 2
    images = torch.zeros(batch, 1, size, size, dtype=torch.uint8)
    images[:, 0, row, col] = 255
    augment = Augment(pad=pad, pad_mode="zeros")
    dy, dx, flip = augment.sample(batch, generator(7), "cpu")
    out = augment(images, generator(7))
    assert not flip.any()
    assert (out.flatten(1).sum(1) == 255).all()  # one pixel moved, nothing lost or duplicated
    where = out[:, 0].flatten(1).argmax(1)
    assert torch.equal(where // size, row - dy) and torch.equal(where % size, col - dx)
    assert (dy != 0).any() and (dx != 0).any()


def test_offsets_cover_the_whole_padding_range_and_no_more():
    dy, dx, _ = Augment(pad=4).sample(4000, generator(), "cpu")
    for offsets in (dy, dx):
        assert set(offsets.tolist()) == set(range(-4, 5))


def test_flip_mirrors_left_right_about_half_the_time():
    images = distinct_images(batch=1, channels=1).expand(1000, 1, 9, 7)
    out = Augment(flip=True)(images, generator(3))
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    unchanged = (out == images).flatten(1).all(1)
    assert (mirrored ^ unchanged).all()  # every image is one or the other, never flipped vertically
    assert 400 < mirrored.sum() < 600


def test_zero_padding_fills_with_zeros_and_reflect_never_does():
    images = torch.full((200, 1, 6, 6), 9, dtype=torch.uint8)
    zeros = Augment(pad=2, pad_mode="zeros")(images, generator())
    reflect = Augment(pad=2, pad_mode="reflect")(images, generator())
    assert set(zeros.unique().tolist()) == {0, 9}
    assert (reflect == 9).all()


def test_same_seed_same_output_different_seed_different_output():
    images = distinct_images(batch=64)
    augment = Augment(pad=2, flip=True)
    assert torch.equal(augment(images, generator(5)), augment(images, generator(5)))
    assert not torch.equal(augment(images, generator(5)), augment(images, generator(6)))


def test_resuming_from_a_saved_generator_state_repeats_the_next_batches():
    images = distinct_images(batch=32)
    augment = Augment(pad=2, flip=True)
    g = generator(11)
    augment(images, g)
    state = g.get_state()
    expected = [augment(images, g) for _ in range(3)]
    resumed = torch.Generator().set_state(state)
    assert all(torch.equal(augment(images, resumed), e) for e in expected)


def test_generator_must_live_on_the_images_device():
    images = torch.empty(2, 1, 4, 4, device="meta")
    with pytest.raises(ValueError, match="generator is on cpu"):
        Augment(pad=1)(images, generator())


def test_rejects_bad_settings():
    with pytest.raises(ValueError):
        Augment(pad=-1)
    with pytest.raises(ValueError):
        Augment(pad=1, pad_mode="circular")
    with pytest.raises(ValueError, match="pad < image size"):
        Augment(pad=4)(torch.zeros(2, 1, 4, 4), generator())


@CUDA
def test_cuda_matches_cpu_for_the_same_parameters():
    images = distinct_images(batch=64, dtype=torch.uint8)
    augment = Augment(pad=2, flip=True)
    params = augment.sample(64, generator(0, "cuda"), "cuda")
    out = augment(images.cuda(), generator(0, "cuda"))
    assert out.device.type == "cuda" and out.dtype == torch.uint8
    assert torch.equal(out.cpu(), augment.apply(images, AugmentParams(*(p.cpu() for p in params))))

import pytest
import torch

from tandem.models import ARCHS, build_classifier

SHAPES = [(1, 8), (3, 32)]  # (channels, image size): digits and CIFAR


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("channels", "size"), SHAPES)
def test_features_and_logits_shapes(arch, channels, size):
    torch.manual_seed(0)
    model = build_classifier(arch, num_classes=7, in_channels=channels, image_size=size).eval()
    x = torch.randn(3, channels, size, size)
    feats = model.features(x)
    assert feats.shape == (3, model.feature_dim)
    assert model(x).shape == (3, 7)
    # logits are the head applied to the features
    head = model.head if arch == "airbench" else model.net.fc
    torch.testing.assert_close(model(x), head(feats))


def test_feature_dims():
    airbench = build_classifier("airbench", num_classes=10, in_channels=1, image_size=8, width=16)
    resnet = build_classifier("resnet18", num_classes=10, in_channels=1, image_size=8)
    assert airbench.feature_dim == 64  # last block is 4 * width wide
    assert resnet.feature_dim == 512


def test_airbench_default_width_by_image_size():
    small = build_classifier("airbench", num_classes=10, in_channels=1, image_size=8)
    large = build_classifier("airbench", num_classes=10, in_channels=3, image_size=32)
    assert (small.width, small.feature_dim) == (32, 128)
    assert (large.width, large.feature_dim) == (64, 256)


@pytest.mark.parametrize("size", [2, 3, 8, 9, 32])
def test_airbench_pooling_never_goes_below_2x2(size):
    model = build_classifier("airbench", num_classes=10, in_channels=1, image_size=size, width=8).eval()
    x = model.blocks(model.stem(torch.randn(2, 1, size, size)))
    assert min(x.shape[-2:]) >= min(2, size - 1)


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    model = build_classifier("airbench", num_classes=10, in_channels=3, image_size=32, width=8).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    out = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_whitening_init_decorrelates_patches():
    torch.manual_seed(0)
    model = build_classifier("airbench", num_classes=10, in_channels=1, image_size=8, width=8)
    # Strongly correlated inputs: smooth random images.
    images = torch.nn.functional.avg_pool2d(torch.randn(64, 1, 10, 10), 3, stride=1)
    model.init_whitening(images)
    out = model.stem(images)[:, :4]  # the +filters half
    flat = out.permute(0, 2, 3, 1).reshape(-1, 4)
    cov = torch.cov(flat.T)
    torch.testing.assert_close(cov, torch.eye(4), atol=0.05, rtol=0.05)


def test_unknown_arch_lists_valid_ones():
    with pytest.raises(ValueError, match="airbench, resnet18"):
        build_classifier("vgg", num_classes=10, in_channels=1, image_size=8)


def test_width_rejected_for_resnet():
    with pytest.raises(ValueError, match="airbench only"):
        build_classifier("resnet18", num_classes=10, in_channels=1, image_size=8, width=32)

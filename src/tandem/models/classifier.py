"""Image classifiers: a small airbench-style conv net and a ResNet-18 adapted to small images.

Both expose `features(x) -> (B, D)` (penultimate features, used for the Frechet distance between
generated and real images) and `forward(x) -> logits`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

ARCHS = ("airbench", "resnet18")


# -----------------------------------------------------------------------------
# airbench-style conv net


class ConvBlock(nn.Module):
    """conv -> (maxpool) -> BN -> GELU -> conv -> BN -> GELU, as in airbench's ConvGroup."""

    def __init__(self, in_channels: int, out_channels: int, pool: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.norm1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(out_channels)
        # Identity-like init (airbench): each conv starts by passing its inputs through.
        nn.init.dirac_(self.conv1.weight[: min(in_channels, out_channels)])
        nn.init.dirac_(self.conv2.weight[:out_channels])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(self.pool(self.conv1(x))))
        return F.gelu(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    """A 2x2 "whitening" stem followed by three wide conv blocks and global max pooling.

    Blocks halve the resolution only while it stays at least 2x2, so the same net serves 8x8 digits
    and 32x32 CIFAR images. `init_whitening(images)` optionally sets the stem to the PCA whitening of
    2x2 patches of the training images, as airbench does.
    """

    stem_kernel = 2

    def __init__(self, *, num_classes: int, in_channels: int, image_size: int, width: int = 64):
        super().__init__()
        stem_width = 2 * in_channels * self.stem_kernel**2
        widths = (width, 4 * width, 4 * width)
        self.stem = nn.Conv2d(in_channels, stem_width, self.stem_kernel, bias=True)
        size = image_size - self.stem_kernel + 1
        blocks, channels = [], stem_width
        for w in widths:
            pool = size // 2 >= 2
            size = size // 2 if pool else size
            blocks.append(ConvBlock(channels, w, pool))
            channels = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(channels, num_classes, bias=False)
        self.width = width  # the resolved base width, for checkpoints to record
        self.feature_dim = channels

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the stem to +/- the whitened principal directions of 2x2 patches of `images` (N,C,H,W)."""
        k, c = self.stem_kernel, images.shape[1]
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # N, C, H', W', k, k
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)
        patches = patches - patches.mean(dim=0)
        cov = patches.T @ patches / len(patches)
        eigvals, eigvecs = torch.linalg.eigh(cov)
        filters = (eigvecs.T / torch.sqrt(eigvals + eps)[:, None]).reshape(-1, c, k, k)
        weight = torch.cat([filters, -filters]).to(self.stem.weight)
        self.stem.weight.copy_(weight)
        self.stem.bias.zero_()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.stem(x))
        x = self.blocks(x)
        return torch.amax(x, dim=(2, 3))  # global max pool: works at any final resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# -----------------------------------------------------------------------------
# ResNet-18


class ResNet18(nn.Module):
    """torchvision's ResNet-18 with a 3x3 stride-1 stem and no max pool, the usual CIFAR variant."""

    def __init__(self, *, num_classes: int, in_channels: int):
        super().__init__()
        import torchvision  # here, not at the top: importing it costs seconds that DiT runs never need

        net = torchvision.models.resnet18(num_classes=num_classes)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
        self.net = net
        self.feature_dim = net.fc.in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.relu(n.bn1(n.conv1(x)))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        return torch.flatten(n.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.fc(self.features(x))


# -----------------------------------------------------------------------------


def airbench_width(image_size: int) -> int:
    """The airbench base width for this image size: 32 is as accurate on 8x8 digits and 4x cheaper."""
    return 32 if image_size <= 16 else 64


def build_classifier(
    arch: str, *, num_classes: int, in_channels: int, image_size: int, width: int | None = None
) -> nn.Module:
    """Build a classifier by name. `width` sets the airbench base width (blocks use w, 4w, 4w);
    by default 32 for images up to 16x16 and 64 (airbench's CIFAR-10 width) above. ValueError for a
    configuration that cannot be built (the settings' checks name the flags)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown classifier architecture {arch!r}; pick one of {', '.join(ARCHS)}")
    if num_classes < 2 or in_channels < 1 or image_size < 2:
        raise ValueError(
            f"a classifier needs num_classes >= 2, in_channels >= 1 and image_size >= 2 "
            f"(got {num_classes}, {in_channels}, {image_size})"
        )
    if arch == "airbench":
        if width is not None and width < 1:
            raise ValueError(f"the airbench width must be a positive integer, got {width}")
        if width is None:
            width = airbench_width(image_size)
        return AirbenchNet(num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width)
    if width is not None:
        raise ValueError("a width applies to airbench only, not to resnet18")
    return ResNet18(num_classes=num_classes, in_channels=in_channels)

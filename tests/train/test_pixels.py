import torch

from tandem.train.pixels import channel_stats, normalize, to_uint8


def test_pixel_conversions():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0])
    assert to_uint8(x).tolist() == [0, 128, 255, 255]
    images = torch.randint(0, 256, (50, 3, 4, 4), dtype=torch.uint8)
    mean, std = channel_stats(images)
    z = normalize(images, mean, std)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-4)

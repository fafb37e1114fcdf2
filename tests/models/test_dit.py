import dataclasses

import pytest
import torch

from tandem.models import DIT_SIZES, DiT, DiTConfig, build_dit
from tandem.models.dit import DiTSize, sincos_2d


def perturbed(model: DiT, seed: int = 0) -> DiT:
    """Give the zero-initialised layers random weights so outputs depend on every input."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def inputs(cfg: DiTConfig, batch: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g)
    t = torch.rand(batch, generator=g)
    y = torch.randint(0, cfg.num_classes, (batch,), generator=g)
    return x, t, y


def block_params(h: int, mlp_ratio: float) -> int:
    m = int(h * mlp_ratio)
    attn = (3 * h * h + 3 * h) + (h * h + h)
    mlp = (h * m + m) + (m * h + h)
    ada = 6 * h * h + 6 * h
    return attn + mlp + ada


@pytest.mark.parametrize("size", list(DIT_SIZES))
def test_every_size_shapes_and_param_count(size):
    cfg = DiTConfig(size=size, image_size=8, patch_size=2, in_channels=3, num_classes=10)
    with torch.device("meta"):  # no memory, no init cost: S..XL stay cheap
        model = build_dit(cfg)
        x, t, y = (torch.empty(2, 3, 8, 8), torch.empty(2), torch.zeros(2, dtype=torch.long))
        out = model(x, t, y)
    assert out.shape == (2, 3, 8, 8)
    depth, h, heads = DIT_SIZES[size]
    assert h % heads == 0
    p, c = cfg.patch_size, cfg.in_channels
    expected = (
        depth * block_params(h, cfg.mlp_ratio)
        + (c * p * p * h + h)  # patch embedding
        + (256 * h + h)
        + (h * h + h)  # timestep MLP
        + (cfg.num_classes + 1) * h  # labels + null class
        + (2 * h * h + 2 * h)
        + (h * p * p * c + p * p * c)  # final layer
    )
    assert sum(p.numel() for p in model.parameters()) == expected


def test_named_sizes_match_dit_paper():
    assert DIT_SIZES["S"] == DiTSize(12, 384, 6)
    assert DIT_SIZES["B"] == DiTSize(12, 768, 12)
    assert DIT_SIZES["L"] == DiTSize(24, 1024, 16)
    assert DIT_SIZES["XL"] == DiTSize(28, 1152, 16)


@pytest.mark.parametrize(("image_size", "patch_size", "channels"), [(8, 1, 1), (8, 2, 1), (32, 4, 3)])
def test_fresh_model_outputs_exactly_zero(image_size, patch_size, channels):
    cfg = DiTConfig(image_size=image_size, patch_size=patch_size, in_channels=channels)
    model = build_dit(cfg)
    x, t, y = inputs(cfg)
    out = model(x, t, y)
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(x))


def test_position_embedding_is_a_fixed_buffer():
    model = build_dit(DiTConfig(image_size=8, patch_size=2))
    h = DIT_SIZES["tiny"].hidden_size
    assert "pos_embed" not in dict(model.named_parameters())
    assert "pos_embed" in dict(model.named_buffers())
    assert model.pos_embed.shape == (1, 16, h)
    assert not model.pos_embed.requires_grad
    # position (0, 0): sin(0) = 0 in the first half of each axis block, cos(0) = 1 in the second
    q = h // 4
    row0 = model.pos_embed[0, 0]
    assert torch.equal(row0, torch.tensor(([0.0] * q + [1.0] * q) * 2))
    # all positions distinct
    assert torch.unique(sincos_2d(h, 4), dim=0).shape[0] == 16


def test_unpatchify_inverts_patchify():
    cfg = DiTConfig(image_size=8, patch_size=2, in_channels=3)
    model = build_dit(cfg)
    x = torch.randn(2, 3, 8, 8)
    p, g = 2, 4
    # (B, C, H, W) -> (B, N, p*p*C) in the row-major patch order of the conv embedding
    patches = x.reshape(2, 3, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(2, g * g, p * p * 3)
    assert torch.equal(model.unpatchify(patches), x)


def test_output_depends_on_time_and_label():
    cfg = DiTConfig()
    model = perturbed(build_dit(cfg)).eval()
    x, t, y = inputs(cfg)
    out = model(x, t, y)
    assert not torch.allclose(out, model(x, t + 0.1, y))
    assert not torch.allclose(out, model(x, t, (y + 1) % cfg.num_classes))
    assert model(x, t, torch.full_like(y, cfg.num_classes)).shape == x.shape  # null class is valid


def test_cfg_scale_one_is_the_conditional_pass():
    cfg = DiTConfig()
    model = perturbed(build_dit(cfg)).eval()
    x, t, y = inputs(cfg)
    torch.testing.assert_close(model.forward_with_cfg(x, t, y, 1.0), model(x, t, y))


def test_cfg_combines_conditional_and_unconditional():
    cfg = DiTConfig()
    model = perturbed(build_dit(cfg)).eval()
    x, t, y = inputs(cfg)
    cond = model(x, t, y)
    uncond = model(x, t, torch.full_like(y, cfg.num_classes))
    torch.testing.assert_close(model.forward_with_cfg(x, t, y, 3.0), uncond + 3.0 * (cond - uncond))


def test_patch_size_must_divide_image_size():
    with pytest.raises(ValueError, match=r"^image size 8 is not divisible by the patch size 3$"):
        build_dit(DiTConfig(image_size=8, patch_size=3))


def test_unknown_size_lists_valid_ones():
    with pytest.raises(ValueError, match="tiny, S, B, L, XL"):
        build_dit(DiTConfig(size="huge"))


def test_config_defaults_build_the_digits_model():
    cfg = DiTConfig()
    assert dataclasses.asdict(cfg)["size"] == "tiny"
    model = build_dit(cfg)
    assert (model.in_channels, model.num_classes, model.grid_size) == (1, 10, 8 // cfg.patch_size)

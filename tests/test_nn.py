"""The conditional networks: shapes, conditioning, per-sample independence, fast vs readable attention."""

import pytest
import torch

from dlcourse.errors import ShapeError
from dlcourse.nn import MLP, GaussianFourierFeatures, SinusoidalEmbedding, UNet, attention_reference
from dlcourse.nn.unet import AttentionBlock


def _randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Replace the zero-initialised layers' weights with random ones so every path affects the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return module


def test_mlp_shapes_and_condition():
    torch.manual_seed(0)
    net = _randomise(MLP(2, hidden=32, num_blocks=2))
    x = torch.randn(5, 2)
    out = net(x, torch.linspace(-1, 1, 5))
    assert out.shape == (5, 2)
    # a float c means the same value for every sample
    assert torch.allclose(net(x, 0.3), net(x, torch.full((5,), 0.3)))
    # the output depends on c
    assert not torch.allclose(net(x, 0.0), net(x, 1.0))
    assert MLP(3, out_dim=1)(torch.randn(4, 3), torch.zeros(4)).shape == (4, 1)


def test_mlp_rejects_bad_shapes():
    net = MLP(2)
    with pytest.raises(ShapeError, match=r"\(B, 2\)"):
        net(torch.randn(5, 3), torch.zeros(5))
    with pytest.raises(ShapeError, match="one value per sample"):
        net(torch.randn(5, 2), torch.zeros(4))


@pytest.mark.parametrize("channels,size,mults,attn", [
    (1, 8, (1, 2), (4,)),         # the digits model
    (1, 28, (1, 2, 2), (7,)),     # MNIST-sized: 28 -> 14 -> 7
    (3, 32, (1, 2, 2, 2), (16,)),  # CIFAR-sized
    (2, 11, (1, 2, 2), ()),       # odd sizes: 11 -> 6 -> 3 and back
])
def test_unet_shapes(channels, size, mults, attn):
    torch.manual_seed(0)
    net = UNet(channels, 16, mults, 1, attn, image_size=size, num_groups=8)
    x = torch.randn(3, channels, size, size)
    assert net(x, torch.randn(3)).shape == x.shape


def test_unet_out_channels_and_errors():
    net = UNet(1, 16, (1, 2), 1, (), image_size=8, out_channels=3)
    assert net(torch.randn(2, 1, 8, 8), torch.zeros(2)).shape == (2, 3, 8, 8)
    with pytest.raises(ShapeError, match=r"\(B, 1, H, W\)"):
        net(torch.randn(2, 3, 8, 8), torch.zeros(2))
    with pytest.raises(ShapeError):
        net(torch.randn(2, 1, 8, 8), torch.zeros(2, 1))


def test_unet_starts_at_zero_and_is_conditioned():
    torch.manual_seed(0)
    net = UNet(1, 16, (1, 2), 1, (4,), image_size=8, num_groups=8)
    x = torch.randn(2, 1, 8, 8)
    # zero-initialised output layer (DDPM): an untrained score net predicts 0
    assert net(x, torch.zeros(2)).abs().max() == 0
    _randomise(net)
    assert not torch.allclose(net(x, torch.zeros(2)), net(x, torch.ones(2)))


def test_unet_samples_do_not_interact():
    # GroupNorm normalises each sample on its own: an output never depends on the rest of the batch.
    torch.manual_seed(0)
    net = _randomise(UNet(1, 16, (1, 2), 1, (4,), image_size=8, num_groups=8)).eval()
    x, c = torch.randn(4, 1, 8, 8), torch.randn(4)
    assert torch.allclose(net(x, c)[1:2], net(x[1:2], c[1:2]), atol=1e-5)


def test_fast_attention_equals_written_out_softmax():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 2, 16, 8).unbind(0)  # each (B, heads, N, d)
    fast = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(attention_reference(q, k, v), fast, atol=1e-5)

    net = _randomise(UNet(1, 16, (1, 2), 1, (8, 4), image_size=8, num_groups=8))
    assert any(isinstance(m, AttentionBlock) for m in net.modules())
    x, c = torch.randn(3, 1, 8, 8), torch.randn(3)
    out_fast = net.set_fast_attention(True)(x, c)
    out_ref = net.set_fast_attention(False)(x, c)
    assert torch.allclose(out_fast, out_ref, atol=1e-5)


def test_embeddings():
    torch.manual_seed(0)
    c = torch.linspace(-3, 3, 7)
    fourier = GaussianFourierFeatures(16, scale=2.0)
    emb = fourier(c)
    assert emb.shape == (7, 16)
    # sin² + cos² = 1 for each frequency
    assert torch.allclose(emb[:, :8] ** 2 + emb[:, 8:] ** 2, torch.ones(7, 8), atol=1e-6)
    # the random frequencies are saved with the weights
    assert "freqs" in fourier.state_dict()
    sin = SinusoidalEmbedding(16)
    assert sin(c).shape == (7, 16)
    assert torch.allclose(sin(torch.zeros(1))[0, 8:], torch.ones(8))  # cos(0) = 1
    with pytest.raises(ValueError, match="even"):
        GaussianFourierFeatures(7)


def test_float64_follows_the_data():
    net = MLP(2, hidden=16, num_blocks=1).double()
    assert net(torch.randn(3, 2, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)).dtype == torch.float64

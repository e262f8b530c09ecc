"""The character transformer: fused attention = written-out attention, KV-cache decoding = the full causal forward,
causality, rotary embeddings' relative-position property, and clear errors."""

import pytest
import torch

from dlcourse.errors import DlcourseError
from dlcourse.nn.transformer import (KVCache, Transformer, apply_rotary, apply_rotary_complex, attention,
                                     attention_reference, rotary_tables)

F64 = torch.float64


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("tq,tk", [(7, 7), (1, 9), (3, 10)])
def test_sdpa_equals_written_out_attention(causal, tq, tk):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, tq, 8, generator=g, dtype=F64)
    k = torch.randn(2, 3, tk, 8, generator=g, dtype=F64)
    v = torch.randn(2, 3, tk, 8, generator=g, dtype=F64)
    ref = attention_reference(q, k, v, causal)
    assert torch.allclose(attention(q, k, v, causal, fused=True), ref, atol=1e-12)
    if causal and tq > 1:
        # the last query of a block that continues a cache sees every key; the first sees only tk - tq + 1
        w = torch.softmax(q[..., :1, :] @ k[..., : tk - tq + 1, :].transpose(-2, -1) / 8 ** 0.5, -1)
        assert torch.allclose(ref[..., :1, :], w @ v[..., : tk - tq + 1, :], atol=1e-12)


def _net(causal: bool, time_conditioning: bool, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    net = Transformer(vocab_in=10, vocab_out=9, dim=32, n_layers=2, n_heads=4, causal=causal,
                      time_conditioning=time_conditioning, cond_dim=16).double().eval()
    with torch.no_grad():  # zero-initialised heads and gates would hide bugs: give every weight a value
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


@pytest.mark.parametrize("causal,time_conditioning", [(False, True), (False, False), (True, False)])
def test_fused_and_reference_paths_agree_in_the_whole_model(causal, time_conditioning):
    net = _net(causal, time_conditioning)
    x = torch.randint(10, (3, 12), generator=torch.Generator().manual_seed(1))
    sb = torch.tensor([0.1, 1.0, 5.0], dtype=F64) if time_conditioning else None
    assert torch.allclose(net(x, sb, fused=True), net(x, sb, fused=False), atol=1e-10)


def test_time_conditioning_changes_the_output():
    net = _net(False, True)
    x = torch.randint(10, (1, 8), generator=torch.Generator().manual_seed(2)).expand(2, 8)
    out = net(x, torch.tensor([0.1, 3.0], dtype=F64))
    assert not torch.allclose(out[0], out[1], atol=1e-6)


def test_causal_model_ignores_the_future():
    net = _net(True, False)
    g = torch.Generator().manual_seed(3)
    x = torch.randint(10, (2, 10), generator=g)
    y = x.clone()
    y[:, 6:] = torch.randint(10, (2, 4), generator=g)
    a, b = net(x), net(y)
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-12)
    assert not torch.allclose(a[:, 6:], b[:, 6:], atol=1e-6)


@pytest.mark.parametrize("fused", [True, False])
def test_kv_cache_decoding_equals_full_forward(fused):
    net = _net(True, False)
    x = torch.randint(10, (2, 11), generator=torch.Generator().manual_seed(4))
    full = net(x, fused=fused)  # (B, L, V)
    cache = KVCache(net.n_layers)
    pieces = [net(x[:, :4], cache=cache, fused=fused)]  # a prompt of 4, then one token at a time
    for i in range(4, 11):
        pieces.append(net(x[:, i: i + 1], cache=cache, fused=fused))
    assert cache.length == 11
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-10)


def test_rotary_scores_depend_only_on_relative_position():
    g = torch.Generator().manual_seed(5)
    q, k = torch.randn(1, 1, 1, 16, generator=g), torch.randn(1, 1, 1, 16, generator=g)

    def score(i, j):
        cq, sq = rotary_tables(torch.tensor([i]), 16)
        ck, sk = rotary_tables(torch.tensor([j]), 16)
        return float((apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum())

    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)
    cos, sin = rotary_tables(torch.arange(5), 16)
    x = torch.randn(1, 2, 5, 16, generator=g)
    assert torch.allclose(apply_rotary(x, cos, sin).norm(dim=-1), x.norm(dim=-1), atol=1e-5)  # a rotation


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_complex_rotary_equals_the_written_out_rotation(dtype):
    x = torch.randn(2, 3, 7, 16, generator=torch.Generator().manual_seed(6), dtype=torch.float64).to(dtype)
    cos, sin = rotary_tables(torch.arange(7) * 3, 16)
    tol = {torch.float64: 1e-12, torch.float32: 1e-6, torch.bfloat16: 1e-2}[dtype]
    fast, ref = apply_rotary_complex(x, cos, sin), apply_rotary(x, cos, sin)
    assert fast.dtype == dtype and torch.allclose(fast.double(), ref.double(), atol=tol)



@pytest.mark.parametrize("width", [16, 17])  # 17: an odd offset per head, not viewable as complex numbers
def test_complex_rotary_on_strided_views_equals_the_written_out_rotation(width):
    """The network rotates q and k as permuted views of the qkv projection (no copy first); rows of odd width put
    the pairs at odd offsets, where the rotation must copy first and still be right."""
    qkv = torch.randn(2, 7, 3, 2, width, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    q, k, _ = qkv[..., :16].permute(2, 0, 3, 1, 4)  # each (B, H, T, 16), strided
    cos, sin = rotary_tables(torch.arange(7), 16)
    for x in (q, k):
        assert torch.allclose(apply_rotary_complex(x, cos, sin), apply_rotary(x, cos, sin), atol=1e-12)

def test_explicit_mask_equals_written_out_attention():
    g = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(2, 2, 5, 8, generator=g, dtype=torch.float64) for _ in range(3))
    mask = torch.rand(5, 5, generator=g) < 0.6
    mask |= torch.eye(5, dtype=torch.bool)  # every query sees at least itself
    ref = attention_reference(q, k, v, mask=mask)
    scores = (q @ k.transpose(-2, -1) / 8 ** 0.5).masked_fill(~mask, float("-inf"))
    assert torch.allclose(ref, torch.softmax(scores, -1) @ v, atol=1e-12)
    assert torch.allclose(attention(q, k, v, fused=True, mask=mask), ref, atol=1e-12)


def test_a_cache_read_without_storing_leaves_the_cache_as_it_was():
    net = _net(False, False)
    x = torch.randint(10, (2, 8), generator=torch.Generator().manual_seed(8))
    cache = KVCache(net.n_layers)
    net(x[:, :4], cache=cache)
    peek = net(x[:, 4:], cache=cache, store=False)
    assert cache.length == 4
    # a bidirectional block that reads the prefix: the same as the full forward for the last 4 queries when the
    # first 4 cannot see them (prefix-causal mask)
    mask = torch.ones(8, 8, dtype=torch.bool)
    mask[:4, 4:] = False
    assert torch.allclose(peek, net(x, mask=mask)[:, 4:], atol=1e-10)


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(DlcourseError, match="heads"):
        Transformer(10, 9, dim=30, n_heads=4)
    net = _net(False, True)
    with pytest.raises(DlcourseError, match="sigma_bar"):
        net(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(DlcourseError, match="token ids"):
        net(torch.zeros(2, 5), torch.ones(2))
    with pytest.raises(DlcourseError, match="shape"):
        net(torch.zeros(2, 5, dtype=torch.long), torch.ones(3))

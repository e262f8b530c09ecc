"""Block diffusion (dlcourse.discrete.bd3): the attention mask against its written-out definition, b = L against
MDLM, b = 1 against a written-out autoregressive evaluation, and the sampler's KV cache against the full forward."""

import math

import pytest
import torch

from dlcourse.discrete.bd3 import (bd3_logits, bd3_loss, bd3_nelbo_estimate, bd3_sample, block_attention_mask,
                                   block_attention_mask_reference)
from dlcourse.discrete.graphs import Absorbing
from dlcourse.discrete.losses import mdlm_nelbo_estimate, subs_log_probs
from dlcourse.discrete.schedules import LogLinearSchedule
from dlcourse.errors import ConfigError
from dlcourse.nn.transformer import KVCache, Transformer

N, MASK = 5, 5  # five tokens and the mask


def _net(seed=0):
    torch.manual_seed(seed)
    net = Transformer(N + 1, N, dim=32, n_layers=2, n_heads=4, time_conditioning=False).double().eval()
    with torch.no_grad():  # zero-initialised heads would hide bugs
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return net


@pytest.mark.parametrize("length,block", [(8, 1), (8, 2), (8, 4), (8, 8), (6, 3)])
def test_mask_equals_its_written_out_definition(length, block):
    assert torch.equal(block_attention_mask(length, block), block_attention_mask_reference(length, block))


def test_block_size_must_divide_the_length():
    with pytest.raises(ConfigError, match="divide"):
        block_attention_mask(8, 3)


def test_one_block_is_mdlm():
    # b = L: no clean block comes before, so BD3's estimate is MDLM's, draw for draw
    net, graph, sched = _net(), Absorbing(N), LogLinearSchedule()
    x0 = torch.randint(N, (4, 8), generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.1, 0.4, 0.7, 0.95], dtype=torch.float64)
    bd3 = bd3_nelbo_estimate(net, x0, t[:, None], sched, graph, 8, torch.Generator().manual_seed(2))
    mdlm = mdlm_nelbo_estimate(lambda x, s: net(x), x0, t, sched, graph, torch.Generator().manual_seed(2))
    assert torch.allclose(bd3, mdlm, rtol=1e-12, atol=1e-12)


def _ar_written_out(net, x0):
    """-log p(x) of the b = 1 model token by token: the mask at position i reads the clean x_{<i} (a second,
    sequential implementation: one call per position, a hand-made mask)."""
    total = torch.zeros(x0.shape[0], dtype=torch.float64)
    for i in range(x0.shape[1]):
        inp = torch.cat([torch.full((x0.shape[0], 1), MASK), x0[:, :i]], dim=1)
        positions = torch.cat([torch.tensor([i]), torch.arange(i)])
        mask = torch.ones(i + 1, i + 1, dtype=torch.bool)
        mask[1:, 0] = False  # clean tokens never read the mask
        mask[1:, 1:] = torch.ones(i, i, dtype=torch.bool).tril()
        logp = torch.log_softmax(net(inp, positions=positions, mask=mask)[:, 0], -1)  # (B, N)
        total -= logp.gather(-1, x0[:, i:i + 1]).squeeze(-1)
    return total


def test_block_size_one_is_an_autoregressive_model():
    # b = 1: a masked token's prediction reads only x_{<i}, whatever is masked elsewhere; so E_mask[estimate at t]
    # = -α'(t) Σ_i -log p(x_i | x_{<i}), and the bound ∫ -α' dt (AR NLL) + prior is the AR likelihood of the same
    # network up to the schedule's ε: (1 - ε) NLL + ε L log N.
    net, graph, sched = _net(), Absorbing(N), LogLinearSchedule(eps=1e-3)
    x0 = torch.randint(N, (3, 6), generator=torch.Generator().manual_seed(3))
    all_masked = torch.full_like(x0, MASK)
    ref = subs_log_probs(bd3_logits(net, all_masked, x0, 1), all_masked, MASK)
    for seed in range(5):  # any other mask pattern: the same predictions at the masked positions
        pattern = torch.rand(x0.shape, generator=torch.Generator().manual_seed(seed)) < 0.5
        x_t = torch.where(pattern, torch.full_like(x0, MASK), x0)
        lp = subs_log_probs(bd3_logits(net, x_t, x0, 1), x_t, MASK)
        assert torch.allclose(lp[pattern], ref[pattern], atol=1e-12)
    nll = -ref.gather(-1, x0.unsqueeze(-1)).squeeze(-1).sum(-1)  # (B,)
    assert torch.allclose(nll, _ar_written_out(net, x0), atol=1e-10)
    # the estimator's mean over masks at t = 0.3 (2000 draws, 5 SE) is -α'(0.3) NLL = (1 - ε) NLL
    t = torch.full((2000, 6), 0.3, dtype=torch.float64)
    with torch.no_grad():
        est = bd3_nelbo_estimate(net, x0[:1].expand(2000, -1), t, sched, graph, 1, torch.Generator().manual_seed(4))
    assert abs(float(est.mean()) - (1 - 1e-3) * float(nll[0])) < 5 * float(est.std()) / math.sqrt(2000)


def test_kv_cache_of_finished_blocks_equals_the_full_forward():
    net, block = _net(), 2
    x0 = torch.randint(N, (2, 8), generator=torch.Generator().manual_seed(5))
    for j in range(4):
        lo, hi = j * block, (j + 1) * block
        cache = KVCache(net.n_layers)
        for i in range(j):  # the finished blocks, as bd3_sample stores them
            net(x0[:, i * block:(i + 1) * block], None, cache=cache, positions=torch.arange(i * block, (i + 1) * block))
        z = x0[:, lo:hi].clone()
        z[:, 0] = MASK  # the block being denoised
        cached = net(z, None, cache=cache, positions=torch.arange(lo, hi), store=False)
        x_t = x0.clone()
        x_t[:, lo:hi] = z
        full = bd3_logits(net, x_t, x0, block)[:, lo:hi]
        assert torch.allclose(cached, full, atol=1e-10)
        assert cache.length == lo  # reading did not store


@pytest.mark.parametrize("confidence", [False, True])
def test_sampler_fills_every_position_and_counts_calls(confidence):
    net, graph, sched = _net().float(), Absorbing(N), LogLinearSchedule()
    out = bd3_sample(net, sched, graph, 3, 8, block=4, steps=2, confidence=confidence,
                     generator=torch.Generator().manual_seed(6), record=True)
    assert out.tokens.shape == (3, 8) and (out.tokens != MASK).all()
    assert out.nfe == 2 * 2 + 1  # two steps per block, and the first block's entry into the cache
    assert len(out.trajectory) == 5 and (out.trajectory[2][:, 4:] == MASK).all()  # block 2 waits for block 1


def test_loss_trains():
    net = _net().float()
    graph, sched = Absorbing(N), LogLinearSchedule()
    x0 = torch.arange(8).remainder(N).expand(32, -1)  # one sequence: the loss must fall towards 0
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    first = None
    for step in range(60):
        loss, _ = bd3_loss(net, x0, sched, graph, 4, generator=torch.Generator().manual_seed(step))
        first = first if first is not None else float(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.2 * first

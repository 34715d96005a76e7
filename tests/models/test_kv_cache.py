"""Cached decoding equals the uncached forward: tiny-llama, its supernet and derived subnets of random architectures."""

import random

import pytest
import torch

import nas
from nas.errors import ConfigError, ModelError
from nas.models import KVCache, TransformerModel, greedy_generate, load_model
from nas.models.transformer import Embeddings

TOL = 1e-4


@pytest.fixture(scope="module")
def tiny():
    lm = load_model("tiny-llama")
    m = TransformerModel(lm.dims)
    m.load_state_dict(lm.state)
    return m.eval()


@pytest.fixture(scope="module")
def supernet():
    return nas.Supernet.build(nas.load_space("tiny-llama"))


def ids_of(b=2, t=12, seed=0, vocab=128):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, vocab, (b, t), generator=g)


def decode_all(model, ids, prefill, mask=None, control=None):
    """Hidden states of every token: prefill ``prefill`` tokens, then one token per step."""
    m0 = None if mask is None else mask[:, :prefill]
    h, cache = model.extend(ids[:, :prefill], m0, control=control)
    hs = [h]
    for j in range(prefill, ids.shape[1]):
        mj = None if mask is None else mask[:, j : j + 1]
        h, cache = model.extend(ids[:, j : j + 1], mj, cache=cache, control=control)
        hs.append(h)
    return torch.cat(hs, 1), cache


@torch.no_grad()
def test_full_model_cached_equals_uncached(tiny):
    ids = ids_of()
    full = tiny(ids)
    for prefill in (1, 5, 11):
        h, cache = decode_all(tiny, ids, prefill)
        assert float((h - full).abs().max()) <= TOL
        assert float((tiny.logits(h) - tiny.logits(full)).abs().max()) <= TOL
    assert cache.length == ids.shape[1] and cache.num_layers == 2 and cache.batch_size == 2
    k, v = cache.layer(0)
    assert k.shape == v.shape == (2, 2, 12, 8)  # (B, kv heads, T, head_dim)
    assert cache.nbytes() == 2 * 2 * k.numel() * 4


@torch.no_grad()
def test_left_padding_is_masked_like_the_uncached_forward(tiny):
    ids = ids_of()
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    full = tiny(ids, mask)
    h, _ = decode_all(tiny, ids, 6, mask)
    valid = mask.bool()
    assert float((h - full)[valid].abs().max()) <= TOL


@torch.no_grad()
def test_a_cache_is_a_value(tiny):
    ids = ids_of(b=1, t=8)
    _, cache = tiny.extend(ids[:, :6])
    a, _ = tiny.extend(ids[:, 6:7], cache=cache)
    b, _ = tiny.extend(ids[:, 6:7], cache=cache)  # same cache again: same answer
    assert cache.length == 6 and torch.equal(a, b)


@pytest.mark.parametrize("seed", range(6))
@torch.no_grad()
def test_derived_subnet_cached_equals_uncached(supernet, seed):
    space = supernet.space
    arch = space.sample(random.Random(seed))
    sub = nas.derive(supernet, arch)
    model = sub.model
    ids = ids_of(seed=seed)
    full = model(ids)
    h, cache = decode_all(model, ids, 4)
    assert float((model.logits(h) - model.logits(full)).abs().max()) <= TOL
    assert cache.num_layers == len(model.layer_dims)
    for k, ld in enumerate(model.layer_dims):  # each kept layer caches its own KV heads
        assert cache.layer(k)[0].shape[1] == ld.num_kv_heads(space.dims)
    out = greedy_generate(model, ids[:1, :5], 6)
    # greedy with the cache = argmax of the uncached forward, step by step
    ref = ids[:1, :5]
    for _ in range(6):
        ref = torch.cat((ref, model.logits(model(ref))[:, -1].argmax(-1, keepdim=True)), 1)
    assert torch.equal(out, ref)


@torch.no_grad()
def test_supernet_control_cached_equals_uncached(supernet):
    space = supernet.space
    arch = space.sample(random.Random(11))
    ctl = supernet.control(supernet.one_hot(arch))
    ids = ids_of(seed=3)
    full = supernet.model(ids, None, ctl)
    h, _ = decode_all(supernet.model, ids, 3, control=ctl)
    assert float((h - full).abs().max()) <= TOL
    lg = supernet.model.logits(full, ctl)
    assert lg.shape == (2, 12, space.dims.vocab_size)


@torch.no_grad()
def test_greedy_generate_stops_at_eos(tiny):
    ids = ids_of(b=1, t=4)
    free = greedy_generate(tiny, ids, 8)
    first = int(free[0, 4])
    stopped = greedy_generate(tiny, ids, 8, eos_token_id=first)
    assert stopped.tolist() == free[:, :5].tolist()
    assert greedy_generate(tiny, ids, 0).tolist() == ids.tolist()


def test_too_long_prompt_is_a_config_error_before_compute(tiny, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("computed before the check")

    monkeypatch.setattr(Embeddings, "forward", boom)
    n = tiny.dims.max_positions  # 64
    with pytest.raises(ConfigError, match="max_positions"):
        tiny.extend(torch.ones(1, n + 1, dtype=torch.long))
    with pytest.raises(ConfigError, match="max_positions"):
        greedy_generate(tiny, torch.ones(1, n - 4, dtype=torch.long), 5)
    cache = KVCache(tuple(torch.zeros(1, 2, n, 8) for _ in range(2)), tuple(torch.zeros(1, 2, n, 8) for _ in range(2)),
                    torch.ones(1, n, dtype=torch.long))
    with pytest.raises(ConfigError, match="64 cached"):
        tiny.extend(torch.ones(1, 1, dtype=torch.long), cache=cache)
    with pytest.raises(ConfigError, match="batch"):
        tiny.extend(torch.ones(2, 1, dtype=torch.long), cache=KVCache(cache.keys, cache.values, cache.mask[:, :4]))


def test_bert_has_no_cache_nor_lm_head():
    lm = load_model("tiny-bert")
    m = TransformerModel(lm.dims)
    with pytest.raises(ModelError, match="llama"):
        m.extend(torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(ModelError, match="llama"):
        m.logits(torch.zeros(1, 3, lm.dims.hidden))

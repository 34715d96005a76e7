"""Supernet: reproduces the pretrained model, trains, and derives exact subnets."""

import math
import random

import pytest
import torch

from nas.errors import ArchError, ModelError
from nas.models import load_model
from nas.spaces import format_arch, load_space
from nas.supernet import Supernet, derive, load_subnet
from tests.conftest import batch

TINY = ["tiny-bert", "tiny-llama"]


@pytest.fixture(scope="module", params=TINY)
def tiny(request):
    space = load_space(request.param)
    return space, Supernet.build(space)


def test_full_architecture_reproduces_original(tiny):
    space, net = tiny
    ref = load_model(space.model).reference()
    ids, mask = batch(space.dims.vocab_size)
    with torch.no_grad():
        ours = net(ids, mask, net.one_hot(space.full()))
        theirs = ref(input_ids=ids, attention_mask=mask).last_hidden_state
    assert float((ours - theirs)[mask.bool()].abs().max()) <= 1e-4


def test_real_minilm_full_architecture(minilm_space, minilm_supernet):
    ref = load_model("minilm-l6").reference()
    ids, mask = batch(minilm_space.dims.vocab_size, t=40)
    with torch.no_grad():
        ours = minilm_supernet(ids, mask, minilm_supernet.one_hot(minilm_space.full()))
        theirs = ref(input_ids=ids, attention_mask=mask).last_hidden_state
    assert float((ours - theirs)[mask.bool()].abs().max()) <= 1e-4


def test_importance_order_is_descending(minilm_supernet):
    from nas.supernet.importance import importance_scores
    from nas.supernet.supernet import calibration_batch

    scores = importance_scores(minilm_supernet.model, *calibration_batch(load_model("minilm-l6")))
    for heads, neurons in scores:
        assert torch.all(heads[:-1] >= heads[1:] - 1e-6)
        assert torch.all(neurons[:-1] >= neurons[1:] - 1e-6)


def test_gradients_reach_weights_and_logits(tiny):
    space, net = tiny
    net.zero_grad()
    ids, mask = batch(space.dims.vocab_size)
    out = net(ids, mask, net.sample(1.0, hard=False, generator=torch.Generator().manual_seed(0)))
    out.pow(2).mean().backward()
    for c in space:
        if len(c.options) > 1:
            g = net.logits(c.label).grad
            assert g is not None and g.abs().sum() > 0, c.label
    assert net.model.layers[0].ffn.up.weight.grad.abs().sum() > 0


def test_straight_through_hard_sample_trains_logits(tiny):
    space, net = tiny
    net.zero_grad()
    ids, mask = batch(space.dims.vocab_size)
    w = net.sample(1.0, hard=True, generator=torch.Generator().manual_seed(1))
    net(ids, mask, w).pow(2).mean().backward()
    kept = [i for i in range(space.dims.num_layers) if float(w[f"layer{i}.keep"][0].detach()) == 1.0]
    assert kept, "seed 1 should keep a layer"
    for i in kept:
        assert net.logits(f"layer{i}.heads").grad.abs().sum() > 0
        assert net.logits(f"layer{i}.ffn.bits").grad.abs().sum() > 0


def test_probs_and_export(tiny):
    space, net = tiny
    with torch.no_grad():
        for c in space:
            net.logits(c.label).zero_()
            net.logits(c.label)[-1] = 5.0
    probs = net.probs()
    assert set(probs) == set(space.labels)
    assert all(abs(float(p.sum()) - 1) < 1e-6 for p in probs.values())
    arch = net.export()
    assert space.validate(arch) == arch
    assert arch["layer0.attn.bits"] == 4
    # every keep logit prefers "skip": export still keeps one layer
    assert space.kept_layers(arch)
    with torch.no_grad():
        for c in space:
            net.logits(c.label).zero_()


def test_favour_puts_the_prior_on_the_given_architecture(tiny):
    space, net = tiny
    try:
        net.favour(space.full(), 2.0)
        assert net.export() == space.full()
        for c in space:
            p = net.probs()[c.label]
            n = len(c.options)
            assert float(p[c.index(space.full()[c.label])]) == pytest.approx(math.exp(2) / (math.exp(2) + n - 1))
        with pytest.raises(ValueError, match="strength"):
            net.favour(space.full(), -1.0)
    finally:
        with torch.no_grad():
            for c in space:
                net.logits(c.label).zero_()


@pytest.mark.parametrize("name", TINY)
def test_derive_parity_random_architectures(name):
    space = load_space(name)
    net = Supernet.build(space)
    rng = random.Random(0)
    ids, mask = batch(space.dims.vocab_size)
    with torch.no_grad():
        for _ in range(25):
            arch = space.sample(rng)
            sub = derive(net, arch)
            a, b = net(ids, mask, net.one_hot(arch)), sub(ids, mask)
            assert float((a - b)[mask.bool()].abs().max()) <= 1e-4, format_arch(space, arch)
            kept = space.kept_layers(arch)
            assert len(sub.model.layers) == len(kept)
            for blk, i in zip(sub.model.layers, kept):
                assert blk.attn.num_heads == arch[f"layer{i}.heads"]
                assert blk.ffn.intermediate == arch[f"layer{i}.ffn"]


def test_real_minilm_derive_parity(minilm_space, minilm_supernet):
    rng = random.Random(3)
    ids, mask = batch(minilm_space.dims.vocab_size, t=33)
    with torch.no_grad():
        for _ in range(3):
            arch = minilm_space.sample(rng)
            sub = derive(minilm_supernet, arch)
            d = (minilm_supernet(ids, mask, minilm_supernet.one_hot(arch)) - sub(ids, mask))[mask.bool()]
            assert float(d.abs().max()) <= 1e-4


def test_size_report_counts_bits():
    space = load_space("tiny-bert")
    net = Supernet.build(space)
    full = derive(net, space.full()).size()
    assert full.bytes == full.fp32_bytes == 4 * sum(p.numel() for p in net.model.parameters())
    small = derive(net, {**space.full(), "layer0.attn.bits": 8}).size()
    # q/k/v/o of layer 0: 4 × (32×32) weights at 1 byte + 32 fp32 scales each, instead of 4 bytes
    assert full.bytes - small.bytes == 4 * (32 * 32 * 3 - 32 * 4)
    assert small.params == full.params


def test_save_load_round_trip(tmp_path):
    space = load_space("tiny-llama")
    net = Supernet.build(space)
    arch = space.sample(random.Random(5))
    sub = derive(net, arch)
    out = sub.save(tmp_path / "sub")
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "subnet.json"]
    back = load_subnet(out)
    ids, mask = batch(space.dims.vocab_size)
    with torch.no_grad():
        assert torch.equal(sub(ids, mask), back(ids, mask))
    assert back.arch == sub.arch and back.space == space
    # corrupt weights → typed error
    (out / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match="corrupt"):
        load_subnet(out)
    with pytest.raises(ModelError, match="not found"):
        load_subnet(tmp_path / "missing")


def test_derive_rejects_bad_arch(tiny):
    space, net = tiny
    with pytest.raises(ArchError, match="layer0.ffn"):
        derive(net, {**space.full(), "layer0.ffn": 7})

import random

import pytest
import torch

from nas.errors import ArchError, LatencyTableError
from nas.latency.predictor import Predictor, expected_latency, latency_ms, raw_latency_ms, size_bytes
from nas.latency.table import required_keys
from tests.latency.conftest import ENTRIES, make_table

BOTH = {"layer0.attn.bits": 8, "layer1.keep": 1, "layer1.attn.bits": 32}
ONE = {"layer0.attn.bits": 32, "layer1.keep": 0, "layer1.attn.bits": 8}


def test_required_keys_are_the_six_rows(hand_space):
    assert required_keys(hand_space) == sorted(ENTRIES)


def test_latency_of_concrete_archs_by_hand(hand_space, hand_table):
    # raw = overhead .5 + rest .25 + embed 1 + (attn8 1.5 + ffn 3) + (attn32 2 + ffn 3) = 11.25
    assert raw_latency_ms(hand_table, hand_space, BOTH) == pytest.approx(11.25)
    # calibrated = 2 * 11.25 + 0.1 * 2 layers + 0.3
    assert latency_ms(hand_table, hand_space, BOTH) == pytest.approx(23.0)
    # one layer: raw = 1.75 + 2 + 3 = 6.75 -> 2 * 6.75 + 0.1 + 0.3
    assert latency_ms(hand_table, hand_space, ONE) == pytest.approx(13.9)
    assert Predictor(hand_table, hand_space).latency_ms(ONE) == pytest.approx(13.9)


def test_uncalibrated_table_is_the_plain_sum(hand_space):
    table = make_table(hand_space, calibration={})
    assert latency_ms(table, hand_space, BOTH) == pytest.approx(11.25)


def _probs():
    return {
        "layer0.attn.bits": torch.tensor([0.5, 0.5]),
        "layer1.keep": torch.tensor([0.25, 0.75]),  # options (1, 0): keep with probability 1/4
        "layer1.attn.bits": torch.tensor([1.0, 0.0]),
    }


def test_expected_latency_by_hand(hand_space, hand_table):
    # 2*(0.5+0.25+1) + 0.3                       = 3.8    (fixed part)
    # layer 0 always kept: 2*(0.5*2 + 0.5*1.5 + 3) + 0.1 = 9.6
    # layer 1 kept w.p. 1/4: 0.25 * (2*(2 + 3) + 0.1)    = 2.525
    e = expected_latency(hand_table, hand_space, _probs())
    assert float(e) == pytest.approx(15.925)


def test_expected_latency_of_one_hot_equals_latency(hand_space, hand_table):
    pred = Predictor(hand_table, hand_space)
    for arch in (BOTH, ONE):
        one_hot = {c.label: torch.tensor([1.0 if o == arch[c.label] else 0.0 for o in c.options]) for c in hand_space}
        assert float(pred.expected_latency(one_hot)) == pytest.approx(pred.latency_ms(arch))


def test_gradient_wrt_logits_by_hand(hand_space, hand_table):
    pred = Predictor(hand_table, hand_space)
    z = torch.log(torch.tensor([0.25, 0.75])).requires_grad_(True)
    probs = _probs()
    probs["layer1.keep"] = torch.softmax(z, 0)
    pred.expected_latency(probs).backward()
    # dE/dp = g = [2*(2+3)+0.1, 0] = [10.1, 0]; dE/dz = p * (g - p.g) with p.g = 2.525
    assert z.grad.tolist() == pytest.approx([0.25 * (10.1 - 2.525), 0.75 * (0 - 2.525)])


def test_gradient_matches_finite_differences(minilm_space):
    from nas.latency.table import LatencyTable

    rng = random.Random(0)
    keys = required_keys(minilm_space)
    table = LatencyTable(space_name=minilm_space.name, space_hash=minilm_space.hash, device={}, runtime={},
                         threads=1, batch=1, seq=8, entries={k: {"median_ms": rng.uniform(0.1, 5)} for k in keys},
                         calibration={"scale": 1.3, "per_layer_ms": 0.2, "constant_ms": 1.0})
    pred = Predictor(table, minilm_space)
    g = torch.Generator().manual_seed(0)
    logits = {c.label: torch.randn(len(c.options), generator=g, dtype=torch.float64) for c in minilm_space}
    for lab in ("layer2.heads", "layer4.ffn.bits", "layer5.keep", "embed.bits"):
        def f(z):
            probs = {k: torch.softmax(z if k == lab else v, 0) for k, v in logits.items()}
            return pred.expected_latency(probs)

        assert torch.autograd.gradcheck(f, (logits[lab].clone().requires_grad_(True),), eps=1e-6, atol=1e-6)


def test_min_latency_is_the_smallest_arch(hand_space, hand_table):
    # int8 attention everywhere, layer 1 skipped: 2*(1.75 + 1.5 + 3) + 0.1 + 0.3
    assert Predictor(hand_table, hand_space).min_latency_ms() == pytest.approx(12.9)
    assert Predictor(hand_table, hand_space).min_latency_ms() == pytest.approx(
        latency_ms(hand_table, hand_space, {"layer0.attn.bits": 8, "layer1.keep": 0, "layer1.attn.bits": 8}))


def test_missing_entry_names_the_key(hand_space):
    entries = {k: v for k, v in ENTRIES.items() if k != "attn:heads=2:bits=8"}
    table = make_table(hand_space, entries=entries)
    with pytest.raises(LatencyTableError, match="attn:heads=2:bits=8"):
        latency_ms(table, hand_space, BOTH)
    with pytest.raises(LatencyTableError, match="attn:heads=2:bits=8"):
        Predictor(table, hand_space)


def test_other_space_hash_is_refused(hand_space, minilm_space):
    table = make_table(hand_space, space_hash=minilm_space.hash)
    with pytest.raises(LatencyTableError, match="space hash"):
        Predictor(table, hand_space)
    with pytest.raises(LatencyTableError, match="space hash"):
        latency_ms(table, hand_space, BOTH)


def test_bad_arch_and_probs_name_the_label(hand_space, hand_table):
    with pytest.raises(ArchError, match="layer1.keep"):
        latency_ms(hand_table, hand_space, {"layer0.attn.bits": 8, "layer1.attn.bits": 8})
    probs = _probs()
    del probs["layer1.keep"]
    with pytest.raises(ArchError, match="layer1.keep"):
        Predictor(hand_table, hand_space).expected_latency(probs)
    probs = _probs()
    probs["layer0.attn.bits"] = torch.tensor([1.0, 0.0, 0.0])
    with pytest.raises(ArchError, match="layer0.attn.bits"):
        Predictor(hand_table, hand_space).expected_latency(probs)


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-llama"])
def test_size_bytes_equals_derived_size(name):
    from nas.spaces import load_space
    from nas.supernet import Supernet, derive

    space = load_space(name)
    net = Supernet.build(space)
    rng = random.Random(1)
    for arch in [space.full(), space.smallest()] + [space.sample(rng) for _ in range(4)]:
        assert size_bytes(space, arch) == derive(net, arch).size().bytes


PER_PRECISION = {"form": "per_precision", "scale": 1.0, "bit_scale": {"32": 1.0, "8": 3.0}, "per_layer_ms": 0.0,
                 "constant_ms": 0.5}


def test_per_precision_latency_by_hand(hand_space):
    table = make_table(hand_space, calibration=PER_PRECISION)
    # fixed .75 (scale 1) + embed32 1 + layer0 (3 × attn8 1.5 + ffn 3) + layer1 (attn32 2 + ffn 3) + .5
    assert latency_ms(table, hand_space, BOTH) == pytest.approx(14.75)
    # fixed .75 + embed 1 + attn32 2 + ffn 3 + .5: no int8 block, so the int8 scale does not enter
    assert latency_ms(table, hand_space, ONE) == pytest.approx(7.25)
    pred = Predictor(table, hand_space)
    # fixed + embed + const = 2.25; layer 0: .5 × 2 + .5 × 4.5 + 3 = 6.25; layer 1 w.p. 1/4: .25 × (2 + 3)
    assert float(pred.expected_latency(_probs())) == pytest.approx(9.75)
    for arch in (BOTH, ONE):
        one_hot = {c.label: torch.tensor([1.0 if o == arch[c.label] else 0.0 for o in c.options]) for c in hand_space}
        assert float(pred.expected_latency(one_hot)) == pytest.approx(pred.latency_ms(arch))
    # int8 attention is now dearer than fp32 (4.5 > 2): the fastest keeps fp32
    assert pred.min_latency_ms() == pytest.approx(7.25)


def test_raw_by_bits_splits_the_block_sum(hand_space, hand_table):
    from nas.latency.predictor import raw_by_bits, space_bits

    assert space_bits(hand_space) == (32, 8)
    # fp32: embed 1 + ffn 3 + attn 2 + ffn 3; int8: attn 1.5; the fixed .75 is in neither
    assert raw_by_bits(hand_table, hand_space, BOTH) == pytest.approx({32: 9.0, 8: 1.5})
    assert raw_by_bits(hand_table, hand_space, ONE) == pytest.approx({32: 6.0, 8: 0.0})
    assert raw_latency_ms(hand_table, hand_space, BOTH) - sum(raw_by_bits(hand_table, hand_space, BOTH).values()) \
        == pytest.approx(0.75)


def test_per_precision_gradient_matches_finite_differences(minilm_space):
    from nas.latency.table import LatencyTable

    rng = random.Random(1)
    table = LatencyTable(space_name=minilm_space.name, space_hash=minilm_space.hash, device={}, runtime={},
                         threads=1, batch=1, seq=8,
                         entries={k: {"median_ms": rng.uniform(0.1, 5)} for k in required_keys(minilm_space)},
                         calibration={"form": "per_precision", "scale": 1.0, "constant_ms": -0.4,
                                      "bit_scale": {"32": 0.9, "16": 1.1, "8": 1.8, "4": 1.3}})
    pred = Predictor(table, minilm_space)
    g = torch.Generator().manual_seed(1)
    logits = {c.label: torch.randn(len(c.options), generator=g, dtype=torch.float64) for c in minilm_space}
    for lab in ("layer1.attn.bits", "layer3.ffn.bits", "embed.bits"):
        def f(z):
            return pred.expected_latency({k: torch.softmax(z if k == lab else v, 0) for k, v in logits.items()})

        assert torch.autograd.gradcheck(f, (logits[lab].clone().requires_grad_(True),), eps=1e-6, atol=1e-6)

"""The decoder benchmark's baselines and configuration, on the real SmolLM2 space (no model loaded)."""

import pytest

from experiments.studies.benchmark_minilm_cpu.config import load_config
from experiments.studies.benchmark_smollm2_cpu.baselines import depth_arch, skippable, width_arch, with_bits
from experiments.studies.benchmark_smollm2_cpu.config import DEFAULT_CONFIG, DecoderBenchConfig
from nas.errors import ConfigError
from nas.spaces import load_space


@pytest.fixture(scope="module")
def space():
    return load_space("smollm2-135m")


def test_width_arch_cuts_every_layer_to_the_same_fraction(space):
    arch = width_arch(space, 0.75)
    assert {arch[f"layer{i}.heads"] for i in range(30)} == {6}  # 0.75 · 9 → 6 (whole KV groups of 3)
    assert {arch[f"layer{i}.ffn"] for i in range(30)} == {1152}
    assert all(arch[f"layer{i}.keep"] == 1 for i in range(30))
    half = width_arch(space, 0.5)
    assert half["layer7.heads"] == 3 and half["layer7.ffn"] == 768


def test_depth_arch_drops_the_least_important_skippable_layers(space):
    ppl = [100.0 + i for i in range(30)]
    ppl[5], ppl[20], ppl[0] = 1.0, 2.0, 0.5  # layer 0 is kept by the space whatever its score
    arch, dropped = depth_arch(space, ppl, 2)
    assert dropped == [5, 20] and arch["layer5.keep"] == 0 and arch["layer20.keep"] == 0 and arch["layer0.keep"] == 1
    assert 0 not in skippable(space) and len(skippable(space)) == 26
    with pytest.raises(ConfigError, match="depth_drops: 27 layers asked, the space may drop 26"):
        depth_arch(space, ppl, 27)


def test_with_bits_sets_every_precision_of_a_deploy(space):
    arch = with_bits(space, space.full(), "int4")
    assert arch["embed.bits"] == 8 and {arch[f"layer{i}.ffn.bits"] for i in range(30)} == {4}
    assert with_bits(space, arch, "fp32") == dict(space.full())
    with pytest.raises(ConfigError, match="deploys: unknown deploy 'int2'"):
        with_bits(space, space.full(), "int2")


def test_config_names_the_bad_key():
    cfg = load_config(DEFAULT_CONFIG, cls=DecoderBenchConfig)
    assert cfg.test_items >= 1000 and cfg.measure.prompt_tokens == 128 and cfg.measure.context == 256
    d = cfg.to_dict()
    with pytest.raises(ConfigError, match="^test_itemz: unknown benchmark key"):
        DecoderBenchConfig.from_dict({**d, "test_itemz": 3})
    with pytest.raises(ConfigError, match="^latency_tables: expected exactly ttft_ms, tpot_ms"):
        DecoderBenchConfig.from_dict({**d, "latency_tables": {"ttft_ms": "x"}})
    with pytest.raises(ConfigError, match="^measure.seq: unknown key"):
        DecoderBenchConfig.from_dict({**d, "measure": {"seq": 3}})

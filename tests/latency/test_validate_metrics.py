import pytest

from nas.errors import ConfigError
from nas.latency.builder import calibration_archs, table_filename
from nas.latency.validate import agreement


def test_agreement_by_hand():
    # errors: 0, 0, (3-4)/4 = -25 %, +5 %
    a = agreement([1.0, 2.0, 3.0, 1.05], [1.0, 2.0, 4.0, 1.0])
    assert a["mape"] == pytest.approx((0 + 0 + 0.25 + 0.05) / 4)
    assert a["within_10pct"] == pytest.approx(3 / 4)
    assert a["max_abs_pct"] == pytest.approx(0.25)
    assert a["mean_signed_pct"] == pytest.approx((-0.25 + 0.05) / 4)
    # ranks: predicted (1, 3, 4, 2), measured (1.5, 3, 4, 1.5) -> Pearson of ranks 4.5 / sqrt(5 * 4.5)
    assert a["spearman"] == pytest.approx(4.5 / (5 * 4.5) ** 0.5)
    perfect = agreement([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    assert perfect["spearman"] == pytest.approx(1.0) and perfect["kendall"] == pytest.approx(1.0)
    assert perfect["within_10pct"] == 0.0 and perfect["mape"] == pytest.approx(0.5)


def test_agreement_needs_pairs():
    with pytest.raises(ConfigError, match="samples"):
        agreement([1.0], [1.0])


def test_calibration_archs_anchor_full_and_smallest(hand_space):
    archs = calibration_archs(hand_space, 4, seed=0)
    assert archs[0] == hand_space.full() and archs[1] == hand_space.smallest() and len(archs) == 4
    assert calibration_archs(hand_space, 4, seed=0) == archs  # seeded


def test_calibration_archs_anchor_every_precision_then_spread_over_depths():
    from nas.latency.builder import precision_anchors
    from nas.spaces.choice import layer_label
    from nas.spaces import load_space

    space = load_space("minilm-l6")
    archs = calibration_archs(space, 17, seed=0)
    anchors = precision_anchors(space)
    assert archs[:2] == [space.full(), space.smallest()] and archs[2:2 + len(anchors)] == anchors
    # the smallest architecture at 32, 16 and 8 bits (smallest() is the 4-bit one): one layer each
    assert [a["embed.bits"] for a in anchors] == [32, 16, 8]
    for a in anchors:
        (i,) = space.kept_layers(a)
        assert space.value(a, layer_label(i, "ffn.bits")) == space.value(a, layer_label(i, "attn.bits")) == a["embed.bits"]
    depths = [len(space.kept_layers(a)) for a in archs[2 + len(anchors):]]
    assert sorted(depths) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]  # uniform sampling would pile up at 3-4


def test_table_filename():
    assert table_filename("minilm-l6", "onnxruntime-cpu", 1, 1, 128) == "minilm-l6.onnxruntime-cpu.t1.b1.s128.json"

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


def test_calibration_archs_spread_over_depths():
    from nas.spaces import load_space

    space = load_space("minilm-l6")
    depths = [len(space.kept_layers(a)) for a in calibration_archs(space, 14, seed=0)]
    assert depths[:2] == [6, 1]
    assert sorted(depths[2:]) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]  # uniform sampling would pile up at 3-4


def test_table_filename():
    assert table_filename("minilm-l6", "onnxruntime-cpu", 1, 1, 128) == "minilm-l6.onnxruntime-cpu.t1.b1.s128.json"

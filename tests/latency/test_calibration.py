import pytest

from nas.errors import LatencyTableError
from nas.latency.calibration import fit_calibration


def test_recovers_exact_terms():
    raw, layers = [10.0, 20.0, 15.0, 40.0], [1, 2, 3, 6]
    measured = [1.2 * r + 0.5 * n + 2.0 for r, n in zip(raw, layers)]  # 14.5, 27, 21.5, 53
    cal = fit_calibration(raw, layers, measured)
    assert cal["scale"] == pytest.approx(1.2)
    assert cal["per_layer_ms"] == pytest.approx(0.5)
    assert cal["constant_ms"] == pytest.approx(2.0)
    assert cal["fit_mape"] == pytest.approx(0.0, abs=1e-9)
    # raw misses by 4.5/14.5, 7/27, 6.5/21.5, 13/53
    assert cal["raw_mape"] == pytest.approx((4.5 / 14.5 + 7 / 27 + 6.5 / 21.5 + 13 / 53) / 4)
    assert cal["samples"] == 4


def test_too_few_layer_counts_fit_scale_and_constant_only():
    cal = fit_calibration([10.0, 20.0], [1, 1], [21.0, 41.0])
    assert (cal["scale"], cal["per_layer_ms"], cal["constant_ms"]) == pytest.approx((2.0, 0.0, 1.0))


def test_fit_error_is_reported():
    # a point off the line: the fit cannot be exact
    cal = fit_calibration([1.0, 2.0, 3.0], [1, 1, 1], [2.0, 3.0, 5.0])
    assert cal["fit_mape"] > 0 and cal["fit_max_pct"] >= cal["fit_mape"]


def test_bad_input():
    with pytest.raises(LatencyTableError, match="at least 2"):
        fit_calibration([1.0], [1], [1.0])
    with pytest.raises(LatencyTableError, match="length"):
        fit_calibration([1.0, 2.0], [1], [1.0, 2.0])

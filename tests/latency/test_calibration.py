import numpy as np
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
    assert cal["samples"] == 4 and cal["form"] == "affine_layers" and cal["loo_mape"]["affine_layers"] < 1e-9


def test_too_few_layer_counts_never_fit_a_per_layer_term():
    # an exact scale + constant line over one layer count: affine wins, per_layer stays 0
    cal = fit_calibration([10.0, 20.0, 30.0, 40.0], [1, 1, 1, 1], [21.0, 41.0, 61.0, 81.0])
    assert cal["form"] == "affine" and "affine_layers" not in cal["loo_mape"]
    assert (cal["scale"], cal["per_layer_ms"], cal["constant_ms"]) == pytest.approx((2.0, 0.0, 1.0))


def test_two_models_can_only_fit_a_scale():
    cal = fit_calibration([10.0, 20.0], [1, 2], [20.0, 40.0])
    assert set(cal["loo_mape"]) == {"identity", "scale"}
    assert cal["form"] == "scale" and cal["scale"] == pytest.approx(2.0)


def test_noise_around_the_plain_sum_keeps_the_plain_sum():
    # measured = raw × (1 ± 6 % noise): any fitted term only chases the noise, and held-out error says so
    rng = np.random.default_rng(0)
    raw = np.array([1.5, 2.5, 3.0, 4.5, 6.0, 7.5, 9.0, 10.5, 12.0, 14.0, 17.0, 19.0])
    layers = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    measured = raw * (1 + rng.uniform(-0.06, 0.06, len(raw)))
    cal = fit_calibration(raw, layers, measured)
    assert cal["form"] == "identity", cal["loo_mape"]
    assert (cal["scale"], cal["per_layer_ms"], cal["constant_ms"]) == (1.0, 0.0, 0.0)
    # the richest form fits these 12 models better in-sample, yet predicts held-out ones worse
    assert cal["loo_mape"]["affine_layers"] > cal["loo_mape"]["identity"]


def test_a_uniform_slowdown_is_a_scale():
    raw = [2.0, 4.0, 6.0, 8.0, 10.0]
    cal = fit_calibration(raw, [1, 2, 3, 4, 5], [1.15 * r for r in raw])
    assert cal["form"] == "scale" and cal["scale"] == pytest.approx(1.15) and cal["fit_mape"] == pytest.approx(0.0)


def test_fit_error_is_reported():
    # a point off the line: the fit cannot be exact
    cal = fit_calibration([1.0, 2.0, 3.0], [1, 1, 1], [2.0, 3.0, 5.0])
    assert cal["fit_mape"] > 0 and cal["fit_max_pct"] >= cal["fit_mape"]


def test_bad_input():
    with pytest.raises(LatencyTableError, match="at least 2"):
        fit_calibration([1.0], [1], [1.0])
    with pytest.raises(LatencyTableError, match="length"):
        fit_calibration([1.0, 2.0], [1], [1.0, 2.0])


def test_drift_summary_median_quartiles_and_verdict():
    from nas.latency.drift import drift_summary

    s = drift_summary([10.0, 20.0, 40.0], [11.0, 24.0, 44.0])  # ratios 1.1, 1.2, 1.1
    assert s["median_ratio"] == pytest.approx(1.1) and s["q1"] == pytest.approx(1.1) and s["q3"] == pytest.approx(1.15)
    assert s["drifted"]
    assert not drift_summary([10.0, 20.0], [10.2, 19.8])["drifted"]


def test_recalibrated_refits_on_the_new_measurements_only(hand_space):
    from nas.latency.drift import recalibrated
    from tests.latency.conftest import make_table

    rows = [{"arch": f"a{i}", "layers": i, "raw_ms": r, "now_ms": 3.0 * r, "iqr_ms": 0.1, "then_ms": r}
            for i, r in zip(range(1, 6), (3.0, 7.0, 4.0, 10.0, 6.0))]
    table = make_table(hand_space, calibration={"scale": 1.0, "per_layer_ms": 0.0, "constant_ms": 0.0})
    new = recalibrated(table, {"models": rows, "measured": "now", "median_ratio": 3.0})
    assert new.calibration["scale"] == pytest.approx(3.0) and abs(new.calibration["constant_ms"]) < 1e-9
    assert new.entries == table.entries and new.calibration["recalibrated"]["previous"]["scale"] == 1.0


def test_form_of_reads_old_tables_off_their_terms():
    from nas.latency.calibration import form_of

    assert form_of({"form": "scale", "scale": 1.1}) == "scale"
    assert form_of({"scale": 0.46, "per_layer_ms": 0.0, "constant_ms": 0.97}) == "affine"
    assert form_of({"scale": 0.89, "per_layer_ms": 0.31, "constant_ms": -0.39}) == "affine_layers"
    assert form_of({}) == "identity"

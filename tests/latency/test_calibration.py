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


def _precision_rows():
    """8 models: fixed .75 ms, entries split over 32/8/4 bits; measured = p32 + 1.8·p8 + 0.9·p4 + fixed + 0.3."""
    parts = [{32: 6.0, 8: 0.0, 4: 2.0}, {32: 1.0, 8: 4.0, 4: 0.0}, {32: 3.0, 8: 3.0, 4: 3.0},
             {32: 10.0, 8: 1.0, 4: 0.0}, {32: 0.0, 8: 6.0, 4: 5.0}, {32: 2.0, 8: 0.0, 4: 9.0},
             {32: 8.0, 8: 8.0, 4: 1.0}, {32: 4.0, 8: 2.0, 4: 6.0}]
    raw = [0.75 + sum(p.values()) for p in parts]
    measured = [p[32] + 1.8 * p[8] + 0.9 * p[4] + 0.75 + 0.3 for p in parts]
    layers = [1, 2, 3, 4, 5, 6, 6, 4]
    return raw, layers, measured, parts


def test_per_precision_recovers_one_scale_per_precision():
    raw, layers, measured, parts = _precision_rows()
    cal = fit_calibration(raw, layers, measured, raw_by_bits=parts)
    assert cal["form"] == "per_precision"
    assert {int(b): s for b, s in cal["bit_scale"].items()} == pytest.approx({32: 1.0, 8: 1.8, 4: 0.9})
    # the fixed .75 stays at face value (scale 1): the constant is only the 0.3 on top
    assert cal["scale"] == 1.0 and cal["constant_ms"] == pytest.approx(0.3) and cal["fit_mape"] < 1e-9
    # one scale cannot follow the mix: every single-scale form predicts held-out models worse
    assert min(v for f, v in cal["loo_mape"].items() if f != "per_precision") > 0.02


def test_per_precision_needs_the_split_and_every_precision_twice():
    raw, layers, measured, parts = _precision_rows()
    assert "per_precision" not in fit_calibration(raw, layers, measured)["loo_mape"]
    once = [{**p, 4: 0.0} if i else p for i, p in enumerate(parts)]  # 4-bit blocks in one model only
    raw1 = [0.75 + sum(p.values()) for p in once]
    assert "per_precision" not in fit_calibration(raw1, layers, raw1, raw_by_bits=once)["loo_mape"]
    with pytest.raises(LatencyTableError, match="length"):
        fit_calibration(raw, layers, measured, raw_by_bits=parts[:-1])
    with pytest.raises(LatencyTableError, match="exceed"):
        fit_calibration([1.0] * 8, layers, measured, raw_by_bits=parts)


def test_calibration_terms_predict_like_the_fit():
    from nas.latency.calibration import Calibration, make_rows

    raw, layers, measured, parts = _precision_rows()
    cal = Calibration.from_dict(fit_calibration(raw, layers, measured, raw_by_bits=parts))
    assert cal.form == "per_precision" and cal.entry_scale(8) == pytest.approx(1.8) and cal.entry_scale(None) == 1.0
    assert make_rows(raw, layers, measured, parts).predict(cal) == pytest.approx(measured)


@pytest.mark.parametrize("cal, match", [
    ({"bit_scale": {"eight": 1.7}}, r"bit_scale\.eight: not a bit-width"),
    ({"bit_scale": {"8": -1.0}}, r"bit_scale\.8: scale must be positive"),
    ({"bit_scale": {"8": "fast"}}, r"bit_scale\.8: not a number"),
    ({"bit_scale": [1.7]}, r"bit_scale: expected an object"),
    ({"scale": None}, r"calibration\.scale: not a number"),
    ({"constant_ms": float("nan")}, r"calibration\.constant_ms: not finite"),
])
def test_bad_calibration_terms_name_the_key(cal, match):
    from nas.latency.calibration import Calibration

    with pytest.raises(LatencyTableError, match=match):
        Calibration.from_dict(cal)


def test_recalibrated_considers_per_precision_when_the_rows_carry_the_split(hand_space):
    from nas.latency.drift import recalibrated
    from tests.latency.conftest import make_table

    raw, layers, measured, parts = _precision_rows()
    rows = [{"arch": f"a{i}", "layers": n, "raw_ms": r, "raw_by_bits": {str(b): v for b, v in p.items()},
             "now_ms": m, "then_ms": r, "iqr_ms": 0.1} for i, (r, n, m, p) in enumerate(zip(raw, layers, measured, parts))]
    new = recalibrated(make_table(hand_space), {"models": rows, "measured": "now", "median_ratio": 1.3})
    assert new.calibration["form"] == "per_precision" and new.calibration["bit_scale"]["8"] == pytest.approx(1.8)
    for r in rows:
        del r["raw_by_bits"]  # rows of an older drift report: the single-scale forms only
    assert "per_precision" not in recalibrated(make_table(hand_space), {"models": rows, "measured": "now",
                                                                       "median_ratio": 1.3}).calibration["loo_mape"]

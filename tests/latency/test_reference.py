"""The reference ratio rule on paper (:mod:`nas.latency.reference`): numbers worked out by hand."""

import pytest

from nas.errors import ConfigError, LatencyTableError
from nas.latency.reference import (
    normalised_error, reference_ratio, reference_report, spread_indices,
)


def test_reference_ratio_is_the_median_of_measured_over_recorded():
    # ratios 11/10 = 1.10, 23/20 = 1.15, 27/30 = 0.90 -> median 1.10
    assert reference_ratio([11.0, 23.0, 27.0], [10.0, 20.0, 30.0]) == pytest.approx(1.10)
    # even count: ratios 1.10 and 1.15 -> 1.125
    assert reference_ratio([11.0, 23.0], [10.0, 20.0]) == pytest.approx(1.125)
    assert reference_ratio([5.0], [4.0]) == pytest.approx(1.25)


def test_normalised_error_scales_the_prediction_by_the_ratio():
    # the module docstring's example: predicted 8 ms, measured 9 ms, r = 1.125
    assert normalised_error(8.0, 9.0) == pytest.approx(-1 / 9)  # raw: r = 1
    assert normalised_error(8.0, 9.0, 1.125) == pytest.approx(0.0)
    assert normalised_error(10.0, 8.0, 0.9) == pytest.approx((9.0 - 8.0) / 8.0)


def test_bad_inputs_are_config_errors():
    with pytest.raises(ConfigError, match="equal"):
        reference_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ConfigError, match="equal"):
        reference_ratio([], [])
    with pytest.raises(ConfigError, match="> 0"):
        reference_ratio([1.0], [0.0])
    with pytest.raises(ConfigError, match="measured_ms"):
        normalised_error(1.0, 0.0)
    with pytest.raises(ConfigError, match="at least 1"):
        spread_indices([1.0, 2.0], 0)


def test_spread_indices_cover_both_ends_of_the_recorded_latencies():
    lat = [40.0, 10.0, 30.0, 20.0, 50.0]  # ascending: index 1, 3, 2, 0, 4
    assert spread_indices(lat, 3) == [1, 2, 4]  # positions 0, 2, 4
    assert spread_indices(lat, 2) == [1, 4]  # fastest and slowest
    assert spread_indices(lat, 1) == [2]  # the median one
    assert spread_indices(lat, 9) == [1, 3, 2, 0, 4]  # all, fastest first
    # 6 models, 4 references: positions round(0), round(5/3)=2, round(10/3)=3, 5
    assert spread_indices([6.0, 1.0, 5.0, 2.0, 4.0, 3.0], 4) == [1, 5, 4, 0]


def test_reference_report_reads_only_the_reference_keys():
    rows = [{"key": "ref/0", "index": 0, "arch": "a", "layers": 1, "recorded_ms": 10.0},
            {"key": "ref/3", "index": 3, "arch": "b", "layers": 2, "recorded_ms": 20.0}]
    stats = {"ref/0": {"median_ms": 11.0, "iqr_ms": 0.5}, "ref/3": {"median_ms": 23.0, "iqr_ms": 1.0},
             "model": {"median_ms": 9.0, "iqr_ms": 0.1}}
    rep = reference_report(rows, stats)
    assert rep["ratio"] == pytest.approx(1.125)
    assert [m["ratio"] for m in rep["models"]] == pytest.approx([1.10, 1.15])
    assert [m["index"] for m in rep["models"]] == [0, 3] and rep["models"][1]["iqr_ms"] == 1.0
    assert normalised_error(8.0, stats["model"]["median_ms"], rep["ratio"]) == pytest.approx(0.0)
    with pytest.raises(LatencyTableError, match="not measured: ref/3"):
        reference_report(rows, {"ref/0": stats["ref/0"]})

"""Pure analysis of measured points, on numbers worked out by hand."""

import pytest

from experiments.studies.benchmark_minilm_cpu import analysis as A


def pt(method, name, acc, ms, predicted=None, target=None, ms2=None):
    lat = {"t1": {"median_ms": ms, "iqr_ms": 0.0}, "t2": {"median_ms": ms2 or ms, "iqr_ms": 0.0}}
    return {"method": method, "name": name, "accuracy": acc, "latency": lat, "predicted_ms": predicted,
            "target_ms": target}


POINTS = [
    pt("dnas", "a", 0.80, 4.0, predicted=4.4, target=5.0),   # +10 % error, hits T
    pt("dnas", "b", 0.70, 2.0, predicted=2.0, target=1.5),   # exact, misses T (2.0 > 1.5; 1.1·T = 1.65)
    pt("dnas", "c", 0.60, 3.0, predicted=2.4, target=3.0),   # dominated by b; −20 % error
]


def test_front_drops_dominated_points_fastest_first():
    assert [p["name"] for p in A.front(POINTS)] == ["b", "a"]


def test_hypervolume_is_normalised_by_the_teacher_latency():
    # latency / 8 ms: b (0.70, 0.25), a (0.80, 0.5); ref (0, 1): 0.70·0.25 + 0.80·0.5 = 0.575
    assert A.hypervolume(POINTS, teacher_ms=8.0, ref={"accuracy": 0.0, "latency_fraction": 1.0}) == pytest.approx(0.575)


def test_fidelity_counts_errors_relative_to_the_measurement():
    f = A.fidelity(POINTS)
    assert f["n"] == 3
    assert f["mape"] == pytest.approx((0.1 + 0.0 + 0.2) / 3)
    assert f["within_share"] == pytest.approx(2 / 3)  # +10 % counts as within ±10 %
    assert f["spearman"] == pytest.approx(1.0)


def test_fidelity_scale_multiplies_every_prediction():
    # predictions × 1.25: a 5.5 (+37.5 %), b 2.5 (+25 %), c 3.0 (0 %)
    f = A.fidelity(POINTS, scale=1.25)
    assert f["mape"] == pytest.approx((0.375 + 0.25 + 0.0) / 3)
    assert f["within_share"] == pytest.approx(1 / 3) and f["mean_signed"] == pytest.approx((0.375 + 0.25) / 3)
    assert f["spearman"] == pytest.approx(A.fidelity(POINTS)["spearman"])  # a uniform scale keeps the ranking


def test_budget_hits_measured_and_predicted():
    h = A.budget_hits(POINTS)
    assert h == {"n": 3, "measured_hit_rate": pytest.approx(2 / 3), "predicted_hit_rate": pytest.approx(2 / 3),
                 "within_10pct_of_target_rate": pytest.approx(2 / 3)}


def test_budget_hits_with_the_hosts_drift_divided_out():
    # a host 1.25× slower than the table: b's 2.0 ms is 1.6 ms on the table's machine (> T 1.5, ≤ 1.1·T 1.65)
    h = A.budget_hits(POINTS, drift=1.25)
    assert h["measured_hit_rate"] == pytest.approx(2 / 3)  # the raw rates are unchanged
    assert h["drift_corrected_hit_rate"] == pytest.approx(2 / 3)
    assert h["drift_corrected_within_10pct_rate"] == pytest.approx(1.0)
    assert A.budget_hits(POINTS, drift=1.4)["drift_corrected_hit_rate"] == pytest.approx(1.0)


def test_best_speedup_within_the_accuracy_drop():
    # teacher 0.81: within 1 pt only a (0.80 @ 4 ms); int8 baseline 12 ms -> 3×
    s = A.best_speedup(POINTS, reference_acc=0.81, max_drop=0.01, baseline_ms=12.0)
    assert s["name"] == "dnas/a" and s["speedup"] == pytest.approx(3.0)
    assert A.best_speedup(POINTS, reference_acc=0.95, max_drop=0.01, baseline_ms=12.0) is None


def test_targets_report_met_and_gap():
    goals = {"max_accuracy_drop_points": 1.0, "speedup_vs_teacher_int8": 3.0, "hv_ratio_vs_nsga2": 1.2,
             "hv_ratio_vs_random": 1.3, "latency_within": 0.10, "latency_within_share": 0.95}
    summary = {"speedup": {"dnas": {"speedup": 2.5, "name": "dnas/a"}},
               "hypervolume": {"dnas": 0.6, "nsga2": 0.5, "random": 0.4},
               "fidelity": {"search_fronts": {"n": 4, "within_share": 1.0}}}
    rows = A.targets(summary, goals)
    assert [r["met"] for r in rows] == [False, True, True, True]
    assert rows[0]["gap"] == pytest.approx(-0.5) and rows[1]["value"] == pytest.approx(1.2)
    assert rows[2]["value"] == pytest.approx(1.5)
    assert [r["key"] for r in rows] == ["speedup", "hv_nsga2", "hv_random", "fidelity"]


def test_targets_add_the_region_hypervolume_rows_with_the_same_goals():
    goals = {"max_accuracy_drop_points": 1.0, "speedup_vs_teacher_int8": 3.0, "hv_ratio_vs_nsga2": 1.2,
             "hv_ratio_vs_random": 1.3, "latency_within": 0.10, "latency_within_share": 0.95}
    summary = {"speedup": {"dnas": None}, "hypervolume": {"dnas": 0.6, "nsga2": 0.6, "random": 0.6},
               "region": {"accuracy_drop_points": 5.0},
               "hypervolume_region": {"dnas": 0.03, "nsga2": 0.02, "random": 0.025},
               "fidelity": {"search_fronts": {"n": 0}}}
    rows = {r["key"]: r for r in A.targets(summary, goals)}
    assert rows["hv_region_nsga2"]["value"] == pytest.approx(1.5) and rows["hv_region_nsga2"]["met"]
    assert rows["hv_region_random"]["value"] == pytest.approx(1.2) and not rows["hv_region_random"]["met"]
    assert not rows["hv_nsga2"]["met"] and "whole range" in rows["hv_nsga2"]["target"]
    assert "teacher − 5 pt" in rows["hv_region_random"]["target"]
    assert rows["speedup"]["value"] == 0.0 and not rows["speedup"]["met"]


def test_targets_skip_the_ratios_against_a_method_that_did_not_run():
    goals = {"max_accuracy_drop_points": 1.0, "speedup_vs_teacher_int8": 3.0, "hv_ratio_vs_nsga2": 1.2,
             "hv_ratio_vs_random": 1.3, "latency_within": 0.10, "latency_within_share": 0.95}
    summary = {"speedup": {"dnas": None}, "hypervolume": {"dnas": 0.6, "random": 0.0},
               "region": {"accuracy_drop_points": 5.0}, "hypervolume_region": {"dnas": 0.03, "random": 0.0},
               "fidelity": {"search_fronts": {"n": 0}}}
    rows = {r["key"]: r for r in A.targets(summary, goals)}
    assert "hv_nsga2" not in rows and "hv_region_nsga2" not in rows  # --methods left NSGA-II out
    assert rows["hv_random"]["value"] == float("inf") and rows["hv_random"]["met"]  # ran and found nothing


def test_targets_judge_the_speedup_against_the_full_finetuned_model_with_the_frozen_teacher_beside():
    goals = {"max_accuracy_drop_points": 1.0, "speedup_vs_teacher_int8": 3.0, "hv_ratio_vs_nsga2": 1.2,
             "hv_ratio_vs_random": 1.3, "latency_within": 0.10, "latency_within_share": 0.95}
    summary = {"accuracy_reference": {"name": "full-finetuned", "accuracy": 0.80},
               "speedup": {"dnas": {"speedup": 2.0, "name": "dnas/b"}},
               "speedup_vs_teacher": {"dnas": {"speedup": 3.5, "name": "dnas/a"}},
               "hypervolume": {"dnas": 0.6, "nsga2": 0.5, "random": 0.4},
               "fidelity": {"search_fronts": {"n": 4, "within_share": 1.0}}}
    row = A.targets(summary, goals)[0]
    assert "full model fine-tuned alike" in row["target"]
    assert (row["value"], row["met"], row["detail"]) == (2.0, False, "dnas/b")
    assert row["vs_frozen_teacher"] == {"value": 3.5, "met": True, "detail": "dnas/a"}
    old = {k: v for k, v in summary.items() if k not in ("accuracy_reference", "speedup_vs_teacher")}
    row = A.targets(old, goals)[0]  # a run before the baseline: the teacher, nothing beside
    assert "of the teacher" in row["target"] and "vs_frozen_teacher" not in row


def test_shared_rows_judge_the_proxy_tau_only_with_ten_trials():
    cost = {"dnas": {"trials": 10, "wall_s": 600.0, "proxy": {"trials": 10, "kendall_tau": 0.65}},
            "dnas_shared": {"trials": 9, "wall_s": 600.0, "proxy": {"trials": 9, "kendall_tau": 0.5}}}
    rows = []
    A.shared_rows({"cost": cost}, {}, rows)
    rows = {r["key"]: r for r in rows}
    assert rows["shared_trials_per_hour"]["value"] == pytest.approx(0.9) and not rows["shared_trials_per_hour"]["met"]
    assert rows["proxy_tau_dnas"]["met"] and rows["proxy_tau_dnas"]["judged"]
    shared = rows["proxy_tau_dnas_shared"]
    assert not shared["met"] and not shared["judged"] and "not judged" in shared["detail"]
    assert [A.verdict(rows[k]) for k in ("proxy_tau_dnas", "proxy_tau_dnas_shared", "shared_trials_per_hour")] == [
        "met", "not judged", "missed"]


def test_shared_rows_show_the_same_budget_tau_beside_the_judged_one():
    proxy = {"trials": 42, "kendall_tau": 0.511, "kendall_tau_same_budget": 0.63, "budget_median": 98.5}
    rows = []
    A.shared_rows({"cost": {"dnas_shared": {"trials": 42, "wall_s": 1200.0, "proxy": proxy}}}, {}, rows)
    shared = {r["key"]: r for r in rows}["proxy_tau_dnas_shared"]
    assert not shared["met"] and shared["value"] == 0.511  # judged on the pooled τ
    assert shared["detail"] == "42 trials; within fine-tuning-budget halves (≤ / > 98.5 steps) 0.630"


def test_accuracy_reference_is_the_full_finetuned_model_else_the_teacher():
    teacher = {"method": "baselines", "name": "teacher", "accuracy": 0.75}
    ft = {"method": "baselines", "name": "full-finetuned", "accuracy": 0.81}
    impostor = {"method": "random", "name": "full-finetuned", "accuracy": 0.9}
    assert A.accuracy_reference([teacher, impostor, ft]) is ft
    assert A.accuracy_reference([teacher, impostor]) is teacher


def test_a_baseline_added_later_is_not_judged_for_table_fidelity():
    run = pt("baselines", "teacher", 0.75, 40.0, predicted=39.0)
    added = {**pt("baselines", "full-finetuned", 0.80, 40.1, predicted=39.0),
             "latency_rescaled_by": "baselines/teacher"}
    int8 = pt("baselines", "teacher-int8", 0.75, 30.0)  # not an architecture of the space: no prediction
    assert A.in_space_measured([run, added, int8]) == [run]


def test_rescaled_latency_puts_a_remeasurement_on_the_runs_scale():
    then = pt("baselines", "teacher", 0.75, 40.0, ms2=30.0)
    now = pt("baselines", "teacher", 0.75, 50.0, ms2=20.0)
    scale = A.latency_scale(then, now, [1, 2])
    assert scale == pytest.approx({"t1": 0.8, "t2": 1.5})
    lat = {"t1": {"median_ms": 10.0, "iqr_ms": 1.0, "n": 24}, "t2": {"median_ms": 4.0, "iqr_ms": 0.4, "n": 24}}
    out = A.rescaled(lat, scale)
    assert out["t1"] == pytest.approx({"median_ms": 8.0, "iqr_ms": 0.8, "n": 24})
    assert out["t2"] == pytest.approx({"median_ms": 6.0, "iqr_ms": 0.6, "n": 24})
    assert lat["t1"]["median_ms"] == 10.0  # the input is left alone


def _line(n, a=1.0, b=0.0):
    """``n`` points whose measurement is exactly ``a·predicted + b``."""
    return [pt("random", f"p{i}", 0.5, a * (1.0 + i) + b, predicted=1.0 + i) for i in range(n)]


def test_refit_fidelity_removes_an_affine_offset_of_the_whole_table():
    pts = _line(12, a=2.0, b=0.5)  # the table predicts every point ~2× too fast: a drift, not a table error
    assert A.fidelity(pts)["within_share"] == 0.0
    r = A.refit_fidelity(pts, pts[:5])
    assert r["n"] == 5 and r["within_share"] == 1.0 and r["mape"] == pytest.approx(0.0, abs=1e-9)
    assert (r["a"], r["b"]) == pytest.approx((2.0, 0.5)) and (r["folds"], r["fit_points"]) == (5, 12)


def test_refit_fidelity_keeps_a_per_architecture_error_it_never_saw():
    pts = _line(12)
    odd = pt("dnas", "odd", 0.5, 1.3 * 4.0, predicted=4.0)  # measured 30 % slower than predicted
    r = A.refit_fidelity([*pts, odd], [odd])
    # odd is held out of the fit that predicts it, and the others lie exactly on measured = predicted:
    # its error stays the whole 1 − 1/1.3 ≈ 23 % (a fit that saw it would absorb part of it)
    assert r["within_share"] == 0.0 and r["max_abs"] == pytest.approx(0.3 / 1.3, rel=1e-6)
    seen = A._affine_fit([(float(p["predicted_ms"]), A.lat(p)) for p in [*pts, odd]])
    assert abs((seen[0] * 4.0 + seen[1]) / 5.2 - 1) < 0.3 / 1.3


def test_refit_fidelity_needs_enough_points_and_targets_among_them():
    assert A.refit_fidelity(_line(9), _line(9)[:2]) == {"n": 0}  # fewer than 2 × 5 folds
    pts = _line(12)
    with pytest.raises(ValueError, match="dnas/stranger"):
        A.refit_fidelity(pts, [pt("dnas", "stranger", 0.5, 1.0, predicted=1.0)])

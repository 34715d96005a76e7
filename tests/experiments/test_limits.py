"""The report's "what limits the missed targets" sentences follow the run's numbers."""

from experiments.studies.benchmark_minilm_cpu.run import limits


def _summary(*, met, region_met, dnas_bias):
    rows = [{"key": "speedup", "met": True, "detail": "dnas/trial-00007", "value": 3.8},
            {"key": "hv_nsga2", "met": met, "value": 1.09}, {"key": "hv_random", "met": met, "value": 1.09},
            {"key": "fidelity", "met": False, "value": 0.69},
            {"key": "hv_region_nsga2", "met": region_met, "value": 1.03},
            {"key": "hv_region_random", "met": region_met, "value": 1.03}]
    return {
        "targets": rows, "teacher": {"latency_ms_t1": 42.2, "int8_latency_ms_t1": 26.6},
        "front_sizes": {"dnas": 8},
        "cost": {"dnas": {"trials": 11, "wall_s": 1210.0, "budget_s": 1200.0, "overhead_share": 0.03},
                 "random": {"trials": 28}, "nsga2": {"trials": 31}},
        "fidelity": {"search_fronts": {"mape": 0.074, "mean_signed": 0.034},
                     "dnas_front": {"mape": 0.11, "mean_signed": dnas_bias}},
    }


CFG = {"trainer": {"finetune_steps": 300, "max_train": 8000, "steps": 60}}


def test_region_missed_names_how_many_more_architectures_the_black_boxes_tried():
    text = " ".join(limits(_summary(met=False, region_met=False, dnas_bias=0.0), CFG))
    assert "1.03 (NSGA-II)" in text and "2.5× as many architectures" in text  # min(28, 31) / 11
    assert "Speed-up" not in text  # met


def test_region_met_says_nothing_about_black_box_fronts_coming_close():
    text = " ".join(limits(_summary(met=False, region_met=True, dnas_bias=0.0), CFG))
    assert "Hypervolume" in text and "as many architectures" not in text


def test_fidelity_names_the_bias_on_the_dnas_front_only_when_it_exceeds_5_percent():
    biased = " ".join(limits(_summary(met=True, region_met=True, dnas_bias=0.063), CFG))
    assert "on DNAS's front the table predicts +6% against the measurements" in biased
    plain = " ".join(limits(_summary(met=True, region_met=True, dnas_bias=0.02), CFG))
    assert "Latency fidelity" in plain and "on DNAS's front" not in plain


def test_hypervolume_names_the_ceiling_when_the_goals_exceed_what_any_front_could_reach():
    from experiments.studies.benchmark_minilm_cpu.run import hv_ceiling

    s = {**_summary(met=False, region_met=True, dnas_bias=0.0),
         "hypervolume": {"dnas": 0.7537, "random": 0.6933, "nsga2": 0.6943},
         "best_accuracy": {"dnas": 0.804, "random": 0.798, "nsga2": 0.785}}
    cfg = {**CFG, "reference": {"accuracy": 0.0}, "targets": {"hv_ratio_vs_nsga2": 1.2, "hv_ratio_vs_random": 1.3}}
    text = " ".join(limits(s, cfg))
    # 1.3 × 0.6933 = 0.901 > 0.804: no front of accuracy ≤ 80.4 % can reach it, even at zero latency
    assert "hypervolume of 0.901" in text and "0.804 for the best point of any method, 80.40% by dnas" in text
    reachable = {**s, "hypervolume": {"dnas": 0.5, "random": 0.5, "nsga2": 0.5}}  # goals need 0.65 ≤ 0.804
    assert hv_ceiling(reachable, cfg) == ""
    assert hv_ceiling(s, {**cfg, "reference": {"accuracy": 0.5}}) != ""  # ceiling 0.304 < 0.901


def test_fidelity_names_what_a_recalibration_on_the_run_would_leave():
    s = _summary(met=True, region_met=True, dnas_bias=0.0)
    assert "recalibrated on this run" not in " ".join(limits(s, CFG))  # no refit row: nothing claimed
    s["fidelity"]["search_fronts_refit_cv"] = {"n": 35, "within_share": 0.86, "mape": 0.052, "folds": 5,
                                               "fit_points": 150}
    text = " ".join(limits(s, CFG))
    assert "recalibrated on this run's own 150 measured in-space points (5-fold cross-validated)" in text
    assert "86% of the front points within ±10% (MAPE 5.2%)" in text


def test_add_refit_fidelity_judges_the_search_front_points_only():
    from experiments.studies.benchmark_minilm_cpu.run import add_refit_fidelity

    def p(method, i, on_front):
        return {"method": method, "name": f"{method}{i}", "predicted_ms": 1.0 + i, "on_front": on_front,
                "latency": {"t1": {"median_ms": 1.0 + i}}}

    pts = [p("random", i, i < 3) for i in range(10)] + [p("baselines", 10, True)]
    s = {"fidelity": {}}
    add_refit_fidelity(s, pts, 0.10)
    row = s["fidelity"]["search_fronts_refit_cv"]
    assert (row["n"], row["fit_points"], row["within_share"]) == (3, 11, 1.0)  # the baseline is fitted, not judged
    few = {"fidelity": {}}
    add_refit_fidelity(few, pts[:4], 0.10)
    assert few == {"fidelity": {}}  # too few points to cross-validate: no row


def test_run_mode_is_reduced_only_for_less_budget_or_fewer_methods():
    from experiments.studies.benchmark_minilm_cpu.run import run_mode

    every = ["dnas", "dnas_shared", "random", "nsga2"]
    assert run_mode(quick=False, budget_minutes=None, default_minutes=20, methods=every) == "full"
    assert run_mode(quick=False, budget_minutes=20, default_minutes=20, methods=every) == "full"
    assert run_mode(quick=False, budget_minutes=5, default_minutes=20, methods=every) == "reduced"
    assert run_mode(quick=False, budget_minutes=None, default_minutes=20, methods=["dnas", "random", "nsga2"]) == "reduced"
    assert run_mode(quick=True, budget_minutes=None, default_minutes=20, methods=every) == "quick"


def test_speedup_missed_against_the_full_finetuned_model_names_the_gap_and_who_gets_within():
    s = _summary(met=True, region_met=True, dnas_bias=0.0)
    s["targets"][0] = {"key": "speedup", "met": False, "value": 0.0, "detail": "no DNAS point within the accuracy drop"}
    s["teacher"]["accuracy"] = 0.7575
    s["accuracy_reference"] = {"name": "full-finetuned", "accuracy": 0.8005}
    s["best_accuracy"] = {"dnas": 0.7865, "random": 0.798}
    s["speedup"] = {"dnas": None, "nsga2": None,
                    "random": {"name": "random/t22", "accuracy": 0.791, "latency_ms": 23.2, "speedup": 1.38}}
    text = " ".join(limits(s, CFG))
    assert "accuracy drop from the full model fine-tuned alike (80.05 %)" in text
    assert "DNAS's most accurate point scores 78.65 %, 1.40 pt below full-finetuned (80.05 %)" in text
    assert "within 1 pt: random/t22 79.10 % at 23.2 ms (1.38×)." in text
    assert "best DNAS point within 1 pt" not in text  # there is none


def test_shared_limits_name_the_supernet_share_and_the_same_budget_tau():
    from experiments.studies.benchmark_minilm_cpu.run import shared_limits

    rows = {"shared_trials_per_hour": {"met": False, "goal": 3.0, "value": 2.2},
            "proxy_tau_dnas_shared": {"met": False, "judged": True, "value": 0.511}}
    cost = {"dnas": {"trials": 20, "wall_s": 1200.0},
            "dnas_shared": {"trials": 40, "wall_s": 1200.0, "service_setup_s": 400.0,
                            "proxy": {"kendall_tau": 0.511, "trials": 40, "kendall_tau_same_budget": 0.63,
                                      "budget_median": 98.5}}}
    text = " ".join(shared_limits(rows, cost))
    # 800 s after the supernet / 40 trials = 20 s; per-trial 60 s; 3x = 60 trials in 1200 s -> 800 / 60 = 13.3 s
    assert "took 400 s of the shared arm's 1200 s (33%)" in text and "≈20.0 s against ≈60 s per-trial (3.0×" in text
    assert "needs ≈13.3 s per shared trial" in text
    assert "(≤ / > 98.5 steps) τ is 0.630 against 0.511 pooled" in text
    rows["proxy_tau_dnas_shared"]["judged"] = False  # fewer than 10 trials: nothing to explain
    rows["shared_trials_per_hour"]["met"] = True
    assert shared_limits(rows, cost) == []
    assert shared_limits(rows, {"dnas": cost["dnas"]}) == []  # no shared arm in the run

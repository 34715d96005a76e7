"""The benchmark runs end to end in --quick mode (tiny-bert, a table built in seconds, a small WordNet slice).

One subprocess run (it starts a local Ray for the DNAS method, like ``nas search``) into a temporary
folder; the report and its JSON must name every method and carry a finite hypervolume for each.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.studies.benchmark_minilm_cpu.config import load_config

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("dnas", "dnas_shared", "random", "nsga2", "baselines")

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.studies.benchmark_minilm_cpu.run", "--quick", "--budget-minutes", "0.05",
         "--out", str(out), "--work", str(out / "work")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, proc


def test_quick_run_writes_report_json_and_plots(quick_run):
    out, _ = quick_run
    for name in ("minilm_cpu_quick.md", "minilm_cpu_quick.json", "minilm_cpu_quick.t1.png", "minilm_cpu_quick.t2.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name


def test_every_method_has_points_and_a_finite_hypervolume(quick_run):
    out, _ = quick_run
    doc = json.loads((out / "minilm_cpu_quick.json").read_text())
    s = doc["summary"]
    for m in METHODS:
        assert m in s["hypervolume"], m
        assert math.isfinite(s["hypervolume"][m]) and s["hypervolume"][m] >= 0, m
        assert any(p["method"] == m for p in doc["points"]), m
        assert m in s["cost"] and s["cost"][m]["wall_s"] > 0
    names = {p["name"] for p in doc["points"] if p["method"] == "baselines"}
    assert {"teacher", "teacher-int8", "full-finetuned", "full-finetuned-int8", "first1", "first1-int8"} <= names
    for p in doc["points"]:
        assert 0.0 <= p["accuracy"] <= 1.0 and p["size_mb"] > 0
        for t in (1, 2):
            assert p["latency"][f"t{t}"]["median_ms"] > 0 and p["latency"][f"t{t}"]["iqr_ms"] >= 0
    # speed-up, whole and region hypervolume vs NSGA-II and random, fidelity; with dnas_shared its region
    # hypervolume rows, its trials per hour over per-trial DNAS's and each DNAS method's Kendall tau
    assert len(s["targets"]) == 11 and all(isinstance(t["met"], bool) for t in s["targets"])
    for m in METHODS:
        assert math.isfinite(s["hypervolume_region"][m]) and 0 <= s["hypervolume_region"][m] <= s["hypervolume"][m]
    teacher = next(p for p in doc["points"] if p["name"] == "teacher")
    assert s["region"]["accuracy"] == pytest.approx(teacher["accuracy"] - 0.05)
    assert s["fidelity"]["all_in_space_points"]["n"] >= 2


def test_the_full_finetuned_model_is_the_accuracy_reference_of_the_targets(quick_run):
    """The uncompressed model fine-tuned like every student: a real accuracy, and the bar the targets use."""
    from experiments.studies.benchmark_minilm_cpu import analysis as A

    out, proc = quick_run
    doc = json.loads((out / "minilm_cpu_quick.json").read_text())
    base = {p["name"]: p for p in doc["points"] if p["method"] == "baselines"}
    ft, teacher = base["full-finetuned"], base["teacher"]
    assert ft["arch"] == teacher["arch"] and ft["deploy"] == "fp32"
    assert base["full-finetuned-int8"]["deploy"] == "user_int8"
    assert 0.0 < ft["accuracy"] <= 1.0 and 0.0 < ft["test_accuracy_torch"] <= 1.0  # trained and scored, not copied
    assert "baselines: distilling full-finetuned (2 steps)" in proc.stderr  # the students' recipe (quick: 2 steps)
    s = doc["summary"]
    ref = s["accuracy_reference"]
    assert ref["name"] == "full-finetuned" and ref["accuracy"] == ft["accuracy"]
    assert ref["int8_accuracy"] == base["full-finetuned-int8"]["accuracy"]
    assert s["teacher"]["accuracy"] == teacher["accuracy"]
    drop = doc["config"]["targets"]["max_accuracy_drop_points"] / 100
    dnas_front = [p for p in doc["points"] if p["method"] == "dnas" and p["on_front"]]
    for key, acc in (("speedup", ft["accuracy"]), ("speedup_vs_teacher", teacher["accuracy"])):
        want = A.best_speedup(dnas_front, reference_acc=acc, max_drop=drop, baseline_ms=A.lat(base["teacher-int8"]))
        assert s[key]["dnas"] == (pytest.approx(want) if want else None), key
    row = next(t for t in s["targets"] if t["key"] == "speedup")
    assert "within 1 pt of the full model fine-tuned alike" in row["target"]
    assert row["value"] == (s["speedup"]["dnas"] or {"speedup": 0.0})["speedup"]
    assert row["vs_frozen_teacher"]["value"] == (s["speedup_vs_teacher"]["dnas"] or {"speedup": 0.0})["speedup"]
    assert s["region"]["accuracy_reference"] == "teacher"
    md = (out / "minilm_cpu_quick.md").read_text()
    assert "Accuracy reference of the \"within 1 pt\" targets: **full-finetuned**" in md
    assert "| vs frozen teacher |" in md and "within 1 pt of the frozen teacher |" in md
    assert "a fully fine-tuned uncompressed model would set a higher bar" not in md


def test_add_baselines_trains_and_measures_only_the_missing_ones_against_the_teacher(quick_run, tmp_path):
    """A run without full-finetuned gets it from ``--add-baselines``: same recipe, latency on the run's scale."""
    out, _ = quick_run
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    full = json.loads((out / "minilm_cpu_quick.json").read_text())
    old = {**full, "points": [p for p in full["points"] if not p["name"].startswith("full-finetuned")]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    cmd = [sys.executable, "-m", "experiments.studies.benchmark_minilm_cpu.run", "--out", str(tmp_path),
           "--name", "old", "--work", str(out / "work"), "--rounds", "2"]
    proc = subprocess.run([*cmd, "--add-baselines", "full-finetuned"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads((tmp_path / "old.json").read_text())
    base = [p["name"] for p in doc["points"] if p["method"] == "baselines"]
    assert base[:4] == ["teacher", "teacher-int8", "full-finetuned", "full-finetuned-int8"]  # a full run's order
    new = {p["key"]: p for p in doc["points"]}
    ref = {p["key"]: p for p in full["points"]}
    # the same recipe, seed and teacher as the run's own full-finetuned: the same fine-tuned model
    ft = "baselines/full-finetuned"
    assert new[ft]["test_accuracy_torch"] == ref[ft]["test_accuracy_torch"]
    assert new[ft]["accuracy"] == ref[ft]["accuracy"]
    # the run's points are the run's; only the added ones were measured, side by side with the teacher
    for p in old["points"]:
        assert (new[p["key"]]["latency"], new[p["key"]]["accuracy"]) == (p["latency"], p["accuracy"]), p["key"]
    add = doc["added_baselines"][-1]
    assert add["points"] == ["full-finetuned", "full-finetuned-int8"] and add["rounds"] == 2
    for name, deploy in (("full-finetuned", "fp32"), ("full-finetuned-int8", "user_int8")):
        p, r = new[f"baselines/{name}"], "teacher" if deploy == "fp32" else "teacher-int8"
        assert p["latency_rescaled_by"] == f"baselines/{r}"
        for t in ("t1", "t2"):
            scale = ref[f"baselines/{r}"]["latency"][t]["median_ms"] / add["reference_now"][r][t]["median_ms"]
            assert add["scale"][deploy][t] == pytest.approx(scale)
            assert p["latency"][t]["median_ms"] == pytest.approx(p["latency_measured"][t]["median_ms"] * scale)
        assert (out / "work" / p["artifact_dir"] / p["artifact"]).is_file()
    assert doc["summary"]["accuracy_reference"]["name"] == "full-finetuned"
    assert doc["summary"]["cost"]["baselines"]["wall_s"] > old["summary"]["cost"]["baselines"]["wall_s"]
    md = (tmp_path / "old.md").read_text()
    assert "| full-finetuned † |" in md and "† full-finetuned, full-finetuned-int8: added on" in md
    # the merged JSON redoes its report, and a baseline is added once
    redo = subprocess.run([*cmd[:3], "--report-only", str(tmp_path / "old.json"), "--out", str(tmp_path / "redo")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert redo.returncode == 0, redo.stderr[-2000:]
    assert (tmp_path / "redo" / "old.md").read_text() == md
    again = subprocess.run([*cmd, "--add-baselines", "full-finetuned"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 1 and "full-finetuned already in the run" in again.stderr
    bad = subprocess.run([*cmd, "--add-baselines", "first9"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 1 and "unknown baseline 'first9'" in bad.stderr


def test_the_table_is_checked_and_recalibrated_before_any_method(quick_run):
    """Quick mode says ``recalibrate: always``: every method searched with the refitted table, entries unchanged."""
    out, proc = quick_run
    doc = json.loads((out / "minilm_cpu_quick.json").read_text())
    d = doc["latency_table"]["drift"]
    assert d["checked"] and d["recalibrated"] and d["median_ratio"] > 0 and len(d["models"]) >= 2
    assert doc["latency_table"]["path"] == d["path"] and d["path"].endswith(".recalibrated.json")
    assert proc.stderr.index("drift check:") < proc.stderr.index("== dnas")
    assert "Table check before the run" in (out / "minilm_cpu_quick.md").read_text()
    # and again after every point was measured, against the table the methods searched with
    after = d["after"]
    assert after["q1"] <= after["median_ratio"] <= after["q3"] and isinstance(after["drifted"], bool)
    assert proc.stderr.index("drift check after the measurements") > proc.stderr.index("== nsga2")
    assert "After the measurements the same models measured" in (out / "minilm_cpu_quick.md").read_text()
    # the front's fidelity once more with that drift taken out, next to the uncorrected row
    fid = doc["summary"]["fidelity"]
    assert fid["search_fronts_drift_corrected"]["n"] == fid["search_fronts"]["n"]
    assert "| search_fronts_drift_corrected |" in (out / "minilm_cpu_quick.md").read_text()


def test_the_calibration_models_run_interleaved_with_the_points(quick_run):
    """At the table's thread count its calibration models share the points' rounds; that drift corrects the front."""
    out, proc = quick_run
    doc = json.loads((out / "minilm_cpu_quick.json").read_text())
    d = doc["latency_table"]["drift"]
    during = d["during"]
    assert during["n"] == len(d["models"]) and during["threads"] == 1
    assert during["q1"] <= during["median_ratio"] <= during["q3"] and isinstance(during["drifted"], bool)
    assert f"at 1 thread(s) with the table's {len(d['models'])} calibration models" in proc.stderr
    assert "at 2 thread(s) with the table's" not in proc.stderr
    assert not any(p["key"].startswith("calibration/") for p in doc["points"])
    fid = doc["summary"]["fidelity"]
    assert fid["search_fronts_drift_corrected"]["drift_source"] == "during"
    pairs = [(p["predicted_ms"] * during["median_ratio"], p["latency"]["t1"]["median_ms"]) for p in doc["points"]
             if p.get("on_front") and p["method"] != "baselines" and p.get("predicted_ms") is not None]
    assert fid["search_fronts_drift_corrected"]["mape"] == pytest.approx(
        sum(abs(pr - m) / m for pr, m in pairs) / len(pairs))
    md = (out / "minilm_cpu_quick.md").read_text()
    assert "Alongside the points (in the same interleaved rounds at 1 thread(s))" in md
    assert "(measured alongside the points)" in md
    bh = doc["summary"]["budget_hits"]
    # the same drift divided out of DNAS's measured latencies before comparing with T (every quick run has DNAS points)
    assert bh["n"] >= 1
    assert bh["drift"] == pytest.approx(during["median_ratio"])
    dnas = [p for p in doc["points"] if p["method"] == "dnas" and p.get("target_ms") is not None]
    assert bh["drift_corrected_hit_rate"] == pytest.approx(
        sum(p["latency"]["t1"]["median_ms"] / bh["drift"] <= p["target_ms"] for p in dnas) / len(dnas))
    assert "with the host's drift (" in md


def test_remeasure_measures_the_kept_artifacts_again_and_rewrites_the_report(quick_run, tmp_path):
    out, _ = quick_run
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    before = json.loads((out / "minilm_cpu_quick.json").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.studies.benchmark_minilm_cpu.run", "--remeasure", str(out / "minilm_cpu_quick.json"),
         "--work", str(out / "work"), "--rounds", "2", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    after = json.loads((tmp_path / "minilm_cpu_quick.json").read_text())
    import onnxruntime

    assert after["measure"]["remeasured"]["rounds"] == 2
    assert after["measure"]["remeasured"]["onnxruntime"] == onnxruntime.__version__
    assert before["machine"]["onnxruntime"] == onnxruntime.__version__
    assert after["latency_table"]["runtime_version"] == before["latency_table"]["runtime_version"]
    assert f"onnxruntime {onnxruntime.__version__}" in (tmp_path / "minilm_cpu_quick.md").read_text()
    assert [p["key"] for p in after["points"]] == [p["key"] for p in before["points"]]
    assert [p["accuracy"] for p in after["points"]] == [p["accuracy"] for p in before["points"]]
    assert after["summary"]["cost"] == before["summary"]["cost"]
    assert any(a["latency"] != b["latency"] for a, b in zip(after["points"], before["points"]))
    # the calibration models ran alongside the re-measured points: a fresh drift, not the first one
    assert after["latency_table"]["drift"]["during"]["median_ratio"] != before["latency_table"]["drift"]["during"][
        "median_ratio"]
    assert "re-measured" in (tmp_path / "minilm_cpu_quick.md").read_text()
    bad = subprocess.run([sys.executable, "-m", "experiments.studies.benchmark_minilm_cpu.run", "--remeasure",
                          str(out / "minilm_cpu_quick.json"), "--work", str(tmp_path / "nowhere")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "no artifact at" in bad.stderr


def test_one_thread_latencies_are_timed_with_the_tables_clock(quick_run):
    out, _ = quick_run
    doc = json.loads((out / "minilm_cpu_quick.json").read_text())
    assert doc["measure"]["clock_t1"] == doc["latency_table"]["clock"] == "wall"
    assert "wall time at every thread count (the latency table's clock too" in (out / "minilm_cpu_quick.md").read_text()


def test_report_has_summary_first_and_how_to_read(quick_run):
    out, _ = quick_run
    md = (out / "minilm_cpu_quick.md").read_text()
    assert md.index("## Summary") < md.index("## How to read this") < md.index("## Every point")
    for label in ("ours (DNAS, nas search)", "random search", "NSGA-II (Optuna)", "user baselines"):
        assert label in md
    assert "reference point" in md and "met" in md


def test_optuna_parameter_names_are_the_space_labels():
    """NSGA-II asks one categorical per space label, named by the label (checked on the tiny space)."""
    import optuna

    from experiments.studies.benchmark_minilm_cpu.methods import suggest_arch
    from nas.spaces import load_space

    space = load_space("tiny-bert")
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.NSGAIISampler(population_size=4, seed=0))
    trial = study.ask()
    arch = suggest_arch(trial, space)
    assert set(trial.params) == set(space.labels) and arch == trial.params


def test_every_method_searched_under_the_latency_cap(quick_run):
    """``latency_cap`` binds in quick mode: black-box trials and DNAS targets stay at or under it."""
    out, _ = quick_run
    doc = json.loads((out / "minilm_cpu_quick.json").read_text())
    cap = doc["latency_cap"]
    assert cap["kind"] == 0.9 and cap["predicted_ms"] > 0
    searched = [p for p in doc["points"] if p["method"] in ("random", "nsga2")]
    assert searched and all(p["predicted_ms"] <= cap["predicted_ms"] + 1e-9 for p in searched)
    dnas = [p for p in doc["points"] if p["method"] == "dnas"]
    assert dnas and all(p["target_ms"] <= cap["predicted_ms"] * (1 + 1e-6) for p in dnas)
    lo, hi = cap["dnas_target_fraction"]["float"]
    assert hi == pytest.approx(0.9) and lo == pytest.approx(0.75)
    # stratified (config.yaml): DNAS trial n searched for the n-th target of the sequence, not TPE's choice
    from nas.search.experiment import Param, stratum_shift

    tf = Param("target_fraction", "float", low=lo, high=hi, stratified=True)
    assert cap["dnas_target_fraction"]["stratified"] is True
    for p in dnas:
        n = int(p["name"].split("-")[1])
        assert p["target_fraction"] == pytest.approx(tf.stratified_value(n, stratum_shift(0))), p["name"]
    assert all(isinstance(doc["summary"]["cost"][m]["rejected_over_cap"], int) for m in ("random", "nsga2"))
    # quick mode stops each black-box method at max_trials (its tiny trials would otherwise number hundreds)
    assert all(doc["summary"]["cost"][m]["trials"] <= doc["config"]["max_trials"] == 8 for m in ("random", "nsga2"))
    assert "**Latency cap**" in (out / "minilm_cpu_quick.md").read_text()


def test_capped_target_fraction_lowers_only_the_upper_end():
    from experiments.studies.benchmark_minilm_cpu.config import capped_target_fraction
    from nas.errors import ConfigError

    sample = {"target_fraction": {"float": [0.15, 0.8]}, "loss": {"choices": ["hinge"]}}
    capped = capped_target_fraction(sample, 0.4)
    assert capped["target_fraction"] == {"float": [0.15, 0.4]} and capped["loss"] == sample["loss"]
    assert sample["target_fraction"] == {"float": [0.15, 0.8]}  # the input is left alone
    assert capped_target_fraction(sample, 0.9)["target_fraction"] == {"float": [0.15, 0.8]}
    assert capped_target_fraction({"target_fraction": 0.7}, 0.4)["target_fraction"] == 0.4
    assert capped_target_fraction({}, 0.4)["target_fraction"] == {"float": [0.2, 0.4]}
    with pytest.raises(ConfigError, match=r"dnas\.sample\.target_fraction"):
        capped_target_fraction({"target_fraction": {"float": [0.5, 0.8]}}, 0.4)
    with pytest.raises(ConfigError, match=r"dnas\.sample\.target_fraction"):
        capped_target_fraction({"target_fraction": {"choices": [0.3]}}, 0.4)


def test_quick_config_overrides():
    full, quick = load_config(), load_config(quick=True, budget_minutes=0.5)
    assert full.space == "minilm-l6" and full.latency_table and full.students_k == (4, 3, 2)
    assert quick.space == "tiny-bert" and quick.latency_table is None and quick.budget_minutes == 0.5
    assert quick.threads == (1, 2)
    assert full.recalibrate == "if_drifted" and quick.recalibrate == "always"
    assert full.latency_cap == "teacher_int8" and quick.latency_cap == 0.9
    assert full.max_trials is None and quick.max_trials == 8


@pytest.mark.parametrize("key, value, field", [("recalibrate", "sometimes", "recalibrate"),
                                               ("region", {"accuracy_drop_points": -1}, "region.accuracy_drop_points"),
                                               ("region", {}, "region.accuracy_drop_points"),
                                               ("measure", {"clock_t1": "cpu"}, "measure.clock_t1"),
                                               ("latency_cap", "teacher", "latency_cap"),
                                               ("latency_cap", 1.5, "latency_cap"),
                                               ("latency_cap", True, "latency_cap"),
                                               ("max_trials", 0, "max_trials"),
                                               ("max_trials", True, "max_trials"),
                                               ("dnas", {"samples": {}}, "dnas.samples"),
                                               ("dnas", {"trainer": 3}, "dnas.trainer"),
                                               ("dnas_shared", {"supernet": {"steps": 4}, "trainer": [1]},
                                                "dnas_shared.trainer")])
def test_bad_benchmark_keys_are_named(key, value, field):
    from experiments.studies.benchmark_minilm_cpu.config import BenchConfig
    from nas.errors import ConfigError

    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        BenchConfig.from_dict({"space": "tiny-bert", "latency_table": None, "budget_minutes": 1, key: value})


def test_each_dnas_arm_overrides_the_shared_trainer_fields_less_what_it_samples():
    from experiments.studies.benchmark_minilm_cpu.config import BenchConfig
    from experiments.studies.benchmark_minilm_cpu.run import arm_trainer

    cfg = BenchConfig.from_dict({"space": "tiny-bert", "latency_table": None, "budget_minutes": 1,
                                 "trainer": {"steps": 20, "finetune_steps": 300, "batch_size": 16},
                                 "dnas": {"trainer": {"autocast": "none"}},
                                 "dnas_shared": {"supernet": {"steps": 4}, "trainer": {"steps": 10}}})
    assert arm_trainer(cfg, "dnas", {}) == {"steps": 20, "finetune_steps": 300, "batch_size": 16, "autocast": "none"}
    assert arm_trainer(cfg, "dnas_shared", {"finetune_steps": {"int": [15, 150]}}) == {"steps": 10, "batch_size": 16}


def test_clock_t1_resolves_table_to_the_tables_clock_and_keeps_an_explicit_one():
    from experiments.studies.benchmark_minilm_cpu.config import BenchConfig, clock_t1
    from experiments.studies.benchmark_minilm_cpu.report import clock_sentence

    base = {"space": "tiny-bert", "latency_table": None, "budget_minutes": 1}
    default = BenchConfig.from_dict(base)
    assert default.measure.clock_t1 == "table"
    assert clock_t1(default, "thread-cpu") == "thread-cpu" and clock_t1(default, "wall") == "wall"
    wall = BenchConfig.from_dict({**base, "measure": {"clock_t1": "wall"}})
    assert clock_t1(wall, "thread-cpu") == "wall"
    doc = {"latency_table": {"clock": "thread-cpu"}, "measure": {"clock_t1": "wall"}, "config": wall.to_dict()}
    assert "the latency table's clock is `thread-cpu`" in clock_sentence(doc)
    doc["measure"]["clock_t1"] = "thread-cpu"
    assert clock_sentence(doc).startswith("At 1 thread the clock is `thread-cpu`")
    assert "the latency table's clock too" in clock_sentence(doc)


def test_resolve_latency_cap_reads_only_the_space_and_table():
    from experiments.studies.benchmark_minilm_cpu.context import resolve_latency_cap
    from nas.errors import ConfigError

    table = "minilm-l6.onnxruntime-cpu.t1.b1.s128"
    sample = {"target_fraction": {"float": [0.04, 0.8], "log": True}}
    cap_ms, capped = resolve_latency_cap("teacher_int8", table, "minilm-l6", sample)
    lo, hi = capped["target_fraction"]["float"]
    assert lo == 0.04 and 0.04 < hi < 0.8 and capped["target_fraction"]["log"] is True
    full_ms, _ = resolve_latency_cap(1.0, table, "minilm-l6", sample)
    assert cap_ms == pytest.approx(hi * full_ms)
    assert resolve_latency_cap("none", table, "minilm-l6", sample) == (None, sample)
    with pytest.raises(ConfigError, match="latency_cap"):
        resolve_latency_cap(0.001, table, "minilm-l6", sample)


def test_the_shared_supernet_arm_trains_one_supernet_inside_its_clock_and_every_trial_starts_from_it(quick_run):
    """Issue 31 in the benchmark: ``dnas_shared`` runs the experiment with a ``supernet:`` section through the service."""
    out, proc = quick_run
    doc = json.loads((out / "minilm_cpu_quick.json").read_text())
    shared = [p for p in doc["points"] if p["method"] == "dnas_shared"]
    assert shared and len({p["shared_supernet"] for p in shared}) == 1 and len(shared[0]["shared_supernet"]) == 64
    assert all(p["shared_supernet"] is None for p in doc["points"] if p["method"] == "dnas")
    cost = doc["summary"]["cost"]
    assert cost["dnas_shared"]["shared_supernets"] == [shared[0]["shared_supernet"]]
    assert cost["dnas_shared"]["proxy"]["trials"] == len(shared)
    # the supernet is trained inside the method's clock: after its "==" line, before the first trial result
    start = proc.stderr.index("== dnas_shared")
    assert start < proc.stderr.index("supernet", start) < proc.stderr.index("complete: quality", start)
    rows = {t["key"]: t for t in doc["summary"]["targets"]}
    per_h = {m: cost[m]["trials"] / cost[m]["wall_s"] * 3600 for m in ("dnas", "dnas_shared")}
    assert rows["shared_trials_per_hour"]["value"] == pytest.approx(per_h["dnas_shared"] / per_h["dnas"])
    assert {"hv_region_shared_nsga2", "hv_region_shared_random", "proxy_tau_dnas", "proxy_tau_dnas_shared"} <= set(rows)
    md = (out / "minilm_cpu_quick.md").read_text()
    assert "ours, one shared supernet per study" in md
    # where a trial's time went: the median of each phase over the method's trials, in the cost table
    for m in ("dnas", "dnas_shared"):
        phases = cost[m]["phase_seconds"]
        assert list(phases)[:2] == ["setup", "teacher"] and {"search", "finetune", "eval_before", "eval_after"} <= set(phases)
        assert all(v >= 0 for v in phases.values()) and 0 < sum(phases.values()) < cost[m]["wall_s"]
    assert md.count("median trial: setup") == 2

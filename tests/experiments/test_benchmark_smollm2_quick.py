"""The decoder benchmark runs end to end in --quick mode (tiny-llama, its shipped tables, a small WordNet slice).

One subprocess run (it starts a local Ray for the DNAS method, like ``nas search``) into a temporary
folder; the report and its JSON must hold every method and baseline, both phases measured at both
thread counts for every point, and the per-phase hypervolumes, fidelity and targets.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("dnas", "random", "nsga2", "baselines")
PHASES = ("ttft_ms", "tpot_ms")

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_smollm2")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.studies.benchmark_smollm2_cpu.run", "--quick", "--out", str(out),
         "--work", str(out / "work")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, json.loads((out / "smollm2_cpu_quick.json").read_text()), proc


def test_quick_run_writes_report_json_and_a_plot_per_phase_and_thread_count(quick_run):
    out, _, _ = quick_run
    names = ["smollm2_cpu_quick.md", "smollm2_cpu_quick.json",
             *(f"smollm2_cpu_quick.{b}.t{t}.png" for b in PHASES for t in (1, 2))]
    for name in names:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name


def test_every_point_is_scored_and_timed_in_both_phases_as_a_deployed_graph(quick_run):
    out, doc, _ = quick_run
    for m in METHODS:
        assert any(p["method"] == m for p in doc["points"]), m
    assert doc["scorer"].startswith("kv-cached")  # each prompt prefilled alone, as a chat request runs
    for p in doc["points"]:
        assert 0.0 <= p["accuracy"] <= 1.0 and p["perplexity"] > 1.0 and p["size_mb"] > 0
        assert (out / "work" / p["artifact_dir"] / "model.quant.onnx").is_file()
        if p["name"] == "full-int8-dynamic":  # onnxruntime's MatMulInteger layers: a kernel no table prices
            assert p["predicted"] is None
        else:
            assert set(p["predicted"]) == set(PHASES) and all(v > 0 for v in p["predicted"].values())
        for b in PHASES:
            for t in (1, 2):
                st = p["latency"][b][f"t{t}"]
                assert st["median_ms"] > 0 and st["iqr_ms"] >= 0 and st["n"] == doc["measure"]["samples_per_point"]


def test_baselines_are_quantize_only_depth_and_width_pruning_at_three_precisions(quick_run):
    out, doc, proc = quick_run
    base = {p["name"]: p for p in doc["points"] if p["method"] == "baselines"}
    assert set(base) == {f"{s}-{d}" for s in ("full", "depth1", "width0.5") for d in ("fp32", "int8", "int4")} | {
        "full-int8-dynamic"}  # onnxruntime alone: the full model only
    full = base["full-fp32"]["arch"]
    work = out / "work"
    ops = {d: {n.op_type for n in onnx.load(str(work / base[f"full-{d}"]["artifact_dir"] / "model.quant.onnx")).graph.node}
           for d in ("int8", "int8-dynamic")}
    assert "MatMulNBits" in ops["int8"] and "MatMulNBits" not in ops["int8-dynamic"]  # export's int8 vs ORT alone
    assert base["full-int8-dynamic"]["arch"] == base["full-int8"]["arch"]
    assert base["full-int4"]["arch"]["layer0.attn.bits"] == 4 and base["full-int4"]["arch"]["embed.bits"] == 8
    assert base["full-int8"]["arch"]["layer1.ffn.bits"] == 8 and full["layer1.ffn.bits"] == 32
    dropped = doc["block_importance"]["dropped"]
    assert len(dropped) == 2 and all(v > 1 for v in dropped)
    least = min(range(2), key=lambda i: dropped[i])  # the layer whose removal hurts least is the one dropped
    assert base["depth1-fp32"]["arch"][f"layer{least}.keep"] == 0 and base["depth1-fp32"]["arch"][f"layer{1 - least}.keep"] == 1
    assert base["width0.5-fp32"]["arch"]["layer0.heads"] == 2 and base["width0.5-fp32"]["arch"]["layer1.ffn"] == 32
    assert "baselines: distilling depth1" in proc.stderr and "baselines: distilling width0.5" in proc.stderr


def test_summary_has_per_phase_hypervolumes_fidelity_and_the_targets(quick_run):
    _, doc, _ = quick_run
    s = doc["summary"]
    assert s["accuracy_reference"]["name"] == "full-fp32"
    assert s["best_quantized"]["name"] in ("full-int8", "full-int8-dynamic", "full-int4")
    for b in PHASES:
        ph = s["phases"][b]
        for m in METHODS:
            # (the region's box is not inside the whole range's when quantizing the tiny model slows it down)
            assert math.isfinite(ph["hypervolume"][m]) and ph["hypervolume"][m] >= 0, (b, m)
            assert math.isfinite(ph["hypervolume_region"][m]) and ph["hypervolume_region"][m] >= 0, (b, m)
        assert ph["fidelity_all"]["raw"]["n"] == sum(p["predicted"] is not None for p in doc["points"])  # every priced point
        assert doc["references"][b]["ratio"] > 0 and len(doc["references"][b]["models"]) == 2
        assert s["reference_ratio"][b] == doc["references"][b]["ratio"]
    assert s["fidelity_front_both"]["n"] >= 1
    assert {t["key"] for t in s["targets"]} >= {"tpot_speedup", "fidelity", "hv_region_tpot_ms_nsga2",
                                                "hv_whole_ttft_ms_random"}
    assert all(isinstance(t["met"], bool) for t in s["targets"])
    assert all(1 <= s["cost"][m]["trials"] <= 3 for m in ("random", "nsga2"))  # max_trials 3 (or the 3 s budget)
    assert s["cost"]["dnas"]["trials"] >= 1


def test_report_only_rewrites_the_report_from_the_json(quick_run, tmp_path):
    out, doc, _ = quick_run
    from experiments.studies.benchmark_smollm2_cpu.run import main

    assert main(["--report-only", str(out / "smollm2_cpu_quick.json"), "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "smollm2_cpu_quick.json").read_text())
    assert again["summary"]["targets"] == doc["summary"]["targets"]
    assert "## Targets" in (tmp_path / "smollm2_cpu_quick.md").read_text()

"""The distillation-budget study: its step-count fit on hand-worked cases, and --quick end to end."""

import json

import pytest

from experiments.studies.distill_budget_smollm2 import main, steps_to_close


def test_steps_to_close_fits_accuracy_against_doublings_of_the_distilled_rungs():
    rungs = [{"steps": 0, "accuracy": 0.10},  # undistilled: left out of the fit
             {"steps": 24, "accuracy": 0.40}, {"steps": 48, "accuracy": 0.42}, {"steps": 96, "accuracy": 0.44}]
    fit = steps_to_close(rungs, 0.50)
    assert fit["per_doubling"] == pytest.approx(0.02)
    assert fit["steps"] == 768  # three more doublings of 96
    assert steps_to_close(rungs, 0.44)["steps"] == 96
    flat = [{"steps": 24, "accuracy": 0.4}, {"steps": 96, "accuracy": 0.39}]
    assert steps_to_close(flat, 0.5) == {"per_doubling": pytest.approx(-0.005), "steps": None}
    assert steps_to_close(rungs[:2], 0.5) is None  # one distilled rung: no line


@pytest.mark.slow
@pytest.mark.parametrize("text", ["glosses", "items"])
def test_quick_run_scores_every_rung_and_the_last_at_int4(tmp_path, text):
    assert main(["--quick", "--text", text, "--depth-drops", "1", "--steps", "0", "2", "4",
                 "--out", str(tmp_path), "--name", "q", "--work", str(tmp_path / "w")]) == 0
    doc = json.loads((tmp_path / "q.json").read_text())
    assert doc["recipe"]["text"] == text and doc["recipe"]["train_dtype"] in ("fp32", "bf16")
    assert doc["recipe"]["calibration_text"] == text  # int4 scales calibrated on the training texts, as a trial's
    rungs = doc["structures"]["depth1"]["rungs"]
    assert [r["steps"] for r in rungs] == [0, 2, 4]
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["perplexity"] > 1.0 for r in rungs)
    assert rungs[0]["train_s"] <= rungs[1]["train_s"] <= rungs[2]["train_s"]
    last = doc["structures"]["depth1"]["int4_last"]
    assert last["steps"] == 4 and last["size_mb"] > 0
    e = doc["structures"]["depth1"]
    assert e["tpot_speedup_vs_full_int4"] == pytest.approx(doc["full"]["tpot_int4_predicted_ms"]
                                                           / e["tpot_int4_predicted_ms"])
    assert e["tpot_speedup_vs_full_int4"] > 1.0  # a layer fewer decodes faster, by the table
    md = (tmp_path / "q.md").read_text()
    assert "| depth1 int4 | 4 |" in md
    assert ("task's format" in md) == (text == "items")
    assert (tmp_path / "w" / "depth1" / "subnet" / "subnet.json").is_file()  # kept with --work
    exported = last["folder"]
    (tmp_path / "q.md").unlink()
    assert main(["--quick", "--rescore", str(tmp_path / "q.json"), "--work", str(tmp_path / "w")]) == 0
    again = json.loads((tmp_path / "q.json").read_text())
    assert again["rescored"] and again["structures"]["depth1"]["int4_last"]["folder"] == exported
    assert again["structures"]["depth1"]["rungs"] == rungs  # the PyTorch rungs stay as measured
    assert "scored again" in (tmp_path / "q.md").read_text()


"""The fine-tuning learning-rate side experiment: the choice rule, and a --quick run end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.studies.benchmark_minilm_cpu.finetune_lr import choose

ROOT = Path(__file__).resolve().parents[2]


def _rows(table):
    return [{"arch": a, "lr": lr, "val": v, "test": t} for a, lr, v, t in table]


def test_choose_ranks_on_validation_not_test():
    rows = _rows([("a", 1e-4, 0.70, 0.80), ("a", 3e-4, 0.74, 0.60),
                  ("b", 1e-4, 0.60, 0.80), ("b", 3e-4, 0.62, 0.60)])
    c = choose(rows)
    assert c["best"] == 3e-4 and c["baseline"] == 1e-4
    assert c["val_gain_points"] == pytest.approx(3.0) and c["test_gain_points"] == pytest.approx(-20.0)
    assert c["val_wins"] == 2


def test_choose_uses_only_architectures_run_at_every_rate():
    rows = _rows([("a", 1e-4, 0.70, 0.7), ("a", 3e-4, 0.69, 0.7), ("b", 3e-4, 0.99, 0.99)])
    c = choose(rows)
    assert c["archs"] == ["a"] and c["best"] == 1e-4 and c["val_wins"] == 0
    with pytest.raises(ValueError):
        choose(_rows([("a", 1e-4, 0.7, 0.7), ("b", 3e-4, 0.7, 0.7)]))


def test_choose_breaks_ties_towards_the_smaller_rate():
    c = choose(_rows([("a", 1e-4, 0.7, 0.7), ("a", 3e-4, 0.7, 0.9)]))
    assert c["best"] == 1e-4


def test_choose_compares_schedules_as_settings_of_their_own():
    rows = [{"arch": a, "lr": 3e-4, "schedule": sc, "val": v, "test": v} for a, sc, v in
            [("a", "constant", 0.70), ("a", "cosine", 0.73), ("b", "constant", 0.60), ("b", "cosine", 0.59)]]
    c = choose(rows)
    assert c["settings"] == ["0.0003", "0.0003 cosine"]
    assert (c["best"], c["best_schedule"]) == (3e-4, "cosine") and c["baseline_schedule"] == "constant"
    assert c["val_gain_points"] == pytest.approx(1.0) and c["val_wins"] == 1


@pytest.mark.slow
def test_quick_sweep_writes_its_report(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "experiments.studies.benchmark_minilm_cpu.finetune_lr", "--quick",
                           "--lrs", "1e-4,1e-3", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads((tmp_path / "minilm_cpu_quick.finetune_lr.json").read_text())
    assert {r["arch"] for r in doc["rows"]} == {"first1", "first2"} and len(doc["rows"]) == 4
    assert all(0.0 <= r["val"] <= 1.0 and 0.0 <= r["test"] <= 1.0 for r in doc["rows"])
    assert doc["choice"]["best"] in (1e-4, 1e-3)
    md = (tmp_path / "minilm_cpu_quick.finetune_lr.md").read_text()
    assert "Chosen:" in md and "first2" in md
    assert not list(tmp_path.glob(".*.tmp"))


def test_bad_arguments_are_one_line_errors_before_any_compute(tmp_path, capsys):
    from experiments.studies.benchmark_minilm_cpu.finetune_lr import main

    assert main(["--archs", "first4,nope", "--out", str(tmp_path)]) == 1
    assert "--archs: unknown architecture 'nope'" in capsys.readouterr().err
    assert main(["--lrs", "1e-4,fast", "--out", str(tmp_path)]) == 1
    assert "--lrs: expected comma-separated numbers" in capsys.readouterr().err
    assert main(["--lrs", "0,1e-4", "--out", str(tmp_path)]) == 1
    assert "--lrs: learning rates must be > 0" in capsys.readouterr().err
    assert main(["--schedules", "constant,linear", "--out", str(tmp_path)]) == 1
    assert "--schedules: unknown schedule 'linear'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())

"""search_once end to end on tiny-bert with a synthetic WordNet slice, and its typed errors."""

import json
import re

import pytest

from nas.errors import ConfigError, DataError, LatencyTableError
from trainers import SearchConfig, search_once, warm
from trainers.teacher import cache_root

FAST = dict(space="tiny-bert", steps=12, warmup_steps=4, batch_size=16, max_length=16, weight_lr=3e-3,
            arch_lr=0.1, finetune_steps=8, finetune_lr=3e-3, log_every=1, teacher_steps=100)


def test_short_run_meets_target_and_improves_over_its_first_step(tiny_table, wordnet_slice):
    lines = []
    cfg = SearchConfig(latency_table=tiny_table(), target_fraction=0.4, **FAST)
    r = search_once(cfg, progress=lines.append)
    assert r.target_ms == pytest.approx(0.4 * 18.0)
    assert r.feasible and r.latency_ms <= r.target_ms
    assert r.argmax_latency_ms <= r.target_ms or r.notes  # an infeasible argmax is always reported
    losses = [h["weight_loss"] for h in r.history]
    assert sum(losses[-4:]) / 4 < losses[0]
    assert r.metric == "accuracy" and 0.0 <= r.quality_after <= 1.0 and r.teacher_quality > 0.5
    assert {"setup", "teacher", "search", "derive", "finetune", "eval_after"} <= set(r.phase_seconds)
    arch_rows = [h for h in r.history if "ratio" in h]
    assert arch_rows and {"tau", "lambda", "task", "expected_ms", "argmax_ms"} <= set(arch_rows[0])
    assert any(line.startswith("search step") and "E[LAT]/T" in line and "lambda" in line for line in lines)
    json.dumps(r.to_dict())
    assert r.subnet is not None and r.size_bytes == r.subnet.size().bytes
    # the fine-tuned head travels with the subnet: it recomputes the recorded test accuracy exactly
    from nas.tasks.metric import head_accuracy

    assert r.subnet.head is not None and r.subnet.head.max_length == FAST["max_length"]
    assert head_accuracy(r.subnet)[1](r.subnet) == pytest.approx(100 * r.quality_after, abs=1e-9)
    # the next trial in this process keeps the model, data and teacher (trainers.warm) and its result is the one a
    # fresh process gets; a fresh process reuses the teacher cached on disk under a key of its inputs
    assert len(list((cache_root() / "teacher").iterdir())) == 1
    short = cfg.replace(steps=2, warmup_steps=0, finetune_steps=0)
    kept = []
    r_kept = search_once(short, progress=kept.append)
    assert kept[1] == "setup: kept from this process's last trial: model, data, teacher"
    assert not any(line.startswith("teacher:") for line in kept)
    warm.clear()
    fresh = []
    r_fresh = search_once(short, progress=fresh.append)
    assert any("teacher: reusing cache" in line for line in fresh) and not any("kept from" in line for line in fresh)
    assert r_kept.arch == r_fresh.arch and r_kept.history == r_fresh.history
    assert r_kept.quality_before == r_fresh.quality_before and r_kept.quality_after == r_fresh.quality_after


def test_embed_task_scores_cosine_fidelity(tiny_table, wordnet_slice):
    cfg = SearchConfig(latency_table=tiny_table(), target_fraction=0.6, task="wordnet-embed",
                       **{**FAST, "steps": 3, "finetune_steps": 3})
    lines = []
    r = search_once(cfg, progress=lines.append, device="cpu")
    assert lines[0].startswith("setup: ") and re.search(r", training on cpu in (bf16|fp32)$", lines[0])
    assert all(p.device.type == "cpu" for p in r.subnet.parameters())  # the subnet comes back on the CPU
    assert r.metric == "cosine" and r.teacher_quality == 1.0 and -1.0 <= r.quality_after <= 1.0
    assert r.subnet.head is None  # no head to keep: the export scores teacher fidelity
    assert r.latency_ms <= r.target_ms


def test_target_below_smallest_architecture_is_refused_before_training(tiny_table, wordnet_slice):
    lines = []
    with pytest.raises(ConfigError, match="target_ms.*below the smallest"):
        search_once(SearchConfig(latency_table=tiny_table(), target_ms=1.0, target_fraction=None, **FAST),
                    progress=lines.append)
    assert lines == []


def test_table_for_another_space_is_refused(tiny_table, wordnet_slice):
    with pytest.raises(LatencyTableError, match="space hash"):
        search_once(SearchConfig(latency_table=tiny_table("tiny-llama"), **FAST), progress=None)


def test_missing_wordnet_is_a_data_error(tiny_table, tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_WORDNET_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="wordnet-base"):
        search_once(SearchConfig(latency_table=tiny_table(), **FAST), progress=None)


@pytest.mark.parametrize("change, field", [
    ({"loss": "quadratic"}, "loss"), ({"target_ms": 0.0, "target_fraction": None}, "target_ms"),
    ({"target_ms": -3.0, "target_fraction": None}, "target_ms"), ({"kd_weight": 1.5}, "kd_weight"),
    ({"size_weight": 1.0}, "size_target_mb"), ({"max_train": 0}, "max_train"), ({"band_fill": "yes"}, "band_fill"),
    ({"autocast": "fp16"}, "autocast"), ({"finetune_schedule": "linear"}, "finetune_schedule"),
    ({"int4_scales": "gptq"}, "int4_scales"), ({"distill_text": "prompts"}, "distill_text"),
])
def test_bad_config_is_a_config_error_naming_the_field(change, field):
    with pytest.raises(ConfigError, match=field):
        SearchConfig(**change)


def test_band_derives_into_the_band(tiny_table, wordnet_slice):
    # 2 architecture steps cannot move the distribution far: the argmax stays where it starts, and
    # with band (and band_fill) the derived architecture is grown into [0.9·T, T] all the same
    cfg = SearchConfig(latency_table=tiny_table(), target_fraction=0.6, loss="band",
                       **{**FAST, "steps": 2, "warmup_steps": 0, "finetune_steps": 0})
    r = search_once(cfg)
    assert r.argmax_latency_ms < 0.9 * r.target_ms  # 2.25 ms (one int8 layer) against T = 10.8 ms
    assert 0.9 * r.target_ms <= r.latency_ms <= r.target_ms
    assert any("grew it toward the band" in n for n in r.notes)
    off = search_once(cfg.replace(band_fill=False))
    assert off.latency_ms == pytest.approx(r.argmax_latency_ms) and not off.notes


def test_config_round_trips():
    c = SearchConfig(target_ms=12.5, target_fraction=None, loss="fbnet", max_train=None, seed=3)
    assert SearchConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_cli_trial_runs_and_saves(tiny_table, wordnet_slice, tmp_path):
    import subprocess
    import sys

    table = tiny_table()
    cmd = [sys.executable, "-m", "nas.cli", "trial", "--space", "tiny-bert", "--table", table, "--target-fraction",
           "0.5", "--out", str(tmp_path / "out"), "-f", "json"]
    sets = [f"--set={k}={json.dumps(v)}" for k, v in {**FAST, "steps": 3, "finetune_steps": 2}.items() if k != "space"]
    p = subprocess.run(cmd + sets, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["latency_ms"] <= 9.0
    assert (tmp_path / "out" / "subnet" / "model.safetensors").is_file()
    assert (tmp_path / "out" / "subnet" / "head.safetensors").is_file()
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert SearchConfig.from_dict(saved["config"]).target_fraction == 0.5
    bad = subprocess.run(cmd + ["--set", "lossform=hinge"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert "lossform" in bad.stderr

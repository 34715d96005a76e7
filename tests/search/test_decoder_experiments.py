"""The decoder experiment files parse, and every sampled range passes the plug-in's check at both ends."""

from pathlib import Path

import pytest

from nas.search.experiment import Experiment
from trainers.config import SearchConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name, space, table", [
    ("smoke_decoder", "tiny-llama", "tiny-llama.onnxruntime-cpu.t1.b1.s32"),
    ("smollm2_cpu", "smollm2-135m", "smollm2-135m.onnxruntime-cpu.t1.b1.s128"),
])
def test_decoder_experiment_parses_and_checks(name, space, table):
    exp = Experiment.from_yaml(ROOT / "experiments" / f"{name}.yaml")
    assert (exp.name, exp.space, exp.task, exp.latency_table) == (name, space, "wordnet-definitions", table)
    assert exp.objectives == ("quality", "latency_ms", "size_mb")
    exp.check()  # the table fits the space, every target in the sampled range is reachable
    cfg = exp.search_config({})
    assert isinstance(cfg, SearchConfig) and cfg.task == "wordnet-definitions"


def test_phases_experiment_parses_and_checks():
    """experiments/smollm2_phases.yaml: TTFT and TPOT, each priced by its own table and swept together."""
    exp = Experiment.from_yaml(ROOT / "experiments" / "smollm2_phases.yaml")
    assert exp.latency_tables == {"ttft_ms": "smollm2-135m.onnxruntime-cpu.t1.b1.s128",
                                  "tpot_ms": "smollm2-135m.onnxruntime-cpu.t1.b1.c256.decode"}
    assert exp.objectives == ("quality", "ttft_ms", "tpot_ms", "size_mb")
    assert [k for k, p in exp.sample.items() if p.stratified] == ["target_fractions.ttft_ms",
                                                                  "target_fractions.tpot_ms"]
    exp.check()  # both tables fit the space and their phase; every target in both ranges is reachable
    cfg = exp.search_config(exp.stratified_values(1))
    assert cfg.latency_table == exp.latency_tables["ttft_ms"] and set(cfg.target_fractions) == {"ttft_ms", "tpot_ms"}


@pytest.mark.parametrize("name, space", [("minilm_shared", "minilm-l6"), ("smollm2_shared", "smollm2-135m")])
def test_shared_supernet_experiments_parse_and_check(name, space):
    """The weight-sharing experiments of both embedded models: a supernet section, trials on frozen shared weights,
    a sampled fine-tuning budget, and every sampled range passes the plug-in's check."""
    exp = Experiment.from_yaml(ROOT / "experiments" / f"{name}.yaml")
    assert (exp.name, exp.space) == (name, space) and exp.supernet["steps"] > 0
    assert "finetune_steps" in exp.sample
    exp.check()
    cfg = exp.search_config({k: p.example() for k, p in exp.sample.items()})
    assert cfg.freeze_weights and cfg.finetune_schedule == "cosine"

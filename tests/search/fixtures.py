"""Tiny search fixtures: a hand-computable tiny-bert latency table and experiment files."""

from __future__ import annotations

from pathlib import Path

import yaml

from nas.latency import LatencyTable, required_keys
from nas.spaces import load_space


def tiny_table(path: Path) -> Path:
    """tiny-bert table: attn H heads at B bits = H·B/32 · 0.1 ms, FFN W at B = W/16·B/32 · 0.1 ms,
    embed 0.2·B/32 ms, rest 0.05 ms, overhead 0.1 ms. The full model (2 layers, 4 heads, FFN 64, fp32):
    0.1 + 0.2 + 0.05 + 2·(0.4 + 0.4) = 1.95 ms."""
    space = load_space("tiny-bert")
    entries = {}
    for key in required_keys(space):
        parts = dict(p.split("=") for p in key.split(":")[1:])
        if key.startswith("attn"):
            ms = int(parts["heads"]) * int(parts["bits"]) / 32 * 0.1
        elif key.startswith("ffn"):
            ms = int(parts["width"]) / 16 * int(parts["bits"]) / 32 * 0.1
        elif key.startswith("embed"):
            ms = 0.2 * int(parts["bits"]) / 32
        else:
            ms = {"rest": 0.05, "overhead": 0.1}[key]
        entries[key] = {"median_ms": ms, "iqr_ms": 0.0, "n": 1}
    table = LatencyTable(space_name=space.name, space_hash=space.hash, device={"cpu": "fixture", "fingerprint": "fx"},
                         runtime={"name": "fixture"}, threads=1, batch=1, seq=16, entries=entries)
    return table.save(path)


def experiment_file(tmp: Path, *, name: str = "tiny", trial: str = "tests.search.trials:light",
                    run: dict | None = None, **over) -> Path:
    table = tiny_table(tmp / "tiny-bert.fixture.json")
    d = {
        "name": name, "space": "tiny-bert", "task": "wordnet-embed", "latency_table": table.name, "trial": trial,
        "trainer": {"steps": 2, "warmup_steps": 0, "finetune_steps": 0},
        "sample": {"target_fraction": {"float": [0.3, 0.9]}, "lambda0": {"float": [0.1, 10.0], "log": True},
                   "loss": {"choices": ["hinge", "fbnet"]}, "seed": {"int": [0, 100000]}},
        "run": {"trials": 3, "concurrency": 2, "cpus_per_trial": 1, "max_failures": 2, **(run or {})},
        "sampler": {"name": "random", "seed": 0},
    }
    d.update(over)
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    return p


TTFT_TABLE = "tiny-llama.onnxruntime-cpu.t1.b1.s32"  # prefill of 32 tokens
TPOT_TABLE = "tiny-llama.onnxruntime-cpu.t1.b1.c32.decode"  # one decode step after 32 cached tokens


def phases_dict(*, name: str = "phases", trial: str = "trainers:dnas", **over) -> dict:
    """A tiny-llama experiment priced per phase (the shipped prefill and decode tables), as a dict."""
    d = {
        "name": name, "space": "tiny-llama", "task": "wordnet-definitions", "trial": trial,
        "latency_tables": {"ttft_ms": TTFT_TABLE, "tpot_ms": TPOT_TABLE},
        "trainer": {"steps": 2, "warmup_steps": 1, "batch_size": 4, "max_length": 32, "finetune_steps": 1,
                    "max_train": 32, "max_eval": 8, "log_every": 1, "checkpoint_every": 2, "loss": "hinge"},
        "sample": {"target_fractions.ttft_ms": {"float": [0.6, 0.9], "stratified": True},
                   "target_fractions.tpot_ms": {"float": [0.6, 0.9], "stratified": True},
                   "seed": {"int": [0, 3]}},
        "run": {"trials": 2, "concurrency": 1, "cpus_per_trial": 1, "max_failures": 0},
        "sampler": {"name": "random", "seed": 0},
    }
    d.update(over)
    return d


def phases_experiment_file(tmp: Path, **over) -> Path:
    d = phases_dict(**over)
    p = tmp / f"{d['name']}.yaml"
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    return p

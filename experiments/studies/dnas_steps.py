"""Benchmark: how many supernet steps does a DNAS trial need? Accuracy and time side by side.

A benchmark DNAS trial spends 60 supernet steps (≈28 s on 2 cores) before the same
fine-tuning a black-box trial gets, so black-box search tries ~2.4× as many
architectures in the same wall clock. This runs, in one process and interleaved,
``(steps, arch_lr)`` settings at the same targets and seeds with the benchmark's own
trainer settings (``experiments/studies/benchmark_minilm_cpu/config.yaml``: band loss, 300
fine-tuning steps at 3e-4), and writes ``experiments/reports/dnas_steps.{md,json}``::

    PYTHONPATH=. .venv/bin/python experiments/studies/dnas_steps.py                       # 60/30/20 steps, T 6 % and 15 %, seeds 0-1
    PYTHONPATH=. .venv/bin/python experiments/studies/dnas_steps.py --settings 60:0.01 20:0.03 --seeds 3

Fewer steps with a proportionally larger ``arch_lr`` keep the architecture logits'
total movement (steps × lr) about the same.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from experiments.studies.dnas_budget import quartiles  # noqa: E402
from experiments.studies.report_files import md_table, write_report  # noqa: E402
from trainers import SearchConfig, search_once  # noqa: E402

REPORT = ROOT / "experiments" / "reports" / "dnas_steps"
BENCH = ROOT / "experiments" / "benchmark_minilm_cpu" / "config.yaml"


def setting_key(steps: int, arch_lr: float) -> str:
    return f"{steps}:{arch_lr:g}"


def run_trial(config: SearchConfig) -> dict:
    t = time.perf_counter()
    r = search_once(config, progress=None)
    d = r.to_dict()
    d.pop("history")
    d.update(setting=setting_key(config.steps, config.arch_lr), target_fraction=config.target_fraction,
             seed=config.seed, wall_s=time.perf_counter() - t, ratio=r.latency_ms / r.target_ms)
    return d


def _med_iqr(xs: list[float]) -> tuple[float, float, float]:
    q = quartiles(xs)
    return q["median"], q["q1"], q["q3"]


def parse_setting(text: str) -> tuple[int, float]:
    """``"STEPS:ARCH_LR"`` → ``(steps, arch_lr)``; argparse reports a bad one by name."""
    try:
        steps, lr = text.split(":")
        return int(steps), float(lr)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected STEPS:ARCH_LR, e.g. 20:0.03") from None


def summarize(trials: list[dict]) -> dict[str, dict]:
    """Per setting: accuracy after fine-tuning, latency/T, search seconds, trial wall seconds (median, Q1, Q3).

    ``acc_vs_first`` is the paired difference in points against the first setting on the same (T, seed).
    """
    settings = list(dict.fromkeys(t["setting"] for t in trials))
    first = {(t["target_fraction"], t["seed"]): t for t in trials if t["setting"] == settings[0]}
    out = {}
    for s in settings:
        ts = [t for t in trials if t["setting"] == s]
        paired = [100 * (t["quality_after"] - first[(t["target_fraction"], t["seed"])]["quality_after"])
                  for t in ts if (t["target_fraction"], t["seed"]) in first]
        out[s] = {"trials": len(ts), "acc_after": _med_iqr([t["quality_after"] for t in ts]),
                  "acc_vs_first_points": _med_iqr(paired) if paired else None,
                  "ratio": _med_iqr([t["ratio"] for t in ts]),
                  "search_s": _med_iqr([t["phase_seconds"]["search"] for t in ts]),
                  "wall_s": _med_iqr([t["wall_s"] for t in ts])}
    return out


def markdown(doc: dict) -> str:
    def q(v, fmt):
        return "–" if v is None else f"{fmt.format(v[0])} [{fmt.format(v[1])}, {fmt.format(v[2])}]"

    lines = ["# DNAS supernet steps: accuracy and time per trial (minilm-l6, WordNet nouns)", "",
             f"Command: `{doc['command']}` — {doc['started']} → {doc['finished']} UTC. Machine: {doc['machine']}.", "",
             f"Trainer: the benchmark's (`{doc['trainer_source']}`): loss {doc['trainer']['loss']}, "
             f"{doc['trainer']['finetune_steps']} fine-tuning steps at {doc['trainer']['finetune_lr']:g}. "
             f"Targets T = {', '.join(f'{f:.0%}' for f in doc['targets'])} of the full model's table latency; "
             f"seeds {doc['seeds']}; settings run interleaved (each (T, seed) runs every setting before the next).", "",
             "Accuracy is the trainer's test accuracy (what the DNAS study stores); the setting it informs is the "
             "trial's cost, and the benchmark's comparison of methods is rerun from scratch with it.", "",
             "Median [Q1, Q3] over a setting's trials; the paired column is the accuracy difference against the "
             "first setting on the same (T, seed), in points.", ""]
    lines += md_table(
        ["steps:arch_lr", "trials", "test acc after FT", "vs first setting (pts)", "LAT/T", "search s", "trial wall s"],
        ([s, r["trials"], q(r["acc_after"], "{:.4f}"), q(r["acc_vs_first_points"], "{:+.2f}"), q(r["ratio"], "{:.3f}"),
          q(r["search_s"], "{:.1f}"), q(r["wall_s"], "{:.1f}")] for s, r in doc["summary"].items()))
    lines.append("")
    lines += md_table(
        ["steps:arch_lr", "T", "seed", "architecture", "LAT ms (T)", "acc after FT", "search s", "wall s"],
        ([t["setting"], f"{t['target_fraction']:.0%}", t["seed"], f"`{t['arch_summary']}`",
          f"{t['latency_ms']:.2f} ({t['target_ms']:.2f})", f"{t['quality_after']:.4f}",
          f"{t['phase_seconds']['search']:.1f}", f"{t['wall_s']:.1f}"] for t in doc["trials"]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="+", type=parse_setting, default=[(60, 0.01), (30, 0.02), (20, 0.03)],
                    metavar="STEPS:ARCH_LR")
    ap.add_argument("--targets", type=float, nargs="+", default=[0.06, 0.15])
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args(argv)
    settings = args.settings
    bench = yaml.safe_load(BENCH.read_text())
    trainer = dict(bench["trainer"])
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    trials = []
    for frac in args.targets:
        for seed in range(args.seeds):
            for steps, lr in settings:
                cfg = SearchConfig(**{**trainer, "space": bench["space"], "latency_table": bench["latency_table"],
                                      "target_fraction": frac, "seed": seed, "steps": steps, "arch_lr": lr})
                t = run_trial(cfg)
                trials.append(t)
                print(f"[{len(trials)}] {t['setting']} T {frac:.0%} seed {seed}: acc {t['quality_after']:.4f} "
                      f"LAT {t['latency_ms']:.2f}/{t['target_ms']:.2f} ms, search {t['phase_seconds']['search']:.1f} s, "
                      f"wall {t['wall_s']:.1f} s", file=sys.stderr, flush=True)
    doc = {"command": "PYTHONPATH=. .venv/bin/python experiments/studies/dnas_steps.py " + " ".join(argv or sys.argv[1:]),
           "started": started, "finished": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
           "machine": f"{platform.machine()} ({os.cpu_count()} cores)", "trainer_source": str(BENCH.relative_to(ROOT)),
           "trainer": trainer, "targets": args.targets, "seeds": list(range(args.seeds)),
           "trials": trials, "summary": summarize(trials)}
    write_report(REPORT, doc, markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

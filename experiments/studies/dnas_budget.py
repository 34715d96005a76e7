"""Benchmark: does the DNAS trainer hit its latency budget, and what does it cost in accuracy and time?

One command runs every (target, seed) trial that is not yet in the report and
rewrites ``experiments/reports/dnas_budget.{json,md}`` after each trial, so an
interrupted benchmark continues where it stopped::

    PYTHONPATH=. .venv/bin/python experiments/studies/dnas_budget.py            # 10 seeds at T = 50 %, 1 at 30 % / 70 %
    PYTHONPATH=. .venv/bin/python experiments/studies/dnas_budget.py --seeds 3  # fewer seeds
    PYTHONPATH=. .venv/bin/python experiments/studies/dnas_budget.py --set steps=150 --set finetune_steps=200
    # two processes side by side, one torch thread each, sharing the report (merged under a file lock)
    PYTHONPATH=. .venv/bin/python experiments/studies/dnas_budget.py --threads 1 --shard 0/2 &
    PYTHONPATH=. .venv/bin/python experiments/studies/dnas_budget.py --threads 1 --shard 1/2

Setting: ``minilm-l6`` on WordNet nouns (26 lexicographer classes), the ORT
latency table ``minilm-l6.onnxruntime-cpu.t1.b1.s128``, T as a fraction of the
full model's table latency, default :class:`trainers.SearchConfig` otherwise.
A trial hits the budget when its final table latency is ≤ 1.02·T.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from experiments.studies.report_files import md_table, write_report  # noqa: E402
from trainers import SearchConfig, search_once  # noqa: E402

REPORT = ROOT / "experiments" / "reports" / "dnas_budget"
TABLE = "minilm-l6.onnxruntime-cpu.t1.b1.s128"
HIT = 1.02


def quartiles(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    if len(xs) == 1:
        return {"median": xs[0], "q1": xs[0], "q3": xs[0], "iqr": 0.0, "n": 1}
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return {"median": statistics.median(xs), "q1": q[0], "q3": q[2], "iqr": q[2] - q[0], "n": len(xs)}


def run_trial(config: SearchConfig) -> dict:
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    r = search_once(config, progress=lambda line: print(line, flush=True))
    wall = time.perf_counter() - t
    d = r.to_dict()
    d.pop("history")
    d.update(target_fraction=config.target_fraction, seed=config.seed, wall_s=wall,
             ratio=r.latency_ms / r.target_ms, hit=r.latency_ms <= HIT * r.target_ms,
             loadavg_start=load0, loadavg_end=os.getloadavg()[0],
             lambda_final=r.history[-1].get("lambda_next") if r.history else None)
    return d


def summarize(trials: list[dict]) -> dict:
    out: dict = {}
    for frac in sorted({t["target_fraction"] for t in trials}):
        ts = [t for t in trials if t["target_fraction"] == frac]
        phases = sorted({k for t in ts for k in t["phase_seconds"]})
        out[str(frac)] = {
            "trials": len(ts),
            "hits": sum(t["hit"] for t in ts),
            "target_ms": ts[0]["target_ms"],
            "ratio": quartiles([t["ratio"] for t in ts]),
            "argmax_ratio": quartiles([t["argmax_latency_ms"] / t["target_ms"] for t in ts]),
            "feasibility_rule_used": sum(bool(t["notes"]) for t in ts),
            "quality_before": quartiles([t["quality_before"] for t in ts]),
            "quality_after": quartiles([t["quality_after"] for t in ts]),
            "after_minus_teacher_points": quartiles([100 * (t["quality_after"] - t["teacher_quality"]) for t in ts]),
            "within_2_points": sum(t["quality_after"] >= t["teacher_quality"] - 0.02 for t in ts),
            "size_mb": quartiles([t["size_mb"] for t in ts]),
            "phase_seconds": {p: quartiles([t["phase_seconds"].get(p, 0.0) for t in ts]) for p in phases},
            "search_plus_finetune_s": quartiles([t["phase_seconds"]["search"] + t["phase_seconds"]["derive"]
                                                 + t["phase_seconds"]["finetune"] for t in ts]),
            "wall_s": quartiles([t["wall_s"] for t in ts]),
        }
    return out


def f(q: dict, fmt: str = "{:.3f}") -> str:
    return f"{fmt.format(q['median'])} [{fmt.format(q['q1'])}, {fmt.format(q['q3'])}]"


def markdown(doc: dict) -> str:
    s = doc["summary"]
    lines = [
        "# DNAS budget benchmark (minilm-l6, WordNet nouns, ORT latency table)", "",
        f"Command: `{doc['command']}`  ",
        f"Machine: {doc['machine']}. A load average above the trial's own threads means other jobs "
        "shared the 2 cores (two 1-thread trials side by side give ~2), so its wall time is an upper bound.  ",
        f"Latency table: `{doc['table']}`, full model {doc['full_ms']:.3f} ms.  ",
        f"Teacher (all-MiniLM-L6-v2 frozen + linear head, {doc['config']['teacher_max_train']} train glosses): "
        f"test accuracy **{doc['teacher_quality']:.4f}** on {doc['config']['max_eval']} test glosses.", "",
        "Values are median [Q1, Q3] over the trials of a row.", "",
    ]
    lines += md_table(
        ["T", "trials", "hit ≤1.02·T", "LAT/T", "argmax LAT/T", "acc before FT", "acc after FT", "after − teacher (pts)",
         "within 2 pts", "size MB", "search+FT s"],
        ([f"{float(frac):.0%} ({r['target_ms']:.2f} ms)", r["trials"], f"{r['hits']}/{r['trials']}", f(r["ratio"]),
          f(r["argmax_ratio"]), f(r["quality_before"], "{:.4f}"), f(r["quality_after"], "{:.4f}"),
          f(r["after_minus_teacher_points"], "{:.2f}"), f"{r['within_2_points']}/{r['trials']}",
          f(r["size_mb"], "{:.2f}"), f(r["search_plus_finetune_s"], "{:.0f}")] for frac, r in s.items()),
        compact=True)
    lines += ["", "Wall time per phase (s):", ""]
    lines += md_table(["T", *next(iter(s.values()))["phase_seconds"]],
                      ([f"{float(frac):.0%}", *(f(q, "{:.1f}") for q in r["phase_seconds"].values())]
                       for frac, r in s.items()), compact=True)
    lines += ["", "Trials:", ""]
    lines += md_table(
        ["T", "seed", "architecture", "LAT ms", "acc before → after", "threads", "wall s", "load avg", "notes"],
        ([f"{t['target_fraction']:.0%}", t["seed"], f"`{t['arch_summary']}`", f"{t['latency_ms']:.3f}",
          f"{t['quality_before']:.4f} → {t['quality_after']:.4f}", t.get("threads", 2), f"{t['wall_s']:.0f}",
          f"{t['loadavg_start']:.1f}–{t['loadavg_end']:.1f}", "feasibility rule" if t["notes"] else ""]
         for t in doc["trials"]), compact=True)
    return "\n".join(lines) + "\n"


def write(doc: dict) -> None:
    """Merge ``doc``'s trials into the report on disk (another shard may have added some) and rewrite it."""
    import fcntl

    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with open(REPORT.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = REPORT.with_suffix(".json")
        if path.is_file():
            on_disk = json.loads(path.read_text())
            if on_disk.get("config") == doc.get("config"):
                mine = {(t["target_fraction"], t["seed"]) for t in doc["trials"]}
                doc["trials"] = [t for t in on_disk["trials"] if (t["target_fraction"], t["seed"]) not in mine] + doc["trials"]
                doc["trials"].sort(key=lambda t: (t["target_fraction"] != 0.5, t["target_fraction"], t["seed"]))
        doc["summary"] = summarize(doc["trials"])
        write_report(REPORT, doc, markdown(doc))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10, help="seeds at the main target")
    ap.add_argument("--target", type=float, default=0.5)
    ap.add_argument("--extra-targets", type=float, nargs="*", default=[0.3, 0.7])
    ap.add_argument("--extra-seeds", type=int, default=1)
    ap.add_argument("--max-trials", type=int, default=None, help="stop after this many new trials")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="SearchConfig override (JSON value)")
    ap.add_argument("--fresh", action="store_true", help="ignore trials already in the report")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads of this process")
    ap.add_argument("--shard", default="0/1", metavar="K/N", help="run only the K-th of every N planned trials")
    args = ap.parse_args(argv)
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    base = SearchConfig(latency_table=TABLE, **overrides)
    plan = [(args.target, s) for s in range(args.seeds)]
    plan += [(t, s) for t in args.extra_targets for s in range(args.extra_seeds)]
    doc = {"trials": []}
    if REPORT.with_suffix(".json").is_file() and not args.fresh:
        doc = json.loads(REPORT.with_suffix(".json").read_text())
        if doc.get("config") != {**base.to_dict(), "seed": None, "target_fraction": None}:
            print("report was made with another config; use --fresh to start over", file=sys.stderr)
            return 1
    done = {(t["target_fraction"], t["seed"]) for t in doc["trials"]}
    k, n = map(int, args.shard.split("/"))
    todo = [p for i, p in enumerate(plan) if i % n == k and p not in done][: args.max_trials]
    torch.set_num_threads(args.threads)
    print(f"{len(done)} trials in the report, {len(todo)} to run: {todo}", flush=True)
    for frac, seed in todo:
        print(f"== trial T = {frac:.0%}, seed {seed}", flush=True)
        t = run_trial(base.replace(target_fraction=frac, seed=seed))
        t["threads"] = args.threads
        doc["trials"].append(t)
        doc.update(
            command="PYTHONPATH=. .venv/bin/python experiments/studies/dnas_budget.py " + " ".join(sys.argv[1:]),
            machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (torch threads per trial in the table)",
            table=TABLE, full_ms=t["target_ms"] / frac, teacher_quality=t["teacher_quality"],
            config={**base.to_dict(), "seed": None, "target_fraction": None})
        write(doc)
        print(f"== done: LAT/T {t['ratio']:.3f}, acc {t['quality_before']:.4f} → {t['quality_after']:.4f} "
              f"(teacher {t['teacher_quality']:.4f}), {t['wall_s']:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

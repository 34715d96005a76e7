"""Study: what a shared-supernet MiniLM trial costs, and what keeping its setup and running two trials at once buy.

Every trial of a shared-supernet study (the MiniLM benchmark's ``dnas_shared`` arm) loads the same model, reads and
tokenizes the same data, loads the same teacher and reads the same shared weights; a trial process now keeps them
for its next trial (:mod:`trainers.warm`). Three measurements, on the same sampled trials (the benchmark's ranges:
target stratified, 15-150 fine-tuning steps), in one run:

1. *cold vs kept*, paired: each trial runs once with nothing kept (as every trial did before ``trainers.warm``) and
   once right after, keeping the first run's setup; 2 threads, one process; per-phase seconds of both;
2. *one trial at a time on 2 threads* (the benchmark's ``concurrency: 1, cpus_per_trial: 2``): the trials back to
   back in one warm process, wall clock;
3. *two trials at a time on 1 thread each* (``concurrency: 2, cpus_per_trial: 1``): two warm processes split the
   same trials, wall clock from a common start.

    PYTHONPATH=. .venv/bin/python experiments/studies/shared_trial_cost.py --trials 8

Writes ``experiments/reports/shared_trial_cost_minilm.{json,md}``; ``--supernet DIR`` keeps (and reuses) the trained
supernet there. ``--steps-arm N`` measures instead what fewer architecture steps buy and cost: the same trials at
the benchmark's 20 steps and at N steps with the architecture learning rate scaled by 20/N, paired (time per trial,
accuracy before and after fine-tuning, Kendall τ), written to ``shared_trial_steps_minilm.{json,md}``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments.studies.report_files import md_table, run_record, write_report  # noqa: E402
from experiments.studies.shared_finetune import EXPERIMENT, ensure_supernet, sample_params  # noqa: E402
from experiments.studies.shared_supernet import med_iqr  # noqa: E402

REPORTS = ROOT / "experiments" / "reports"
BENCH_CONFIG = ROOT / "experiments" / "studies" / "benchmark_minilm_cpu" / "config.yaml"


def experiment():
    """``experiments/minilm_shared.yaml`` with the MiniLM benchmark's ``dnas_shared`` sample ranges."""
    import yaml

    from nas.search.experiment import Experiment

    doc = yaml.safe_load(EXPERIMENT.read_text())
    bench = yaml.safe_load(BENCH_CONFIG.read_text())["dnas_shared"]
    doc["sample"] = bench["sample"]
    return Experiment.from_dict(doc, source=str(EXPERIMENT), base=EXPERIMENT.parent)


def run_one(config_dict: dict, folder: str) -> dict:
    """One trial: its wall seconds and phase seconds."""
    from trainers.config import SearchConfig
    from trainers.pipeline import search_once

    t = time.perf_counter()
    r = search_once(SearchConfig.from_dict(config_dict), shared_dir=folder, progress=None, device="cpu")
    return {"wall_s": time.perf_counter() - t, "phase_seconds": dict(r.phase_seconds), "arch": r.arch_summary,
            "quality_before": r.quality_before, "quality_after": r.quality_after, "latency_ms": r.latency_ms,
            "target_ms": r.target_ms}


def _worker(configs: list[dict], folder: str, barrier, queue) -> None:
    """A 1-thread trial process: one untimed warm-up trial, then its share of the trials from the common start."""
    import torch

    torch.set_num_threads(1)
    run_one(configs[0], folder)
    barrier.wait()
    for c in configs:
        queue.put(run_one(c, folder))
    queue.put(None)


def two_at_once(configs: list[dict], folder: str) -> dict:
    """Two 1-thread processes split ``configs`` (even / odd); wall clock from their common start to the last trial."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(configs[k::2], folder, barrier, queue)) for k in range(2)]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    rows, done = [], 0
    while done < len(procs):
        r = queue.get()
        if r is None:
            done += 1
        else:
            rows.append(r)
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    return {"wall_s": wall, "trials": rows}


def summary(rows: list[dict]) -> dict:
    phases = sorted({k for r in rows for k in r["phase_seconds"]})
    return {"trial_s": [r["wall_s"] for r in rows],
            "phase_median_s": {k: statistics.median(r["phase_seconds"].get(k, 0.0) for r in rows) for k in phases}}


def markdown(rep: dict) -> str:
    cold, kept = rep["summary"]["cold"], rep["summary"]["kept"]
    one, two = rep["one_at_a_time"], rep["two_at_once"]
    n = rep["trials"]
    per_h = {k: n / v["wall_s"] * 3600 for k, v in (("one", one), ("two", two))}
    saved = [c - k for c, k in zip(cold["trial_s"], kept["trial_s"])]
    lines = [
        "# What a shared-supernet trial costs (all-MiniLM-L6-v2)", "",
        f"Command: `{rep['command']}`  ", f"Host: {rep['host']}, written {rep['date']}; loadavg before "
        f"{rep['loadavg_before']} → after {rep['loadavg_after']}.", "",
        f"One shared supernet ({rep['supernet']['steps']} sandwich steps, sha256 `{rep['supernet']['sha256'][:12]}`"
        + (f", trained in {rep['supernet']['train_s']:.0f} s" if rep["supernet"].get("train_s") else ", reused")
        + f"); {n} trials with parameters sampled as the MiniLM benchmark's `dnas_shared` arm samples them (target "
        "stratified, 15-150 fine-tuning steps, 20 architecture steps on the frozen weights, two evaluations on 2000 "
        "test glosses). A trial here is `search_once`; the service adds saving and uploading the subnet and Ray's "
        "bookkeeping (about 0.3 s, `search_overhead.md`).", "",
        "## Keeping the setup (2 threads, paired: each trial cold, then again keeping the first run's setup)", "",
        *md_table(["", "trial s, median (IQR)", *cold["phase_median_s"]],
                  [[k, med_iqr(v["trial_s"]), *(f"{x:.2f}" for x in v["phase_median_s"].values())]
                   for k, v in (("cold (nothing kept)", cold), ("kept", kept))]),
        "", f"Saved per trial: median {statistics.median(saved):.2f} s of a median cold trial of "
        f"{statistics.median(cold['trial_s']):.2f} s ({statistics.median(saved) / statistics.median(cold['trial_s']):.0%}).",
        "", "## One trial at a time on 2 threads vs two at a time on 1 thread each (setup kept)", "",
        *md_table(["arm", "wall s", "trials per hour", "trial s, median (IQR)"],
                  [["1 × 2 threads (benchmark: concurrency 1, cpus_per_trial 2)", f"{one['wall_s']:.1f}",
                    f"{per_h['one']:.0f}", med_iqr([r["wall_s"] for r in one["trials"]])],
                   ["2 × 1 thread (concurrency 2, cpus_per_trial 1)", f"{two['wall_s']:.1f}", f"{per_h['two']:.0f}",
                    med_iqr([r["wall_s"] for r in two["trials"]])]]),
        "", f"Throughput two at once / one at a time: **{per_h['two'] / per_h['one']:.2f}×**; keeping the setup, "
        f"per trial (cold / kept medians): **{statistics.median(cold['trial_s']) / statistics.median(kept['trial_s']):.2f}×**.",
        "", "## Trials", "",
        *md_table(["trial", "target fraction", "fine-tuning steps", "arch", "cold s", "kept s", "accuracy"],
                  [[i, f"{p['target_fraction']:.3f}", p.get("finetune_steps"), f"`{c['arch']}`", f"{c['wall_s']:.2f}",
                    f"{k['wall_s']:.2f}", f"{k['quality_after']:.2%}"]
                   for i, (p, c, k) in enumerate(zip(rep["params"], rep["rows"]["cold"], rep["rows"]["kept"]))]), "",
    ]
    return "\n".join(lines)


def run_steps(configs: list[dict], folder: str, steps: int) -> dict:
    """Each trial at its own ``steps`` and at ``steps`` architecture steps (arch_lr scaled to move as far), paired."""
    rows: dict[str, list[dict]] = {"base": [], "fewer": []}
    for i, c in enumerate(configs):
        fewer = {**c, "steps": steps, "arch_lr": c["arch_lr"] * c["steps"] / steps}
        for k, cfg in (("base", c), ("fewer", fewer)):
            r = run_one(cfg, folder)
            rows[k].append(r)
        print(f"trial {i + 1}/{len(configs)}: {rows['base'][-1]['quality_after']:.4f} "
              f"({rows['base'][-1]['wall_s']:.1f} s) vs {rows['fewer'][-1]['quality_after']:.4f} "
              f"({rows['fewer'][-1]['wall_s']:.1f} s)", flush=True)
    return rows


def markdown_steps(rep: dict) -> str:
    from nas.search.proxy import kendall_tau_b

    base, fewer = rep["rows"]["base"], rep["rows"]["fewer"]
    n0, n1 = rep["base_steps"], rep["steps"]

    def line(name, rows):
        return [name, med_iqr([r["wall_s"] for r in rows]),
                f"{statistics.median(r['phase_seconds']['search'] for r in rows):.2f}",
                f"{statistics.mean(r['quality_before'] for r in rows):.2%}",
                f"{statistics.mean(r['quality_after'] for r in rows):.2%}",
                f"{kendall_tau_b([r['quality_before'] for r in rows], [r['quality_after'] for r in rows]):.3f}",
                f"{sum(r['latency_ms'] <= r['target_ms'] for r in rows)}/{len(rows)}"]

    diff = [100 * (b["quality_after"] - a["quality_after"]) for a, b in zip(base, fewer)]
    return "\n".join([
        "# Fewer architecture steps in a shared-supernet trial (all-MiniLM-L6-v2)", "",
        f"Command: `{rep['command']}`  ", f"Host: {rep['host']}, written {rep['date']}; loadavg before "
        f"{rep['loadavg_before']} → after {rep['loadavg_after']}.", "",
        f"The same {len(base)} trials (parameters as the MiniLM benchmark's `dnas_shared` arm samples them; shared "
        f"supernet sha256 `{rep['supernet']['sha256'][:12]}`) at {n0} architecture steps and at {n1} with the "
        f"architecture learning rate × {n0 / n1:g}, setup kept, 2 threads.", "",
        *md_table(["steps", "trial s, median (IQR)", "search s (median)", "mean accuracy inherited",
                   "mean accuracy fine-tuned", "Kendall τ", "predicted ≤ T"],
                  [line(str(n0), base), line(str(n1), fewer)]), "",
        f"Fine-tuned accuracy, {n1} − {n0} steps, paired: mean {statistics.mean(diff):+.2f} pt, "
        f"min {min(diff):+.2f}, max {max(diff):+.2f}.", "",
        *md_table(["trial", "target fraction", "fine-tuning steps", f"arch ({n0})", f"arch ({n1})",
                   f"accuracy ({n0} / {n1})", f"latency ms ({n0} / {n1}, T)"],
                  [[i, f"{p['target_fraction']:.3f}", p.get("finetune_steps"), f"`{a['arch']}`", f"`{b['arch']}`",
                    f"{a['quality_after']:.2%} / {b['quality_after']:.2%}",
                    f"{a['latency_ms']:.2f} / {b['latency_ms']:.2f} ({a['target_ms']:.2f})"]
                   for i, (p, a, b) in enumerate(zip(rep["params"], base, fewer))]), ""])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--supernet", default="/tmp/shared_trial_cost/supernet", help="the supernet's folder (reused)")
    ap.add_argument("--steps-arm", type=int, default=None, help="compare the trials at this many architecture steps")
    ap.add_argument("--out", default=None, help="report stem (default shared_trial_cost_minilm, "
                                                "shared_trial_steps_minilm with --steps-arm)")
    args = ap.parse_args()
    out = args.out or str(REPORTS / ("shared_trial_steps_minilm" if args.steps_arm else "shared_trial_cost_minilm"))

    import torch

    from trainers import warm

    torch.set_num_threads(2)
    exp = experiment()
    load0 = [round(x, 2) for x in os.getloadavg()]
    folder = Path(args.supernet)
    meta = ensure_supernet(exp, folder)
    params = [sample_params(exp, i, args.trials) for i in range(args.trials)]
    configs = [exp.search_config(p).replace(shared_supernet=meta["sha256"]).to_dict() for p in params]
    record = {"trials": args.trials, "supernet": {k: meta.get(k) for k in ("sha256", "steps", "train_s")},
              "params": params}
    if args.steps_arm:
        rows = run_steps(configs, str(folder), args.steps_arm)
        rep = {**run_record("shared_trial_cost.py", load0), **record, "base_steps": configs[0]["steps"],
               "steps": args.steps_arm, "rows": rows}
        write_report(out, rep, markdown_steps(rep))
        print(markdown_steps(rep))
        return 0
    rows: dict[str, list[dict]] = {"cold": [], "kept": []}
    for i, c in enumerate(configs):
        warm.clear()
        rows["cold"].append(run_one(c, str(folder)))
        rows["kept"].append(run_one(c, str(folder)))
        print(f"trial {i + 1}/{args.trials}: {rows['kept'][-1]['arch']}, cold {rows['cold'][-1]['wall_s']:.2f} s, "
              f"kept {rows['kept'][-1]['wall_s']:.2f} s", flush=True)
    two = two_at_once(configs, str(folder))
    print(f"two at once: {len(configs)} trials in {two['wall_s']:.1f} s", flush=True)
    t0 = time.perf_counter()
    one = {"trials": [run_one(c, str(folder)) for c in configs]}
    one["wall_s"] = time.perf_counter() - t0
    print(f"one at a time: {len(configs)} trials in {one['wall_s']:.1f} s", flush=True)
    rep = {**run_record("shared_trial_cost.py", load0), **record,
           "summary": {k: summary(v) for k, v in rows.items()}, "rows": rows, "one_at_a_time": one, "two_at_once": two}
    write_report(out, rep, markdown(rep))
    print(markdown(rep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

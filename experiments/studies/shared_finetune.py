"""Study: how a shared-supernet trial should fine-tune — does the proxy rank, and where does a trial's time go?

Trials started from one shared supernet (``experiments/minilm_shared.yaml``: 300 sandwich steps, 20
architecture steps on the frozen weights) are paired across fine-tuning recipes: the same sampled
parameters (target, fine-tuning steps, λ0, τ0, architecture learning rate, seed) give the same derived
architecture, which is then fine-tuned once per recipe. Per recipe: Kendall's τ between the
inherited-weights accuracy and the fine-tuned one (:mod:`nas.search.proxy`), the mean change and the
share of trials that fine-tuning made worse, and each phase's median seconds (what bounds trials per hour).

    PYTHONPATH=. .venv/bin/python experiments/studies/shared_finetune.py --trials 12 --schedules constant cosine

Writes ``experiments/reports/shared_finetune_minilm.{json,md}``; ``--supernet DIR`` keeps (and reuses) the
trained supernet there; ``--shrink-steps N`` trains it with progressive shrinking (compare two runs, each
with its own ``--supernet`` folder and ``--out``, at ``--schedules cosine``).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments.studies.report_files import md_table, run_record, write_report  # noqa: E402
from experiments.studies.shared_supernet import med_iqr  # noqa: E402

REPORTS = ROOT / "experiments" / "reports"
EXPERIMENT = ROOT / "experiments" / "minilm_shared.yaml"


def sample_params(experiment, i: int, n: int) -> dict:
    """Trial ``i`` of ``n``'s parameters: the target stratified over its range, the rest drawn with seed ``i``."""
    rng = random.Random(i)
    out = {}
    for name, p in experiment.sample.items():
        if p.kind == "choices":
            out[name] = rng.choice(p.choices)
            continue
        u = (i + 0.5) / n if name == "target_fraction" else rng.random()
        if p.log:
            v = math.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
        else:
            v = p.low + u * (p.high - p.low)
        out[name] = int(round(v)) if p.kind == "int" else float(v)
    return out


def ensure_supernet(experiment, folder: Path, shrink_steps: int | None = None) -> dict:
    """The shared supernet's ``supernet.json`` in ``folder``, trained there first when absent (and its time);
    ``shrink_steps`` overrides the experiment's progressive shrinking."""
    from nas.search.shared import shared_config
    from trainers.shared import read_shared_meta

    if (folder / "supernet.json").exists():
        return {**read_shared_meta(folder), "train_s": None}
    t0 = time.perf_counter()
    settings = dict(experiment.supernet)
    if shrink_steps is not None:
        settings["shrink_steps"] = shrink_steps
    meta = experiment.plugin.train_shared(shared_config(experiment), settings, str(folder), device="cpu",
                                          checkpoint_dir=str(folder.with_name(folder.name + ".ckpt")))
    return {**meta, "train_s": time.perf_counter() - t0}


def summarize(rows: list[dict]) -> dict:
    from nas.search.proxy import kendall_tau_b

    before, after = [r["quality_before"] for r in rows], [r["quality_after"] for r in rows]
    phases = sorted({k for r in rows for k in r["phase_seconds"]})
    return {"trials": len(rows), "kendall_tau": kendall_tau_b(before, after),
            "mean_change_points": 100 * statistics.mean(a - b for a, b in zip(after, before)),
            "worse_share": sum(a < b for a, b in zip(after, before)) / len(rows),
            "best_after": max(after), "mean_after": statistics.mean(after),
            "phase_median_s": {k: statistics.median(r["phase_seconds"].get(k, 0.0) for r in rows) for k in phases},
            "trial_s": [sum(r["phase_seconds"].values()) for r in rows]}


def markdown(rep: dict) -> str:
    s = rep["summary"]
    lines = [
        "# Fine-tuning a shared-supernet trial: does the proxy rank? (all-MiniLM-L6-v2)", "",
        f"Command: `{rep['command']}`  ", f"Host: {rep['host']}, written {rep['date']}; loadavg before "
        f"{rep['loadavg_before']} → after {rep['loadavg_after']}.", "",
        f"One shared supernet ({rep['supernet']['steps']} sandwich steps"
        + (f", progressive shrinking over the first {rep['supernet']['shrink_steps']}"
           if rep["supernet"].get("shrink_steps") else "") + f", sha256 `{rep['supernet']['sha256'][:12]}`"
        + (f", trained in {rep['supernet']['train_s']:.0f} s" if rep["supernet"].get("train_s") else ", reused")
        + f"); {rep['trials']} trials with parameters sampled as `experiments/minilm_shared.yaml` samples them "
        "(target stratified), each derived architecture fine-tuned once per recipe (paired: the same architecture, "
        "steps and seed). Accuracy: 2000 held-out WordNet noun glosses, 26 classes.", "",
        *md_table(["recipe", "Kendall τ (inherited vs fine-tuned)", "mean change, points", "made worse",
                   "best / mean accuracy after", "trial s, median (IQR)"],
                  [[k, f"{v['kendall_tau']:.3f}", f"{v['mean_change_points']:+.2f}", f"{v['worse_share']:.0%}",
                    f"{v['best_after']:.2%} / {v['mean_after']:.2%}", med_iqr(v["trial_s"])] for k, v in s.items()]),
        "", "Median seconds per phase (what bounds trials per hour):", "",
        *md_table(["recipe", *next(iter(s.values()))["phase_median_s"]],
                  [[k, *(f"{x:.1f}" for x in v["phase_median_s"].values())] for k, v in s.items()]), "",
        "## Trials", "",
        *md_table(["trial", "target fraction", "fine-tuning steps", "arch", "latency ms", "inherited",
                   *(f"after ({k})" for k in s)],
                  [[i, f"{p['params']['target_fraction']:.3f}", p["params"].get("finetune_steps"), f"`{p['arch']}`",
                    f"{p['latency_ms']:.2f}", f"{p['quality_before']:.2%}",
                    *(f"{p['after'][k]:.2%}" for k in s)] for i, p in enumerate(rep["paired"])]), "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--schedules", nargs="+", default=["constant", "cosine"])
    ap.add_argument("--supernet", default="/tmp/shared_finetune/supernet", help="the supernet's folder (reused)")
    ap.add_argument("--shrink-steps", type=int, default=None,
                    help="train the supernet with progressive shrinking over these first steps (supernet.shrink_steps)")
    ap.add_argument("--out", default=str(REPORTS / "shared_finetune_minilm"))
    args = ap.parse_args()

    import torch

    from nas.search.experiment import Experiment
    from trainers.pipeline import search_once

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    exp = Experiment.from_yaml(EXPERIMENT)
    load0 = [round(x, 2) for x in os.getloadavg()]
    folder = Path(args.supernet)
    meta = ensure_supernet(exp, folder, args.shrink_steps)
    rows: dict[str, list[dict]] = {k: [] for k in args.schedules}
    paired = []
    for i in range(args.trials):
        params = sample_params(exp, i, args.trials)
        config = exp.search_config(params).replace(shared_supernet=meta["sha256"])
        after = {}
        for sched in args.schedules:
            r = search_once(config.replace(finetune_schedule=sched), shared_dir=folder, progress=None, device="cpu")
            rows[sched].append({"quality_before": r.quality_before, "quality_after": r.quality_after,
                                "phase_seconds": r.phase_seconds})
            after[sched] = r.quality_after
        paired.append({"params": params, "arch": r.arch_summary, "latency_ms": r.latency_ms,
                       "quality_before": r.quality_before, "after": after})
        print(f"trial {i + 1}/{args.trials}: {r.arch_summary} {r.latency_ms:.2f} ms, ft {params.get('finetune_steps')} "
              f"steps, {r.quality_before:.4f} → " + ", ".join(f"{k} {v:.4f}" for k, v in after.items()), flush=True)
    rep = {**run_record("shared_finetune.py", load0), "trials": args.trials,
           "supernet": {**{k: meta.get(k) for k in ("sha256", "steps", "train_s")},
                        "shrink_steps": (meta.get("sandwich") or {}).get("shrink_steps", 0)},
           "summary": {k: summarize(v) for k, v in rows.items()}, "paired": paired, "rows": rows}
    write_report(args.out, rep, markdown(rep))
    print(markdown(rep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

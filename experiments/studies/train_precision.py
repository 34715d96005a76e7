"""Study: training steps in fp32 against bf16 autocast on this CPU, paired (MiniLM shared-supernet trials).

``trainers.devices.train_autocast`` runs training steps (the supernet's sandwich steps, a trial's architecture
steps and its fine-tuning) under bf16 autocast where the device computes bf16 natively; evaluation stays fp32.
This measures what that buys and costs on the host it runs on, both precisions forced through the ``autocast``
config field (``none`` / ``bf16``; on a CPU without AMX ``bf16`` trains in fp32 and the arms are the same):

1. the shared supernet's sandwich steps: ``--supernet-steps`` steps in each precision, alternating, twice;
2. ``--trials`` trials sampled as the MiniLM benchmark's ``dnas_shared`` arm samples them, each run in both
   precisions from one shared supernet: wall, search and fine-tuning seconds, accuracy before and after
   fine-tuning, the derived architecture.

    PYTHONPATH=. .venv/bin/python experiments/studies/train_precision.py --trials 6

Writes ``experiments/reports/train_precision_<fingerprint>.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments.studies.report_files import md_table, run_record, write_report  # noqa: E402
from experiments.studies.shared_finetune import sample_params  # noqa: E402
from experiments.studies.shared_supernet import med_iqr  # noqa: E402
from experiments.studies.shared_trial_cost import experiment  # noqa: E402

REPORTS = ROOT / "experiments" / "reports"
ARMS = ("none", "bf16")  # the autocast field's values: fp32, bf16 where native
TRIAL = {"freeze_weights": True, "warmup_steps": 0, "steps": 10}  # the benchmark's dnas_shared trainer overrides


def supernet_seconds(exp, steps: int, work: Path) -> dict[str, list[float]]:
    """Seconds to train a ``steps``-step shared supernet in each arm, alternating, twice (setup included)."""
    from nas.search.shared import shared_config

    out: dict[str, list[float]] = {a: [] for a in ARMS}
    for rep in range(2):
        for a in ARMS:
            t = time.perf_counter()
            exp.plugin.train_shared(shared_config(exp), {**exp.supernet, "steps": steps, "autocast": a},
                                    str(work / f"supernet-{a}-{rep}"), device="cpu")
            out[a].append(time.perf_counter() - t)
    return out


def paired_trials(exp, folder: Path, n: int) -> list[dict]:
    """Each of ``n`` sampled trials run from the supernet in ``folder`` in both arms."""
    from trainers.pipeline import search_once
    from trainers.shared import read_shared_meta

    sha = read_shared_meta(folder)["sha256"]
    rows = []
    for i in range(n):
        cfg = exp.search_config(sample_params(exp, i, n)).replace(shared_supernet=sha, **TRIAL)
        row = {"finetune_steps": cfg.finetune_steps, "target_fraction": cfg.target_fraction}
        for a in ARMS:
            t = time.perf_counter()
            r = search_once(cfg.replace(autocast=a), shared_dir=str(folder), progress=None, device="cpu")
            row[a] = {"wall_s": time.perf_counter() - t, "search_s": r.phase_seconds["search"],
                      "finetune_s": r.phase_seconds["finetune"], "quality_before": r.quality_before,
                      "quality_after": r.quality_after, "arch": r.arch_summary}
        print(f"trial {i + 1}/{n}: {row['none']['arch']}: fp32 {row['none']['wall_s']:.1f} s, bf16 "
              f"{row['bf16']['wall_s']:.1f} s, accuracy {row['none']['quality_after']:.4f} / "
              f"{row['bf16']['quality_after']:.4f}", flush=True)
        rows.append(row)
    return rows


def summarize(rep: dict) -> dict:
    rows, sn = rep["trials"], rep["supernet_s"]
    ratio = {k: statistics.median(r["none"][k] / r["bf16"][k] for r in rows) for k in ("wall_s", "search_s", "finetune_s")}
    change = [100 * (r["bf16"]["quality_after"] - r["none"]["quality_after"]) for r in rows]
    return {"speedup_median": ratio, "supernet_speedup": statistics.median(sn["none"]) / statistics.median(sn["bf16"]),
            "accuracy_change_points": change, "mean_change_points": statistics.mean(change),
            "max_abs_change_points": max(abs(c) for c in change),
            "same_arch": sum(r["none"]["arch"] == r["bf16"]["arch"] for r in rows)}


def markdown(rep: dict) -> str:
    s, rows = rep["summary"], rep["trials"]
    lines = ["# Training steps in fp32 against bf16 autocast on this CPU (all-MiniLM-L6-v2)", "",
             f"Command: `{rep['command']}`  ", f"Host: {rep['host']}; CPU trains in bf16 with `autocast: bf16`: "
             f"**{rep['bf16_native']}**; written {rep['date']}; loadavg before {rep['loadavg_before']} → after "
             f"{rep['loadavg_after']}.", "",
             "Evaluation is fp32 in both arms; the trials start from one shared supernet "
             f"({rep['supernet_steps_trials']} sandwich steps) with the benchmark's `dnas_shared` settings "
             "(10 architecture steps on frozen weights, fine-tuning budget sampled in [15, 150]).", "",
             "| quantity | fp32 | bf16 autocast | fp32 / bf16 |", "| --- | --- | --- | --- |",
             f"| shared supernet, {rep['supernet_steps']} sandwich steps (s, median of 2) | "
             f"{statistics.median(rep['supernet_s']['none']):.1f} | {statistics.median(rep['supernet_s']['bf16']):.1f} | "
             f"{s['supernet_speedup']:.2f}× |"]
    for k, label in (("wall_s", "trial wall"), ("search_s", "architecture steps"), ("finetune_s", "fine-tuning")):
        lines.append(f"| {label} (s, median (IQR) over {len(rows)} trials) | {med_iqr([r['none'][k] for r in rows])} | "
                     f"{med_iqr([r['bf16'][k] for r in rows])} | {s['speedup_median'][k]:.2f}× (paired median) |")
    lines += ["", f"Fine-tuned accuracy, bf16 − fp32: mean {s['mean_change_points']:+.2f} pt, largest "
              f"|change| {s['max_abs_change_points']:.2f} pt; the same derived architecture in {s['same_arch']} of "
              f"{len(rows)} trials.", ""]
    lines += md_table(["trial", "fine-tuning steps", "architecture (fp32)", "fp32 s", "bf16 s", "accuracy fp32",
                       "accuracy bf16"],
                      ([i, r["finetune_steps"], f"`{r['none']['arch']}`", f"{r['none']['wall_s']:.2f}",
                        f"{r['bf16']['wall_s']:.2f}", f"{100 * r['none']['quality_after']:.2f}%",
                        f"{100 * r['bf16']['quality_after']:.2f}%"] for i, r in enumerate(rows)))
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--supernet-steps", type=int, default=20, help="sandwich steps timed per arm")
    ap.add_argument("--trial-supernet-steps", type=int, default=30, help="steps of the supernet the trials start from")
    ap.add_argument("--work", default="/tmp/train_precision")
    ap.add_argument("--out", default=None, help="report stem (default train_precision_<fingerprint>)")
    args = ap.parse_args()

    import torch

    from nas.latency.device import device_info
    from nas.search.shared import shared_config
    from trainers.devices import bf16_native

    torch.set_num_threads(2)
    load0 = [round(x, 2) for x in os.getloadavg()]
    work = Path(args.work)
    exp = experiment()
    sn = supernet_seconds(exp, args.supernet_steps, work)
    folder = work / "trial-supernet"
    if not (folder / "supernet.json").exists():
        exp.plugin.train_shared(shared_config(exp), {**exp.supernet, "steps": args.trial_supernet_steps},
                                str(folder), device="cpu")
    rows = paired_trials(exp, folder, args.trials)
    rep = {**run_record("train_precision.py", load0), "bf16_native": bf16_native("cpu"),
           "supernet_steps": args.supernet_steps, "supernet_steps_trials": args.trial_supernet_steps,
           "supernet_s": sn, "trials": rows}
    rep["summary"] = summarize(rep)
    out = args.out or str(REPORTS / f"train_precision_{device_info()['fingerprint']}")
    write_report(out, rep, markdown(rep))
    print(markdown(rep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

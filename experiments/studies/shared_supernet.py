"""Study: one shared supernet per study against a supernet per trial, side by side on all-MiniLM-L6-v2.

Two searches run one after the other in one process, on the same table, data, teacher and
fine-tuning learning rate, with the same CPUs:

* ``per-trial`` — today's DNAS trial (the MiniLM benchmark's DNAS arm): every trial trains its own
  supernet from the pretrained weights (10 warm-up + 20 search steps, a weight and an architecture
  step each) and fine-tunes its subnet for 300 steps;
* ``shared`` — ``experiments/minilm_shared.yaml``: the supernet is trained once (sandwich rule,
  ``--supernet-steps``), then every trial runs 20 architecture steps on the frozen shared weights and
  fine-tunes for a sampled 30–300 steps.

Reported per arm: wall clock (the shared supernet's training included), trials per hour, the
median trial compute time, best quality, and Kendall's τ between each trial's inherited-weights
quality (before fine-tuning) and its fine-tuned quality (:mod:`nas.search.proxy`).

    PYTHONPATH=. .venv/bin/python experiments/studies/shared_supernet.py --shared-trials 12 --per-trial-trials 4

Writes ``experiments/reports/shared_supernet_minilm.{json,md}``. ``--study NAME --storage URL`` reports a
study ``nas search`` already ran with a shared supernet instead (any model; e.g. SmolLM2's
``experiments/smollm2_shared.yaml``), its wall clock the span of its trials plus the supernet's training:

    nas search experiments/smollm2_shared.yaml --trials 10 --storage sqlite:////tmp/s2/study.db
    PYTHONPATH=. .venv/bin/python experiments/studies/shared_supernet.py --study smollm2_shared \
        --storage sqlite:////tmp/s2/study.db --out experiments/reports/shared_supernet_smollm2
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments.studies.report_files import md_table, write_report  # noqa: E402

REPORTS = ROOT / "experiments" / "reports"


def experiments(supernet_steps: int, cpus: int):
    import yaml

    from nas.search.experiment import Experiment

    shared = yaml.safe_load((ROOT / "experiments" / "minilm_shared.yaml").read_text())
    shared["supernet"]["steps"] = supernet_steps
    shared["run"]["cpus_per_trial"] = cpus
    per_trial = {k: v for k, v in shared.items() if k != "supernet"}
    per_trial["name"] = "per_trial"
    per_trial["trainer"] = {**{k: v for k, v in shared["trainer"].items() if k != "freeze_weights"},
                            "warmup_steps": 10, "finetune_steps": 300}
    per_trial["sample"] = {**{k: v for k, v in shared["sample"].items() if k != "finetune_steps"},
                           "weight_lr": {"float": [1.0e-5, 1.0e-4], "log": True}}
    shared["name"] = "shared"
    return (Experiment.from_dict(per_trial, source="per_trial", base=ROOT / "experiments"),
            Experiment.from_dict(shared, source="shared", base=ROOT / "experiments"))


def arm(exp, trials: int, storage: str, work: Path, cpus: int) -> dict:
    from nas.search import api

    t0 = time.perf_counter()
    api.run_search(exp, storage=storage, study=exp.name, trials=trials, runs_dir=work / "runs",
                   artifacts=str(work / "artifacts"), num_cpus=cpus)
    return collect(exp.name, storage, wall=time.perf_counter() - t0)


def collect(study_name: str, storage: str, *, wall: float | None = None) -> dict:
    """One arm's figures read off its study; ``wall`` None: the span of its trials plus the supernet's training.

    Raises:
        StorageError: no such storage (never created here) or no such study in it.
    """
    from nas.search import attrs
    from nas.search.storage import get_storage
    from nas.search.study import load_study
    from nas.search.proxy import proxy_agreement
    from nas.search.shared import STUDY_SHARED

    study = load_study(get_storage(storage, create=False), study_name)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    rows = []
    for t in done:
        m, c = t.user_attrs[attrs.METRICS], t.user_attrs[attrs.CONFIG]
        rows.append({"trial": t.number, "quality_before": m["quality_before"], "quality_after": m["quality_after"],
                     "latency_ms": m["latency_ms"], "target_ms": m["target_ms"], "size_mb": m["size_mb"],
                     "latencies": {k: m[k] for k in ("ttft_ms", "tpot_ms") if k in m},
                     "finetune_steps": c["finetune_steps"], "compute_s": t.user_attrs.get("compute_s"),
                     "teacher_quality": m.get("teacher_quality"), "arch": m["arch_summary"]})
    shared = next(iter((study.user_attrs.get(STUDY_SHARED) or {}).values()), None)
    if wall is None:
        wall = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
        wall += shared["train_s"] if shared else 0.0
    tau = proxy_agreement([(r["quality_before"], r["quality_after"]) for r in rows])
    return {"study": study_name, "trials": len(rows), "wall_s": wall, "trials_per_hour": len(rows) / wall * 3600,
            "supernet_train_s": shared["train_s"] if shared else None,
            "supernet_steps": shared["steps"] if shared else None,
            "median_trial_compute_s": statistics.median(r["compute_s"] for r in rows if r["compute_s"] is not None),
            "best_quality": max(r["quality_after"] for r in rows), "kendall_tau": tau["kendall_tau"], "rows": rows}


def med_iqr(xs: list[float]) -> str:
    """``median (IQR)`` of ``xs``."""
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return f"{statistics.median(xs):.1f} ({q[2] - q[0]:.1f})"


def markdown(rep: dict) -> str:
    if "per_trial" not in rep["arms"]:
        return markdown_study(rep)
    a, b = rep["arms"]["per_trial"], rep["arms"]["shared"]
    ratio = b["trials_per_hour"] / a["trials_per_hour"]
    tau = b["kendall_tau"]
    lines = [
        "# Shared supernet per study vs a supernet per trial (all-MiniLM-L6-v2)", "",
        f"Command: `{rep['command']}`  ", f"Host: {rep['host']}, {rep['cpus']} CPU(s) per trial, written {rep['date']}; "
        f"loadavg before {rep['loadavg_before']} → after {rep['loadavg_after']}.", "",
        "Both arms in one run, one after the other, same table, data (8000 train / 2000 test WordNet noun glosses), "
        "cached teacher and fine-tuning learning rate. *per-trial*: today's DNAS trial (10 warm-up + 20 search "
        "steps on its own supernet, 300 fine-tuning steps). *shared*: `experiments/minilm_shared.yaml`, the "
        f"supernet trained once ({b['supernet_steps']} sandwich steps), then 20 architecture steps per trial on the "
        "frozen shared weights and 30–300 sampled fine-tuning steps. Wall clock includes Ray start-up and, for "
        "*shared*, the supernet's training.", "",
        *md_table(["arm", "trials", "wall s", "supernet training s", "trials per hour", "trial compute s, median (IQR)",
                   "best accuracy", "Kendall τ (before vs after fine-tuning)"],
                  [[k, r["trials"], f"{r['wall_s']:.0f}", "–" if r["supernet_train_s"] is None else
                    f"{r['supernet_train_s']:.0f}", f"{r['trials_per_hour']:.1f}",
                    med_iqr([x["compute_s"] for x in r["rows"] if x["compute_s"] is not None]),
                    f"{r['best_quality']:.2%}", f"{r['kendall_tau']:.3f}"] for k, r in rep["arms"].items()]), "",
        "| target (issue 31) | measured | verdict |", "| --- | --- | --- |",
        f"| DNAS trials per hour ≥ 3× today's | {ratio:.2f}× | {'met' if ratio >= 3 else 'missed'} |",
        f"| Kendall τ ≥ 0.6 on a study with ≥ 10 trials | {tau:.3f} over {b['trials']} trials | "
        + ("met" if b["trials"] >= 10 and tau >= 0.6 else "missed" if b["trials"] >= 10 else "too few trials") + " |",
        "| region hypervolume ≥ 1.2× NSGA-II, ≥ 1.3× random at equal wall clock | not measured here (the MiniLM "
        "benchmark with a shared-supernet arm) | open |", "",
    ]
    for k, r in rep["arms"].items():
        lines += [f"## {k}", "", *md_table(
            ["trial", "accuracy before → after", "latency ms (T)", "MB", "fine-tuning steps", "compute s", "arch"],
            [[x["trial"], f"{x['quality_before']:.2%} → {x['quality_after']:.2%}",
              f"{x['latency_ms']:.2f} ({x['target_ms']:.2f})", f"{x['size_mb']:.1f}", x["finetune_steps"],
              f"{x['compute_s']:.0f}" if x["compute_s"] is not None else "–", f"`{x['arch']}`"] for x in r["rows"]]),
            ""]
    return "\n".join(lines)


def markdown_study(rep: dict) -> str:
    """The report of one existing shared-supernet study (``--study``)."""
    (name, r), = rep["arms"].items()
    tau, n = r["kendall_tau"], r["trials"]
    phases = [k for k in ("ttft_ms", "tpot_ms") if any(k in x["latencies"] for x in r["rows"])]
    teacher = next((x["teacher_quality"] for x in r["rows"] if x.get("teacher_quality") is not None), None)
    lines = [
        f"# Shared supernet study `{name}`", "",
        f"Command: `{rep['command']}`  ", f"Study run by: `{rep.get('search_command', 'nas search')}`  ",
        f"Host: {rep['host']}, written {rep['date']}.", "",
        f"The supernet was trained once ({r['supernet_steps']} sandwich steps in {r['supernet_train_s']:.0f} s); every "
        "trial started from it, ran architecture steps on the frozen weights and fine-tuned for its sampled number of "
        "steps. Wall clock: the span of the trials plus the supernet's training."
        + (f" The full model's quality on the same items: {teacher:.2%}." if teacher is not None else ""), "",
        *md_table(["trials", "wall s", "supernet training s", "trials per hour", "trial compute s, median (IQR)",
                   "best quality", "Kendall τ (before vs after fine-tuning)"],
                  [[n, f"{r['wall_s']:.0f}", f"{r['supernet_train_s']:.0f}", f"{r['trials_per_hour']:.1f}",
                    med_iqr([x["compute_s"] for x in r["rows"] if x["compute_s"] is not None]),
                    f"{r['best_quality']:.2%}", f"{tau:.3f}"]]), "",
        f"Kendall τ ≥ 0.6 on a study with ≥ 10 trials (issue 31): {tau:.3f} over {n} trials — "
        + ("met" if n >= 10 and tau >= 0.6 else "missed" if n >= 10 else "too few trials") + ".", "",
        *md_table(["trial", "quality before → after", *phases,
                   "MB", "fine-tuning steps", "compute s", "arch"],
                  [[x["trial"], f"{x['quality_before']:.2%} → {x['quality_after']:.2%}",
                    *(f"{x['latencies'][p]:.2f}" for p in phases), f"{x['size_mb']:.1f}", x["finetune_steps"],
                    f"{x['compute_s']:.0f}" if x["compute_s"] is not None else "–", f"`{x['arch']}`"]
                   for x in r["rows"]]), "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared-trials", type=int, default=12)
    ap.add_argument("--per-trial-trials", type=int, default=4)
    ap.add_argument("--supernet-steps", type=int, default=300)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray and per trial")
    ap.add_argument("--out", default=str(REPORTS / "shared_supernet_minilm"))
    ap.add_argument("--report-only", action="store_true", help="re-render the report from its JSON")
    ap.add_argument("--study", help="report this existing shared-supernet study (with --storage) instead of running")
    ap.add_argument("--storage", help="the study's storage URL (with --study)")
    ap.add_argument("--search-command", default=None, help="the command that ran --study (quoted in the report)")
    args = ap.parse_args()
    if args.report_only:
        import json

        rep = json.loads(Path(f"{args.out}.json").read_text())
        write_report(Path(args.out), rep, markdown(rep))
        return 0
    if args.study:
        from nas.errors import NASError
        from nas.latency.device import device_info

        if not args.storage:
            ap.error("--study needs --storage (the study's storage URL)")
        try:
            arms = {args.study: collect(args.study, args.storage)}
        except NASError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        info = device_info()
        cmd = "PYTHONPATH=. .venv/bin/python experiments/studies/shared_supernet.py " + shlex.join(sys.argv[1:])
        rep = {"command": cmd, "search_command": args.search_command or "nas search",
               "host": f"{info['cpu']} ({info['fingerprint']})",
               "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "arms": arms}
        write_report(Path(args.out), rep, markdown(rep))
        print(markdown(rep))
        return 0
    per_trial, shared = experiments(args.supernet_steps, args.cpus)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="nas-shared-") as d:
        work = Path(d)
        storage = f"sqlite:///{work}/studies.db"
        arms = {"per_trial": arm(per_trial, args.per_trial_trials, storage, work, args.cpus),
                "shared": arm(shared, args.shared_trials, storage, work, args.cpus)}
    from nas.latency.device import device_info

    rep = {"command": "PYTHONPATH=. .venv/bin/python experiments/studies/shared_supernet.py " + " ".join(sys.argv[1:]),
           "host": f"{platform.processor() or device_info().get('cpu')} ({device_info().get('fingerprint')})",
           "cpus": args.cpus, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "loadavg_before": [round(x, 2) for x in load0], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
           "arms": arms}
    write_report(Path(args.out), rep, markdown(rep))
    print(markdown(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())

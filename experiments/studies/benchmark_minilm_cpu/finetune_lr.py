"""Side experiment: which fine-tuning learning rate should the benchmark give every method?

    PYTHONPATH=. .venv/bin/python -m experiments.studies.benchmark_minilm_cpu.finetune_lr [--lrs 5e-5,1.5e-4,3e-4] [--quick]

Each architecture (subnets found by an earlier full run, one random-search trial and
a uniform student) is derived from the pretrained supernet and fine-tuned with the
benchmark's shared budget (``trainer.finetune_steps``) at each learning rate; the
rate is chosen on **validation** accuracy (mean over architectures), test accuracy
is reported next to it. Writes ``experiments/reports/minilm_cpu.finetune_lr.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.studies.benchmark_minilm_cpu.config import DEFAULT_CONFIG, load_config
from experiments.studies.report_files import write_report

ROOT = Path(__file__).resolve().parents[3]
REPORTS = ROOT / "experiments" / "reports"

#: Architectures of the sweep (minilm-l6 space), named by where they came from.
ARCHS = {
    "dnas-7ms": "L0,3,5 H6,2,2 F512,768,768 A16,32,32 M8,8,8 E8",
    "dnas-7ms-b": "L0,3,5 H6,6,2 F512,768,768 A32,8,8 M8,8,8 E8",
    "dnas-6ms": "L3,4,5 H2,2,6 F256,768,512 A8,8,32 M8,8,8 E8",
    "random-7ms": "L2,3 H8,8 F1536,256 A16,32 M8,32 E16",
    "dnas-11ms": "L0,1,3,4,5 H6,4,6,4,2 F512,256,768,512,768 A32,16,8,16,8 M8,32,8,8,8 E8",
    "dnas-12ms": "L0,1,3,4,5 H6,2,2,6,12 F512,256,1536,512,256 A4,8,16,16,32 M8,8,8,8,4 E32",
    "first4": "L0,1,2,3 H12,12,12,12 F1536,1536,1536,1536 A32,32,32,32 M32,32,32,32 E32",
}


def label(lr: float, schedule: str = "constant") -> str:
    """A fine-tuning setting's name: the rate, and the schedule when it is not ``constant``."""
    return f"{lr:g}" if schedule == "constant" else f"{lr:g} {schedule}"


def _key(r: Mapping[str, Any]) -> tuple[float, str]:
    return float(r["lr"]), str(r.get("schedule", "constant"))


def choose(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per setting (learning rate × schedule): mean validation and test accuracy over the architectures run at every
    setting; ``best`` is the rate (``best_schedule`` its schedule) with the highest mean validation accuracy (ties: the
    smaller rate, then the constant schedule); ``baseline`` the smallest rate at the first schedule."""
    settings = sorted({_key(r) for r in rows}, key=lambda k: (k[1] != "constant", k[1], k[0]))
    archs = sorted({r["arch"] for r in rows})
    complete = [a for a in archs if all(any(r["arch"] == a and _key(r) == k for r in rows) for k in settings)]
    if not complete:
        raise ValueError("no architecture was run at every setting")
    per = {}
    for k in settings:
        sel = [r for r in rows if _key(r) == k and r["arch"] in complete]
        per[k] = {"val": statistics.fmean(r["val"] for r in sel), "test": statistics.fmean(r["test"] for r in sel)}
    best = max(settings, key=lambda k: (per[k]["val"], -k[0], k[1] == "constant"))
    base = settings[0]
    wins = sum(1 for a in complete if _acc(rows, a, best, "val") > _acc(rows, a, base, "val"))
    return {"archs": complete, "settings": [label(*k) for k in settings],
            "per_setting": {label(*k): v for k, v in per.items()},
            "best": best[0], "best_schedule": best[1], "baseline": base[0], "baseline_schedule": base[1],
            "val_gain_points": 100 * (per[best]["val"] - per[base]["val"]),
            "test_gain_points": 100 * (per[best]["test"] - per[base]["test"]),
            "val_wins": wins}


def _acc(rows: Sequence[Mapping[str, Any]], arch: str, setting: tuple[float, str], key: str) -> float:
    return next(float(r[key]) for r in rows if r["arch"] == arch and _key(r) == setting)


def render(doc: Mapping[str, Any]) -> str:
    c = doc["choice"]
    settings = sorted({_key(r) for r in doc["rows"]}, key=lambda k: (k[1] != "constant", k[1], k[0]))
    lines = [
        "# Side experiment: the benchmark's fine-tuning learning rate", "",
        f"Command: `{doc['command']}` — {doc['at']}. Every architecture is derived from the pretrained supernet "
        f"and fine-tuned for {doc['finetune_steps']} steps (batch {doc['batch_size']}, seed {doc['seed']}), the "
        f"benchmark's shared budget; accuracy on {doc['n_val']} validation and {doc['n_test']} test WordNet noun "
        "glosses. The setting is chosen on validation accuracy; one seed per cell, so single cells move by ±1–2 pt. "
        "*cosine*: linear warm-up over the first 10 % of the steps, then cosine decay to 0.", "",
        "| architecture | " + " | ".join(f"val / test % @ {label(*k)}" for k in settings) + " |",
        "| --- | " + " | ".join("---" for _ in settings) + " |",
    ]
    for a in c["archs"]:
        cells = [f"{100 * _acc(doc['rows'], a, k, 'val'):.2f} / {100 * _acc(doc['rows'], a, k, 'test'):.2f}"
                 for k in settings]
        lines.append(f"| {a} `{doc['archs'][a]}` | " + " | ".join(cells) + " |")
    per = c["per_setting"]
    lines.append("| **mean** | " + " | ".join(
        f"**{100 * per[label(*k)]['val']:.2f} / {100 * per[label(*k)]['test']:.2f}**" for k in settings) + " |")
    lines += ["", f"Chosen: **{label(c['best'], c['best_schedule'])}** (highest mean validation accuracy): "
              f"{c['val_gain_points']:+.2f} pt validation, {c['test_gain_points']:+.2f} pt test over "
              f"{label(c['baseline'], c['baseline_schedule'])}; better on validation for "
              f"{c['val_wins']} of {len(c['archs'])} architectures.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--lrs", default="5e-5,1.5e-4,3e-4")
    ap.add_argument("--schedules", default="constant", help="comma-separated: constant, cosine (every rate at each)")
    ap.add_argument("--archs", default=",".join(ARCHS), help="names from ARCHS (full mode)")
    ap.add_argument("--quick", action="store_true", help="tiny-bert, first-k students, seconds (tests)")
    ap.add_argument("--out", default=str(REPORTS))
    ap.add_argument("--name", default=None)
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    from nas.errors import ConfigError, NASError

    try:
        lrs = parse_lrs(args.lrs)
        schedules = parse_schedules(args.schedules)
        names = args.archs.split(",")
        unknown = [n for n in names if n not in ARCHS]
        if unknown and not args.quick:
            raise ConfigError(f"--archs: unknown architecture {unknown[0]!r}; known: {', '.join(ARCHS)}")
        return _sweep(args, lrs, schedules, names)
    except NASError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def parse_lrs(text: str) -> list[float]:
    """``"5e-5,3e-4"`` to positive floats (ConfigError naming ``--lrs`` otherwise)."""
    from nas.errors import ConfigError

    try:
        lrs = [float(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"--lrs: expected comma-separated numbers, got {text!r}") from None
    if not lrs or any(not lr > 0 for lr in lrs):
        raise ConfigError(f"--lrs: learning rates must be > 0, got {text!r}")
    return lrs


def parse_schedules(text: str) -> list[str]:
    """``"constant,cosine"`` to known schedule names (ConfigError naming ``--schedules`` otherwise)."""
    from nas.errors import ConfigError
    from trainers.config import FINETUNE_SCHEDULES

    out = [x.strip() for x in text.split(",")]
    bad = [x for x in out if x not in FINETUNE_SCHEDULES]
    if bad:
        raise ConfigError(f"--schedules: unknown schedule {bad[0]!r}; known: {', '.join(FINETUNE_SCHEDULES)}")
    return out


def _sweep(args: argparse.Namespace, lrs: list[float], schedules: list[str], names: list[str]) -> int:
    from experiments.studies.benchmark_minilm_cpu.context import Bench
    from experiments.studies.benchmark_minilm_cpu.run import quick_table
    from nas.spaces.summary import format_arch, parse_arch
    from trainers.config import SearchConfig

    cfg = load_config(DEFAULT_CONFIG, quick=args.quick)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "finetune_lr_work"
    if cfg.latency_table is None:
        work.mkdir(exist_ok=True)
    table = cfg.latency_table or quick_table(cfg, work)
    base = SearchConfig.from_dict({"space": cfg.space, "latency_table": table, **cfg.trainer, "seed": cfg.seed})
    bench = Bench(base, val_examples=cfg.val_examples, progress=print)
    if args.quick:
        archs = {f"first{k}": format_arch(bench.space, bench.first_k(k)) for k in (1, 2)}
    else:
        archs = {n: ARCHS[n] for n in names}
    rows = []
    for name, summary in archs.items():
        arch = parse_arch(bench.space, summary)
        for schedule in schedules:
            for lr in lrs:
                bench.config = dataclasses.replace(base, finetune_lr=lr, finetune_schedule=schedule)
                tr = bench.train_arch(arch)
                row = {"arch": name, "lr": lr, "schedule": schedule, "val": bench.val_accuracy(tr),
                       "test": bench.test_accuracy(tr), "seconds": tr.seconds}
                rows.append(row)
                print(f"{name} {label(lr, schedule)}: val {row['val']:.4f} test {row['test']:.4f} "
                      f"({row['seconds']:.0f} s)", flush=True)
    doc = {"command": " ".join(["python -m experiments.studies.benchmark_minilm_cpu.finetune_lr", *args.argv]),
           "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "space": cfg.space,
           "finetune_steps": base.finetune_steps, "batch_size": base.batch_size, "seed": base.seed,
           "n_val": len(bench.val), "n_test": len(bench.test), "archs": archs, "rows": rows, "choice": choose(rows)}
    stem = args.name or ("minilm_cpu_quick.finetune_lr" if args.quick else "minilm_cpu.finetune_lr")
    write_report(out / stem, doc, render(doc))
    c = doc["choice"]
    print(f"chosen {label(c['best'], c['best_schedule'])} (mean val {c['val_gain_points']:+.2f} pt)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

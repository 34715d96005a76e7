"""Study: distilling a compressed SmolLM2-135M student in fp32 against bf16 autocast on this CPU, paired.

``trainers.devices.train_autocast`` runs training steps under bf16 autocast where the device computes bf16
natively (CUDA, AMX CPUs); evaluation stays fp32. ``train_precision.py`` measured that for MiniLM; this
measures it for the decoder: one fixed student of the SmolLM2 benchmark's user baselines
(:mod:`experiments.studies.benchmark_smollm2_cpu.baselines`: ``depth<k>``, the ``k`` least important layers
dropped by block importance, or ``width<f>``, every layer's heads and FFN cut to ``f``) is derived twice
from the pretrained model and distilled from the full model by :func:`trainers.finetune.finetune`, the
benchmark's distillation, once with ``autocast: none`` (fp32) and once with ``autocast: bf16``: same seed,
same batches in the same order, same steps, the two arms' steps alternating one by one (two threads taking
turns at ``finetune``'s per-step progress callback, so the host's load falls on both alike). Then:

* seconds per distillation step of each arm (median and IQR over the steps after the first, which pays
  the kernels' warm-up), and their ratio;
* the loss curves: the first step's loss (same weights, same batch: only the forward's precision differs)
  and the mean of the last ``--last`` steps of each arm, paired by step (same batches);
* before distillation and after each arm, in fp32: definition → word multiple-choice accuracy on the first
  ``--items`` test items (all four parts of speech, Wilson 95 % interval) and the perplexity of the first
  ``--glosses`` test glosses (64 tokens), with the arms' paired differences and their noise (items: the
  discordant pairs' normal interval; perplexity: the spread of the log-perplexity difference over 10
  folds of glosses).

    HF_HUB_OFFLINE=1 PYTHONPATH=. .venv/bin/python experiments/studies/train_precision_smollm2.py

(about 10 min on 2 cores with the defaults; ``--report-only JSON`` redoes a finished run's report).

Writes ``experiments/reports/train_precision_smollm2_<fingerprint>.{json,md}`` (``--out`` overrides the stem).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments.studies.report_files import md_table, run_record, write_report  # noqa: E402

REPORTS = ROOT / "experiments" / "reports"
ARMS = ("none", "bf16")  # the autocast field's values: fp32, bf16 where native
LABEL = {"none": "fp32", "bf16": "bf16 autocast"}
FOLDS = 10  # perplexity's noise: the glosses in this many folds


class TakeTurns:
    """Lock-step for ``n`` threads: one runs at a time, each :meth:`hand_over` passes the turn to the next
    unfinished party (``0 → 1 → … → 0``) and waits for it to come back; :meth:`finish` passes it for good.

    Each party's seconds of work per turn are recorded in ``seconds[party]`` (from getting the turn to
    handing it over), so waiting for the others never counts.
    """

    def __init__(self, n: int) -> None:
        self.n, self.turn, self.done = n, 0, [False] * n
        self.cv = threading.Condition()
        self.seconds: list[list[float]] = [[] for _ in range(n)]
        self._since = [0.0] * n

    def _next(self, i: int) -> int:
        return next((j for j in ((i + k) % self.n for k in range(1, self.n + 1)) if not self.done[j]), i)

    def start(self, i: int) -> None:
        """Wait for party ``i``'s first turn."""
        with self.cv:
            self.cv.wait_for(lambda: self.turn == i)
        self._since[i] = time.perf_counter()

    def hand_over(self, i: int) -> None:
        """Party ``i`` has done one step: record its seconds, let the next party run, wait for the turn."""
        self.seconds[i].append(time.perf_counter() - self._since[i])
        with self.cv:
            self.turn = self._next(i)
            self.cv.notify_all()
            self.cv.wait_for(lambda: self.turn == i)
        self._since[i] = time.perf_counter()

    def finish(self, i: int) -> None:
        with self.cv:
            self.done[i] = True
            self.turn = self._next(i)
            self.cv.notify_all()


def distil_paired(bench: Any, arch: dict[str, int], *, steps: int, threads: int) -> dict[str, dict[str, Any]]:
    """``arch`` derived twice from the pretrained supernet and distilled in both arms, steps alternating.

    Returns:
        ``{arm: {"subnet", "losses", "step_s"}}``.
    """
    import torch

    from nas.supernet.derive import derive
    from trainers.finetune import finetune

    c = bench.config
    turns = TakeTurns(len(ARMS))
    out: dict[str, dict[str, Any]] = {a: {"subnet": derive(bench.net, arch)} for a in ARMS}
    errors: list[BaseException] = []

    def work(i: int, arm: str) -> None:
        torch.set_num_threads(threads)  # OpenMP's thread count is per calling thread
        try:
            turns.start(i)
            out[arm]["losses"] = finetune(out[arm]["subnet"], bench.recipe.task(), bench.train, steps=steps,
                                          lr=c.finetune_lr, batch_size=c.batch_size, seed=c.seed,
                                          schedule=c.finetune_schedule, autocast=arm, log_every=1,
                                          progress=lambda _line: turns.hand_over(i))
        except BaseException as e:  # noqa: BLE001 — re-raised in the main thread
            errors.append(e)
        finally:
            turns.finish(i)

    workers = [threading.Thread(target=work, args=(i, a), name=f"arm-{a}") for i, a in enumerate(ARMS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    for i, a in enumerate(ARMS):
        out[a]["step_s"] = turns.seconds[i]
    return out


def fold_token_counts(mask: Any, folds: int) -> list[tuple[slice, int]]:
    """``(rows, tokens scored)`` of ``folds`` contiguous folds of the glosses (perplexity scores every real
    token after a row's first)."""
    n = len(mask)
    edges = [round(k * n / folds) for k in range(folds + 1)]
    scored = (mask.sum(1) - 1).clamp(min=0)
    return [(slice(a, b), int(scored[a:b].sum())) for a, b in zip(edges, edges[1:]) if b > a]


def score(bench: Any, model: Any, folds: int = FOLDS) -> dict[str, Any]:
    """fp32 scores of ``model``: per test item whether it is right, and the perplexity of each fold of glosses."""
    from nas.tasks.lm_eval import choice_correct, lm_forward, perplexity

    was = model.training
    model.eval()
    t0 = time.perf_counter()
    forward = lm_forward(model)
    try:
        correct = [bool(x) for x in choice_correct(forward, bench.test)]
        parts = [(perplexity(forward, bench.ppl_ids[rows], bench.ppl_mask[rows]), n)
                 for rows, n in fold_token_counts(bench.ppl_mask, folds) if n > 0]
    finally:
        model.train(was)
    tokens = sum(n for _, n in parts)
    log_ppl = sum(n * math.log(p) for p, n in parts) / tokens
    return {"correct": correct, "accuracy": sum(correct) / len(correct), "items": len(correct),
            "fold_perplexity": [p for p, _ in parts], "fold_tokens": [n for _, n in parts],
            "perplexity": math.exp(log_ppl), "seconds": time.perf_counter() - t0}


def quartiles(xs: Sequence[float]) -> dict[str, float]:
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return {"median": statistics.median(xs), "q1": q[0], "q3": q[2], "iqr": q[2] - q[0], "n": len(xs)}


def paired(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """bf16 (``b``) − fp32 (``a``) on the same items and glosses, with a 95 % noise band of each difference."""
    n = len(a["correct"])
    worse = sum(x and not y for x, y in zip(a["correct"], b["correct"]))
    better = sum(y and not x for x, y in zip(a["correct"], b["correct"]))
    d = [math.log(q) - math.log(p) for p, q in zip(a["fold_perplexity"], b["fold_perplexity"])]
    sd = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    m = better + worse  # exact McNemar: under no difference each discordant item is a fair coin
    p_mc = min(1.0, 2 * sum(math.comb(m, j) for j in range(min(better, worse) + 1)) / 2 ** m) if m else 1.0
    acc = {"diff_points": 100 * (better - worse) / n, "noise95_points": 100 * 1.96 * math.sqrt(m) / n,
           "bf16_only_right": better, "fp32_only_right": worse, "items": n, "mcnemar_p": p_mc}
    ppl = {"diff_percent": 100 * (b["perplexity"] / a["perplexity"] - 1), "log_diff_mean": statistics.mean(d),
           "noise95_percent": 100 * (math.exp(1.96 * sd) - 1), "folds": len(d)}
    acc["beyond_noise"] = p_mc < 0.05
    ppl["beyond_noise"] = abs(ppl["diff_percent"]) > ppl["noise95_percent"]
    return {"accuracy": acc, "perplexity": ppl}


def student_archs(bench: Any, names: Sequence[str], calibration_items: int) -> tuple[dict[str, dict], dict | None]:
    """``{name: {"arch", "detail"}}`` for ``depth<k>`` / ``width<f>`` names (the benchmark's baselines), and the
    block importance when a depth student needs it."""
    from experiments.studies.benchmark_smollm2_cpu.baselines import FULL, calibration_importance, structures
    from nas.errors import ConfigError

    depth, width = [], []
    for name in names:
        try:
            if name.startswith("depth"):
                depth.append(int(name[5:]))
            elif name.startswith("width"):
                width.append(float(name[5:]))
            else:
                raise ValueError
        except ValueError:
            raise ConfigError(f"--students: {name!r} is neither depth<k> nor width<f>") from None
    imp = calibration_importance(bench, calibration_items) if depth else None
    s = structures(bench, depth, width, imp or {"dropped": []})
    return {n: v for n, v in s.items() if n != FULL}, imp


def run_student(bench: Any, name: str, s: dict[str, Any], *, steps: int, threads: int, last: int,
                say: Callable[[str], None]) -> dict[str, Any]:
    from nas.spaces.summary import format_arch
    from nas.supernet.derive import derive

    say(f"{name}: {s['detail']}; scoring before distillation")
    before = score(bench, derive(bench.net, s["arch"]).model)
    say(f"{name}: before {100 * before['accuracy']:.1f} %, perplexity {before['perplexity']:.1f} "
        f"({before['seconds']:.0f} s); distilling {steps} steps per arm, alternating")
    t0 = time.perf_counter()
    arms = distil_paired(bench, s["arch"], steps=steps, threads=threads)
    wall = time.perf_counter() - t0
    row: dict[str, Any] = {"detail": s["detail"], "arch": format_arch(bench.space, s["arch"]), "before": before,
                           "distil_wall_s": wall, "arms": {}}
    for a in ARMS:
        losses, step_s = arms[a]["losses"], arms[a]["step_s"]
        after = score(bench, arms[a]["subnet"].model)
        row["arms"][a] = {"losses": losses, "step_s": step_s, "after": after}
        say(f"{name} {LABEL[a]}: step {statistics.median(step_s[1:] or step_s):.2f} s, last loss {losses[-1]:.4f}, "
            f"after {100 * after['accuracy']:.1f} %, perplexity {after['perplexity']:.1f}")
    return summarize_row(row, last)


def summarize_row(row: dict[str, Any], last: int) -> dict[str, Any]:
    """``row`` (raw losses, step seconds and scores of both arms) with its derived numbers added (pure)."""
    fp, bf = row["arms"]["none"], row["arms"]["bf16"]
    for arm in (fp, bf):
        arm["step_stats"] = quartiles(arm["step_s"][1:] or arm["step_s"])
        arm["first_step_s"], arm["total_s"] = arm["step_s"][0], sum(arm["step_s"])
        arm["nan_losses"] = sum(not math.isfinite(x) for x in arm["losses"])
    k = min(last, len(fp["losses"]))
    dl = [y - x for x, y in zip(fp["losses"][-k:], bf["losses"][-k:])]
    sd = statistics.stdev(dl) if len(dl) > 1 else 0.0
    row["loss"] = {"last_steps": k, "fp32_last_mean": statistics.mean(fp["losses"][-k:]),
                   "bf16_last_mean": statistics.mean(bf["losses"][-k:]), "diff_mean": statistics.mean(dl),
                   "diff_sd": sd, "diff_noise95": 1.96 * sd / math.sqrt(len(dl)),
                   "first_fp32": fp["losses"][0], "first_bf16": bf["losses"][0],
                   "bf16_higher_steps": sum(y > x for x, y in zip(fp["losses"], bf["losses"])),
                   "steps": len(fp["losses"])}
    ratios = [x / y for x, y in zip(fp["step_s"][1:], bf["step_s"][1:])] or [fp["step_s"][0] / bf["step_s"][0]]
    row["step_ratio"] = quartiles(ratios)  # paired: the same batch in both arms, back to back
    row["speedup"] = fp["step_stats"]["median"] / bf["step_stats"]["median"]
    row["paired"] = paired(fp["after"], bf["after"])
    return row


def wilson_pct(acc: float, n: int) -> str:
    from experiments.studies.smollm2_quality import wilson

    lo, hi = wilson(round(acc * n), n)
    return f"{100 * acc:.1f} % ({100 * lo:.1f}–{100 * hi:.1f})"


def markdown(rep: dict) -> str:
    lines = ["# Distilling a SmolLM2-135M student in fp32 against bf16 autocast on this CPU", "",
             f"Command: `{rep['command']}`  ", f"Host: {rep['host']}; CPU trains in bf16 with `autocast: bf16`: "
             f"**{rep['bf16_native']}**; written {rep['date']}; loadavg before {rep['loadavg_before']} → after "
             f"{rep['loadavg_after']}; whole run {rep['wall_s'] / 60:.1f} min.", "",
             f"Each student is derived twice from the pretrained model (de-quantized Q4_1 GGUF) and distilled from the "
             f"full model by the SmolLM2 benchmark's `finetune` ({rep['steps']} steps, batch {rep['batch_size']} × "
             f"{rep['max_length']} tokens, lr {rep['lr']:g} {rep['schedule']}, seed {rep['seed']}, the same batches in "
             "the same order), the fp32 and bf16 arms' steps alternating one by one; everything is scored in fp32 on "
             f"the first {rep['items']} test items (definition → word, 4 choices, all parts of speech; Wilson 95 % "
             f"interval) and the first {rep['glosses']} test glosses (perplexity, 64 tokens). Step seconds: median "
             "(IQR) over the steps after the first (warm-up).", ""]
    r = rep["recipe_teacher"]
    lines += [f"Full model (the teacher), the recipe's cached scores: {100 * r['accuracy']:.1f} % on the first "
              f"{r['items']} test items, perplexity {r['perplexity']:.1f} on the first {r['items']} test glosses "
              "(64 tokens).", ""]
    if rep.get("teacher"):
        t = rep["teacher"]
        lines += [f"Full model (the teacher), same items: {wilson_pct(t['accuracy'], t['items'])}, perplexity "
                  f"{t['perplexity']:.1f}.", ""]
    for name, r in rep["students"].items():
        fp, bf, p, ls = r["arms"]["none"], r["arms"]["bf16"], r["paired"], r["loss"]
        n = r["before"]["items"]
        lines += [f"## `{name}`: {r['detail']}", "", f"`{r['arch']}`", ""]
        lines += md_table(["quantity", "before", "fp32", "bf16 autocast", "bf16 − fp32 (95 % noise)"], [
            ["s per step, median (IQR)", "", f"{fp['step_stats']['median']:.2f} ({fp['step_stats']['iqr']:.2f})",
             f"{bf['step_stats']['median']:.2f} ({bf['step_stats']['iqr']:.2f})",
             f"fp32 / bf16 {r['speedup']:.2f}× (per step, paired: {r['step_ratio']['median']:.2f}×, IQR "
             f"{r['step_ratio']['q1']:.2f}–{r['step_ratio']['q3']:.2f})"],
            ["s, all steps", "", f"{fp['total_s']:.0f}", f"{bf['total_s']:.0f}",
             f"{fp['total_s'] / bf['total_s']:.2f}×"],
            ["first step's loss (same weights, same batch)", "", f"{ls['first_fp32']:.4f}", f"{ls['first_bf16']:.4f}",
             f"{ls['first_bf16'] - ls['first_fp32']:+.4f}"],
            [f"loss, mean of the last {ls['last_steps']} steps", "", f"{ls['fp32_last_mean']:.4f}",
             f"{ls['bf16_last_mean']:.4f}", f"{ls['diff_mean']:+.4f} (±{ls['diff_noise95']:.4f}, paired by step)"],
            [f"accuracy, n = {n}", wilson_pct(r["before"]["accuracy"], n), wilson_pct(fp["after"]["accuracy"], n),
             wilson_pct(bf["after"]["accuracy"], n),
             f"{p['accuracy']['diff_points']:+.2f} pt (items right in bf16 only: {p['accuracy']['bf16_only_right']}, "
             f"in fp32 only: {p['accuracy']['fp32_only_right']}; McNemar p = {p['accuracy']['mcnemar_p']:.2f})"],
            [f"perplexity, {rep['glosses']} glosses", f"{r['before']['perplexity']:.1f}",
             f"{fp['after']['perplexity']:.1f}",
             f"{bf['after']['perplexity']:.1f}",
             f"{p['perplexity']['diff_percent']:+.1f} % (±{p['perplexity']['noise95_percent']:.1f} %, "
             f"{p['perplexity']['folds']} folds)"],
        ])
        nan = fp["nan_losses"] + bf["nan_losses"]
        lines += ["", f"Distillation wall (both arms): {r['distil_wall_s']:.0f} s; non-finite losses: {nan}; the bf16 "
                  f"arm's loss was the higher at {ls['bf16_higher_steps']} of {ls['steps']} steps (each step: the same "
                  "batch; the loss is computed in the arm's precision).", ""]
    lines += ["## Conclusion", "", rep["conclusion"], ""]
    return "\n".join(lines)


def conclusion(rep: dict) -> str:
    out = []
    for name, r in rep["students"].items():
        fp, bf, p, ls = r["arms"]["none"], r["arms"]["bf16"], r["paired"], r["loss"]
        a, q = p["accuracy"], p["perplexity"]
        gain = 100 * (1 - fp["after"]["perplexity"] / r["before"]["perplexity"])
        nan = fp["nan_losses"] + bf["nan_losses"]
        out.append(
            f"`{name}`: bf16 autocast ran a distillation step {r['step_ratio']['median']:.2f}× faster (paired median; "
            f"{fp['step_stats']['median']:.2f} → {bf['step_stats']['median']:.2f} s) and its loss differed by "
            f"{ls['diff_mean']:+.4f} from fp32's over the last {ls['last_steps']} steps (already "
            f"{ls['first_bf16'] - ls['first_fp32']:+.4f} "
            f"at the first step, on identical weights: the loss's own precision), {'no' if not nan else nan} "
            f"non-finite loss{'es' if nan != 1 else ''}. Scored in fp32 after {rep['steps']} steps, accuracy is "
            f"{100 * fp['after']['accuracy']:.1f} % (fp32) vs {100 * bf['after']['accuracy']:.1f} % (bf16) on "
            f"{a['items']} items ({a['diff_points']:+.2f} pt, {a['bf16_only_right'] + a['fp32_only_right']} of them "
            f"answered differently, McNemar p = {a['mcnemar_p']:.2f}: "
            + ("a difference" if a["beyond_noise"] else "no difference")
            + f" beyond the evaluation noise) and perplexity {fp['after']['perplexity']:.1f} vs "
            f"{bf['after']['perplexity']:.1f} ({q['diff_percent']:+.1f} %, fold noise ±{q['noise95_percent']:.1f} %"
            + (", beyond it but" if q["beyond_noise"] else ",") + f" small beside distillation's {gain:.0f} % drop from "
            f"{r['before']['perplexity']:.1f}); one seed, so the run-to-run noise of training itself is not measured.")
    return " ".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", nargs="+", default=["depth6"], help="depth<k> and/or width<f> (benchmark baselines)")
    ap.add_argument("--steps", type=int, default=50, help="distillation steps per arm")
    ap.add_argument("--items", type=int, default=600, help="held-out multiple-choice items")
    ap.add_argument("--glosses", type=int, default=200, help="held-out glosses of the perplexity")
    ap.add_argument("--calibration-items", type=int, default=64, help="train items of the block importance")
    ap.add_argument("--last", type=int, default=10, help="the loss curves' last steps compared")
    ap.add_argument("--teacher", action="store_true", help="also score the full model on the same items")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="report stem (default train_precision_smollm2_<fingerprint>)")
    ap.add_argument("--report-only", metavar="JSON",
                    help="redo a finished run's derived numbers and report from its JSON")
    args = ap.parse_args()

    if args.report_only:
        import json

        rep = json.loads(Path(args.report_only).read_text())
        for row in rep["students"].values():
            summarize_row(row, args.last)
        rep["conclusion"] = conclusion(rep)
        js, md = write_report(args.out or str(Path(args.report_only).with_suffix("")), rep, markdown(rep))
        print(markdown(rep))
        print(f"wrote {js} and {md}", file=sys.stderr)
        return 0

    import torch

    from experiments.studies.benchmark_minilm_cpu.config import load_config
    from experiments.studies.benchmark_smollm2_cpu.config import DEFAULT_CONFIG, DecoderBenchConfig
    from experiments.studies.benchmark_smollm2_cpu.context import DecoderBench
    from nas.latency.device import device_info
    from nas.supernet.derive import derive
    from trainers.devices import bf16_native

    t0 = time.perf_counter()

    def say(line: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f}s] {line}", file=sys.stderr, flush=True)

    torch.set_num_threads(args.threads)
    load0 = [round(x, 2) for x in os.getloadavg()]
    cfg = dataclasses.replace(load_config(DEFAULT_CONFIG, cls=DecoderBenchConfig), test_items=args.items,
                              ppl_glosses=args.glosses, calibration_items=args.calibration_items)
    bench = DecoderBench(cfg, progress=say)
    studs, imp = student_archs(bench, args.students, args.calibration_items)
    teacher = None
    if args.teacher:
        teacher = score(bench, derive(bench.net, bench.space.full()).model)
        say(f"teacher: {100 * teacher['accuracy']:.1f} %, perplexity {teacher['perplexity']:.1f}")
    c = bench.config
    rows = {name: run_student(bench, name, s, steps=args.steps, threads=args.threads, last=args.last, say=say)
            for name, s in studs.items()}
    rep = {**run_record("train_precision_smollm2.py", load0), "bf16_native": bf16_native("cpu"),
           "model": bench.space.model, "steps": args.steps, "batch_size": c.batch_size, "max_length": c.max_length,
           "lr": c.finetune_lr, "schedule": c.finetune_schedule, "seed": c.seed, "threads": args.threads,
           "items": len(bench.test), "glosses": len(bench.ppl_ids), "block_importance": imp, "teacher": teacher,
           "recipe_teacher": {"accuracy": bench.recipe.teacher_quality, "items": bench.recipe.n_eval,
                              "perplexity": bench.recipe.teacher_metrics["perplexity"]},
           "students": rows, "wall_s": time.perf_counter() - t0}
    rep["conclusion"] = conclusion(rep)
    out = args.out or str(REPORTS / f"train_precision_smollm2_{device_info()['fingerprint']}")
    js, md = write_report(out, rep, markdown(rep))
    print(markdown(rep))
    say(f"wrote {js} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

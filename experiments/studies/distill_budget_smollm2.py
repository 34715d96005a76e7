"""How far does a longer distillation take a depth-pruned SmolLM2?  (issue 32's TPOT target)

    PYTHONPATH=. .venv/bin/python -m experiments.studies.distill_budget_smollm2 [--quick] \
        [--depth-drops 8 12] [--steps 0 24 96 384] [--out DIR] [--name STEM]

The SmolLM2 benchmark's TPOT target asks for a point within 1 point of the full model's multiple-choice
accuracy that decodes ≥ 1.5× faster than the full model at int4; on this CPU every pruned or searched
point gets 24 distillation steps and stays far below. This study measures what more steps buy: the
benchmark's depth-pruned baselines (Shortened-LLaMA block importance on the same calibration items, the
same teacher, data, learning rate and batch as ``experiments/studies/benchmark_smollm2_cpu/config.yaml``)
distilled once for the longest budget, scored on the benchmark's held-out items and glosses after each
budget of the ladder (one run per structure: the schedule is constant, so the point after ``n`` steps is
the ``n``-step run's). PyTorch fp32 scores every rung; the last rung is also exported at int4 with
calibrated scales and scored as the deployed ONNX graph, as the benchmark scores its points. Each
structure's predicted TPOT speedup over the full model at int4 comes from the benchmark's decode table.

``--text items`` distils on the task's own format instead of gloss text (the trial option
``distill_text``, whatever the config says: :func:`nas.tasks.definitions.distill_texts`): the training
synsets as the multiple choice asks them, ``Definition: {gloss}.\nWord: {word}`` (the true word;
held-out synsets stay unseen), still against the full model's next-token distribution. The int4 scales
are calibrated on the first training texts, as a trial's.

Writes ``<out>/<name>.{md,json}`` (default ``distill_budget_smollm2_<host fingerprint>``), the JSON after
every rung, so a run cut short keeps what it measured. ``--quick``: the tiny random Llama (tests).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from experiments.studies.report_files import md_table, write_report  # noqa: E402
from nas.tasks.definitions import DISTILL_TEXTS  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ROOT / "experiments" / "reports"
MODULE = "experiments.studies.distill_budget_smollm2"

_T0 = time.perf_counter()


def say(line: str) -> None:
    print(f"[distill {time.perf_counter() - _T0:7.1f}s] {line}", file=sys.stderr, flush=True)


def steps_to_close(rungs: list[dict[str, Any]], goal: float) -> dict[str, Any] | None:
    """Accuracy against log2(steps) fitted on the rungs after the first distilled one (least squares):
    ``{"per_doubling", "steps"}`` where ``steps`` is where the line reaches ``goal`` (None: it never does).

    Example:
        >>> steps_to_close([{"steps": 24, "accuracy": 0.40}, {"steps": 96, "accuracy": 0.44}], 0.48)
        {'per_doubling': 0.02, 'steps': 384}
    """
    pts = [(math.log2(r["steps"]), r["accuracy"]) for r in rungs if r["steps"] > 0]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    slope = round(slope, 6)
    if slope <= 0:
        return {"per_doubling": slope, "steps": None}
    return {"per_doubling": slope, "steps": int(round(2 ** (mx + (goal - my) / slope)))}


def score_torch(model: Any, bench: Any) -> dict[str, float]:
    """Multiple-choice accuracy and perplexity of ``model`` (PyTorch fp32) on the benchmark's held-out sets."""
    from nas.tasks.lm_eval import TorchCachedDecoder, choice_scores_cached, correct_of, lm_forward, perplexity

    correct = correct_of(choice_scores_cached(TorchCachedDecoder(model), bench.test), bench.test)
    return {"accuracy": float(correct.float().mean()),
            "perplexity": perplexity(lm_forward(model), bench.ppl_ids, bench.ppl_mask)}


def score_int4(bench: Any, subnet: Any, arch: dict[str, int], folder: Path, calibration: Any) -> dict[str, Any]:
    """``subnet`` saved (unless it is there), exported at int4 (calibrated scales, ``MatMulNBits`` at the tables'
    accuracy level, as the benchmark deploys its points) and scored as the deployed graph."""
    from experiments.studies.benchmark_smollm2_cpu.baselines import with_bits
    from experiments.studies.benchmark_smollm2_cpu.measure import export_point, score_point
    from nas.export.latency import accuracy_level

    if not (folder / "subnet" / "subnet.json").is_file():
        subnet.save(folder / "subnet")
    level = accuracy_level(bench.tables)
    cand = {"subnet_dir": str(folder / "subnet"), "arch": with_bits(bench.space, arch, "int4"), "deploy": "int4"}
    out = export_point(cand, folder / f"int4.level{level}", accuracy_level=level, calibration=calibration)
    cfg = bench.bench_config
    return {**score_point(out, bench, prompt=cfg.prompt, new_tokens=cfg.new_tokens), "accuracy_level": level,
            "folder": str(out)}


def rescore(args: argparse.Namespace) -> int:
    """``--rescore JSON --work DIR``: the int4 rows of a run again from the subnets it kept in ``DIR`` (the full
    model's too when ``DIR/full`` holds it, else from the run its scores came from, rescored first)."""
    from experiments.studies.benchmark_minilm_cpu.config import load_config
    from experiments.studies.benchmark_smollm2_cpu.config import DEFAULT_CONFIG, DecoderBenchConfig
    from experiments.studies.benchmark_smollm2_cpu.context import DecoderBench
    from nas.supernet.derive import load_subnet
    from trainers.pipeline import int4_calibration

    src, work = Path(args.rescore), Path(args.work)
    doc = json.loads(src.read_text())
    cfg = load_config(args.config or DEFAULT_CONFIG, quick=args.quick, cls=DecoderBenchConfig)
    text = doc["recipe"].get("calibration_text", "glosses")  # the texts the run calibrated int4 on
    cfg = dataclasses.replace(cfg, test_items=doc["test_items"], ppl_glosses=doc["ppl_glosses"],
                              trainer={**dict(cfg.trainer), "distill_text": text})
    bench = DecoderBench(cfg, progress=say)
    calibration = int4_calibration(dataclasses.replace(bench.config, int4_scales="calibrated"), bench.train)
    if (work / "full" / "subnet").is_dir():
        saved = load_subnet(work / "full" / "subnet")
        doc["full"]["int4"] = score_int4(bench, saved, dict(saved.arch), work / "full", calibration)
    elif doc["full"].get("from"):
        doc["full"] = {**json.loads(Path(doc["full"]["from"]).read_text())["full"], "from": doc["full"]["from"]}
    say(f"full int4: {doc['full']['int4']['accuracy']:.1%}")
    for key, e in doc["structures"].items():
        saved = load_subnet(work / key / "subnet")
        e["int4_last"] = {"steps": e["int4_last"]["steps"],
                          **score_int4(bench, saved, dict(saved.arch), work / key, calibration)}
        say(f"{key} int4: {e['int4_last']['accuracy']:.1%}")
    doc["rescored"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    write_report(src.with_suffix(""), doc, markdown(doc))
    return 0


def run(args: argparse.Namespace) -> int:
    from experiments.studies.benchmark_minilm_cpu.config import load_config
    from experiments.studies.benchmark_smollm2_cpu.config import DEFAULT_CONFIG, DecoderBenchConfig
    from nas.latency.device import device_info

    cfg = load_config(args.config or DEFAULT_CONFIG, quick=args.quick, cls=DecoderBenchConfig)
    cfg = dataclasses.replace(cfg, trainer={**dict(cfg.trainer), "distill_text": args.text})
    if args.test_items or args.ppl_glosses:
        cfg = dataclasses.replace(cfg, test_items=args.test_items or cfg.test_items,
                                  ppl_glosses=args.ppl_glosses or cfg.ppl_glosses)
    ladder = sorted(set(args.steps))
    if not ladder or ladder[0] < 0:
        raise SystemExit("--steps: non-negative step counts")
    prev = json.loads(Path(args.full_from).read_text()) if args.full_from else None
    if prev is not None and prev.get("space") != cfg.space:
        raise SystemExit(f"--full-from: {args.full_from} scored space {prev.get('space')!r}, not {cfg.space!r}")
    fp = device_info()["fingerprint"]
    stem = "distill_budget_smollm2" + ("" if args.text == "glosses" else f"_{args.text}")
    name = args.name or (f"{stem}_quick" if args.quick else f"{stem}_{fp}")
    out = Path(args.out) if args.out else REPORTS
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="distill-budget-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, cfg, ladder, name, out, work, prev)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, cfg: Any, ladder: list[int], name: str, out: Path, work: Path,
         prev: dict[str, Any] | None) -> int:
    import torch

    from experiments.studies.benchmark_minilm_cpu.run import host, loadavg
    from experiments.studies.benchmark_smollm2_cpu.baselines import calibration_importance, depth_arch, with_bits
    from experiments.studies.benchmark_smollm2_cpu.context import DecoderBench
    from nas.supernet.derive import derive
    from trainers.devices import train_dtype
    from trainers.finetune import finetune
    from trainers.pipeline import int4_calibration

    bench = DecoderBench(cfg, progress=say)
    c = bench.config
    calibration = int4_calibration(dataclasses.replace(c, int4_scales="calibrated"), bench.train)
    train = bench.train
    doc: dict[str, Any] = {
        "command": shlex.join(["python", "-m", MODULE, *args.argv]),
        "started": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": {**host(), "cores": os.cpu_count(), "loadavg_before": loadavg(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
        "space": cfg.space, "ladder": ladder, "test_items": len(bench.test), "ppl_glosses": len(bench.ppl_ids),
        "recipe": {"text": args.text, "calibration_text": args.text, "lr": c.finetune_lr,
                   "batch_size": c.batch_size, "max_length": c.max_length,
                   "train_texts": len(train), "schedule": c.finetune_schedule, "autocast": c.autocast,
                   "train_dtype": train_dtype("cpu", c.autocast),
                   "benchmark_steps": c.finetune_steps},
        "structures": {},
    }

    def save() -> None:
        doc["finished"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        doc["machine"]["loadavg_after"] = loadavg()
        write_report(out / name, doc, markdown(doc))

    full_arch = dict(bench.space.full())
    full_int4 = with_bits(bench.space, full_arch, "int4")
    if prev is not None:  # the full model's scores from an earlier run on the same sets
        if (prev["test_items"], prev["ppl_glosses"]) != (len(bench.test), len(bench.ppl_ids)):
            raise SystemExit(f"--full-from: {args.full_from} scored other sets")
        doc["full"] = {**prev["full"], "from": args.full_from}
    else:
        say("full model: scoring (PyTorch fp32), then at int4 (ONNX)")
        full = derive(bench.net, full_arch)
        full.model.eval()
        with torch.no_grad():
            doc["full"] = {"fp32": score_torch(full.model, bench),
                           "int4": score_int4(bench, full, full_arch, work / "full", calibration),
                           "tpot_int4_predicted_ms": bench.predicted(full_int4)["tpot_ms"]}
        del full
    say(f"full: fp32 {doc['full']['fp32']['accuracy']:.1%} ppl {doc['full']['fp32']['perplexity']:.1f}; "
        f"int4 {doc['full']['int4']['accuracy']:.1%}")
    save()
    imp = calibration_importance(bench, cfg.calibration_items)
    for k in args.depth_drops:
        arch, dropped = depth_arch(bench.space, imp["dropped"], int(k))
        key = f"depth{k}"
        pred = bench.predicted(with_bits(bench.space, arch, "int4"))["tpot_ms"]
        entry = doc["structures"][key] = {"dropped": dropped, "tpot_int4_predicted_ms": pred,
                                          "tpot_speedup_vs_full_int4": doc["full"]["tpot_int4_predicted_ms"] / pred,
                                          "rungs": []}
        subnet = derive(bench.net, arch)
        task = bench.recipe.task()
        t_train = [time.perf_counter(), 0.0]  # start of the current training stretch, seconds trained

        def rung(n: int, subnet=subnet, entry=entry, key=key, t_train=t_train) -> None:
            t_train[1] += time.perf_counter() - t_train[0]
            s = score_torch(subnet.model, bench)
            entry["rungs"].append({"steps": n, "train_s": round(t_train[1], 1), **s})
            say(f"{key} after {n} steps ({t_train[1] / 60:.1f} min): accuracy {s['accuracy']:.1%}, "
                f"perplexity {s['perplexity']:.1f}")
            save()
            t_train[0] = time.perf_counter()

        say(f"{key}: layers {dropped} dropped; distilling {ladder[-1]} steps, scored after {ladder}")
        finetune(subnet, task, train, steps=ladder[-1], lr=c.finetune_lr, batch_size=c.batch_size,
                 seed=c.seed, schedule=c.finetune_schedule, autocast=c.autocast,
                 progress=say, log_every=max(ladder[-1] // 8, 1), checkpoints=ladder, on_checkpoint=rung)
        entry["int4_last"] = {"steps": ladder[-1], **score_int4(bench, subnet, arch, work / key, calibration)}
        say(f"{key} at int4 after {ladder[-1]} steps: accuracy {entry['int4_last']['accuracy']:.1%}")
        save()
    return 0


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    r = doc["recipe"]
    lines = [
        "# How far a longer distillation takes a depth-pruned SmolLM2", "",
        f"`{doc['command']}` — {doc['started']} to {doc.get('finished', '…')} UTC, {m.get('cpu', '?')} "
        f"(fingerprint {m['fingerprint']}), {m['cores']} cores, torch {m['torch']} ({m['threads']} threads), "
        f"load average {m['loadavg_before']} before, {m.get('loadavg_after', '?')} after.", "",
        f"Space `{doc['space']}`. Recipe: the SmolLM2 benchmark's (distillation from the full model, lr "
        f"{r['lr']:g} {r['schedule']}, batch {r['batch_size']} × {r['max_length']} tokens, training in "
        f"{r.get('train_dtype', '?')}) on {r.get('train_texts', r.get('train_glosses'))} training "
        + ("glosses (the benchmark's text)" if r.get("text", "glosses") == "glosses" else
           "items in the task's format (`Definition: … Word: <true word>`; the benchmark distils on glosses)")
        + f"; the benchmark gives every point "
        f"{r['benchmark_steps']} steps. Each structure is distilled once for {doc['ladder'][-1]} steps and scored "
        f"after each of {doc['ladder']} (constant schedule: a rung is the run of that length). Scores: "
        f"multiple choice on {doc['test_items']} held-out items (4 parts of speech), perplexity of "
        f"{doc['ppl_glosses']} held-out glosses; PyTorch fp32 at every rung, the deployed int4 ONNX graph "
        "(calibrated scales, `MatMulNBits` at the tables' accuracy level, as the benchmark deploys and scores its "
        "points) at the last.", "",
    ]
    if doc.get("note"):
        lines += [f"Note: {doc['note']}.", ""]
    if doc.get("rescored"):
        lines += [f"The int4 rows were scored again on {doc['rescored']} UTC from the run's saved subnets "
                  f"(`--rescore`), exported at the tables' accuracy level.", ""]
    full = doc.get("full")
    if not full:
        return "\n".join(lines + ["Nothing measured yet."]) + "\n"
    goal = full["fp32"]["accuracy"] - 0.01
    lines += [f"**Full model**: fp32 {full['fp32']['accuracy']:.1%} (perplexity {full['fp32']['perplexity']:.1f}); "
              f"int4 deployed {full['int4']['accuracy']:.1%} (perplexity {full['int4']['perplexity']:.1f}), "
              f"predicted TPOT {full['tpot_int4_predicted_ms']:.2f} ms"
              + (f" (scored by the run in `{Path(full['from']).name}`)" if full.get("from") else "")
              + ". The target's accuracy bar (fp32 − 1 pt): "
              f"**{goal:.1%}**; its speed bar: TPOT ≥ 1.5× below full int4.", ""]
    def row(name: str, g: dict[str, Any], minutes: str) -> list[Any]:
        drop = f"{100 * (g['accuracy'] - full['fp32']['accuracy']):+.1f} pt"
        return [name, g["steps"], minutes, f"{g['accuracy']:.1%}", drop, f"{g['perplexity']:.1f}"]

    rows = []
    for key, e in doc["structures"].items():
        rows += [row(key, g, f"{g['train_s'] / 60:.1f}") for g in e["rungs"]]
        if "int4_last" in e:
            rows.append(row(f"{key} int4", e["int4_last"], ""))
    lines += md_table(["structure", "steps", "train min", "multiple choice", "vs full fp32", "perplexity"], rows)
    lines += ["", "| structure | layers dropped | predicted int4 TPOT ms | speedup vs full int4 | gain per doubling "
              "of steps | steps to reach the bar (log-linear) |", "| --- | --- | --- | --- | --- | --- |"]
    for key, e in doc["structures"].items():
        fit = steps_to_close(e["rungs"], goal)
        per = f"{fit['per_doubling'] * 100:+.2f} pt" if fit else "–"
        need = ("never (no gain)" if fit and fit["steps"] is None else f"{fit['steps']:,}" if fit else "–")
        lines.append(f"| {key} | {e['dropped']} | {e['tpot_int4_predicted_ms']:.2f} | "
                     f"{e['tpot_speedup_vs_full_int4']:.2f}× | {per} | {need} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny-llama with the benchmark's quick settings (tests)")
    ap.add_argument("--config", default=None, help="a benchmark config (default: the SmolLM2 benchmark's)")
    ap.add_argument("--depth-drops", type=int, nargs="+", default=[8, 12])
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 24, 96, 384], help="the ladder of step counts")
    ap.add_argument("--text", choices=DISTILL_TEXTS, default="glosses",
                    help="distil on the benchmark's glosses or on training items in the task's format")
    ap.add_argument("--full-from", metavar="JSON", help="reuse the full model's scores from an earlier run's JSON")
    ap.add_argument("--test-items", type=int, default=None, help="held-out items (default: the config's)")
    ap.add_argument("--ppl-glosses", type=int, default=None, help="perplexity glosses (default: the config's)")
    ap.add_argument("--work", default=None, help="keep the subnets and int4 export folders here (default: a temp folder)")
    ap.add_argument("--out", default=None, help=f"report folder (default {REPORTS.relative_to(ROOT)})")
    ap.add_argument("--name", default=None, help="report file stem")
    ap.add_argument("--rescore", metavar="JSON", help="score a run's int4 rows again from the subnets in --work")
    ap.add_argument("--report-only", metavar="JSON", help="rewrite the Markdown from a run's JSON")
    args = ap.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.rescore:
        if not args.work:
            raise SystemExit("--rescore: give the run's --work folder")
        return rescore(args)
    if args.report_only:
        src = Path(args.report_only)
        doc = json.loads(src.read_text())
        write_report(src.with_suffix(""), doc, markdown(doc))
        return 0
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: does the search beat quantize-only and uniform pruning of SmolLM2 on this CPU, per phase?

    PYTHONPATH=. .venv/bin/python -m experiments.studies.benchmark_smollm2_cpu.run [--quick] [--budget-minutes M] [--out DIR]

Runs, on this machine, the user baselines (the full model at fp32 / onnxruntime int8 / int4; depth
pruning by block importance and uniform width pruning, each distilled with the DNAS trials' budget and
deployed at the same three precisions), then three searches over the same space, task, tables and
per-trial budget with the same wall clock each (ours: DNAS trials through ``nas.search.api.run_search``
priced per phase; random search; Optuna NSGA-II on accuracy × TTFT × TPOT), exports every point as the
generation graph ``nas export`` ships (KV cache in and out), scores it with onnxruntime (definition →
word accuracy on held-out items of all four parts of speech, held-out perplexity, a greedy answer to a
fixed prompt), times TTFT and TPOT of every graph interleaved at each thread count with each table's
reference models alongside, and writes ``<out>/smollm2_cpu.{md,json}`` and
``<out>/smollm2_cpu.<phase>.t<T>.png`` (``smollm2_cpu_quick.*`` with ``--quick``). Settings:
``config.yaml`` next to this file; shared rules come from the MiniLM benchmark
(:mod:`experiments.studies.benchmark_minilm_cpu`: methods, DNAS driver, fronts, hypervolume).

``--quick``: the tiny random Llama with its shipped tables, a small WordNet slice, seconds per method
(the test suite runs it end to end). ``--report-only JSON`` redoes a finished run's report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from experiments.studies.benchmark_minilm_cpu.config import load_config  # noqa: E402
from experiments.studies.benchmark_minilm_cpu.run import host, loadavg, ort_version, run_costs  # noqa: E402
from experiments.studies.benchmark_smollm2_cpu.config import DEFAULT_CONFIG, PHASES, DecoderBenchConfig  # noqa: E402
from experiments.studies.report_files import write_json  # noqa: E402
from nas.errors import ConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
REPORTS = ROOT / "experiments" / "reports"
MODULE = "experiments.studies.benchmark_smollm2_cpu.run"
METHODS = ("dnas", "random", "nsga2")

_T0 = time.perf_counter()


def say(line: str) -> None:
    print(f"[bench {time.perf_counter() - _T0:7.1f}s] {line}", file=sys.stderr, flush=True)


def check_tables(cfg: DecoderBenchConfig) -> dict[str, Any]:
    """Both tables loaded and checked (phase, space, one int4 accuracy level) before any compute."""
    from nas.export.latency import accuracy_level
    from nas.latency.budgets import TABLE_PHASES
    from nas.latency.table import check_phase, load_table
    from nas.spaces import load_space

    space = load_space(cfg.space)
    tables = {}
    for b in PHASES:
        t = load_table(cfg.latency_tables[b])
        check_phase(t, TABLE_PHASES[b])
        t.check_space(space)
        tables[b] = t
    accuracy_level(tables)
    m = cfg.measure
    if tables[PHASES[0]].seq != m.prompt_tokens or tables[PHASES[1]].context != m.context:
        raise ConfigError(f"measure: prompt_tokens {m.prompt_tokens} / context {m.context} differ from the tables' "
                          f"(seq {tables[PHASES[0]].seq}, context {tables[PHASES[1]].context})")
    return tables


def run_mode(doc: dict[str, Any]) -> str:
    """``quick``, ``reduced`` (less wall clock per method than the shipped config's, or not every search method:
    the run's JSON says which) or ``full``."""
    if doc.get("mode") == "quick":
        return "quick"
    full = load_config(DEFAULT_CONFIG, cls=DecoderBenchConfig)
    methods = {p["method"] for p in doc["points"]} | set(doc["summary"]["cost"])
    if float(doc["config"]["budget_minutes"]) < full.budget_minutes or not set(METHODS) <= methods:
        return "reduced"
    return "full"


def table_info(table: Any) -> dict[str, Any]:
    """What the report states of a table: id, sha256, clock and the device it was measured on."""
    from nas.latency.table import table_sha256

    return {"id": table.id, "sha256": table_sha256(table), "clock": (table.protocol or {}).get("clock", "wall"),
            "device": {k: table.device.get(k) for k in ("cpu", "fingerprint")}}


def table_clock(tables: dict[str, Any]) -> str:
    """The clock both tables were measured with (``wall`` when they differ or record none)."""
    clocks = {(t.protocol or {}).get("clock", "wall") for t in tables.values()}
    return clocks.pop() if len(clocks) == 1 else "wall"


def run_methods(bench: Any, cfg: DecoderBenchConfig, work: Path, methods: list[str]) -> dict[str, Any]:
    """Baselines, then each search method with the same wall clock; returns ``{method: MethodRun}``."""
    from experiments.studies.benchmark_minilm_cpu.dnas import experiment_dict, run_dnas
    from experiments.studies.benchmark_minilm_cpu.methods import MethodRun, run_nsga2, run_random
    from experiments.studies.benchmark_smollm2_cpu.baselines import run_baselines

    runs: dict[str, Any] = {"baselines": run_baselines(
        bench, work, say, depth_drops=cfg.depth_drops, width_fractions=cfg.width_fractions, deploys=cfg.deploys,
        calibration_items=cfg.calibration_items)}
    for m in methods:
        say(f"== {m}: {cfg.budget_s:.0f} s")
        if m == "dnas":
            exp = experiment_dict("bench_smollm2_dnas", space=cfg.space, latency_tables=dict(cfg.latency_tables),
                                  task="wordnet-definitions", trainer=cfg.trainer, dnas=cfg.dnas,
                                  bench="benchmark_smollm2_cpu")
            run, cands = run_dnas(exp, cfg.budget_s, work / "dnas", say,
                                  num_cpus=int(cfg.dnas.get("cpus_per_trial", 1)) * int(cfg.dnas.get("concurrency", 1)))
            for c in cands:
                c["predicted"] = bench.predicted(c["arch"])
            run.candidates = cands
        elif m == "random":
            run = run_random(bench, cfg.budget_s, work, say, seed=cfg.seed, max_trials=cfg.max_trials)
        else:
            run = run_nsga2(bench, cfg.budget_s, work, say, seed=cfg.seed,
                            population_size=int(cfg.nsga2.get("population_size", 4)), max_trials=cfg.max_trials)
        assert isinstance(run, MethodRun)
        runs[m] = run
        say(f"{m}: {run.trials} trials ({run.failed} failed) in {run.wall_s:.0f} s")
    return runs


def evaluate(bench: Any, runs: dict[str, Any], cfg: DecoderBenchConfig, work: Path, clock_t1: str) -> tuple[list, dict]:
    """Export, score and measure every candidate; returns ``(points, reference reports)``."""
    from nas.export.latency import accuracy_level

    from experiments.studies.benchmark_smollm2_cpu.measure import export_point, measure_phases, score_point
    from trainers.pipeline import int4_calibration

    level = accuracy_level(bench.tables)
    calibration = int4_calibration(bench.config, bench.train)
    points, paths = [], {}
    for run in runs.values():
        for c in run.candidates:
            key = f"{c['method']}/{c['name']}"
            folder = export_point(c, work / "artifacts" / c["method"] / c["name"], accuracy_level=level,
                                  calibration=calibration)
            scores = score_point(folder, bench, prompt=cfg.prompt, new_tokens=cfg.new_tokens)
            p = {k: v for k, v in c.items() if k not in ("subnet_dir", "head")}
            p.update(scores, key=key, artifact_dir=str(folder.relative_to(work)))
            p.setdefault("deploy", "searched")
            points.append(p)
            paths[key] = folder / "model.quant.onnx"
            say(f"scored {key}: accuracy {p['accuracy']:.4f}, perplexity {p['perplexity']:.2f}, {p['size_mb']:.1f} MB")
    lat, refs = measure_phases(paths, tables=bench.tables, threads=cfg.threads, m=cfg.measure, clock_t1=clock_t1,
                               vocab=bench.space.dims.vocab_size)
    for p in points:
        p["latency"] = lat[p["key"]]
    for b, r in refs.items():
        say(f"{b}: reference ratio {r['ratio']:.3f} (measured / recorded, {len(r['models'])} models)")
    return points, refs


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, quick=args.quick, budget_minutes=args.budget_minutes, cls=DecoderBenchConfig)
    name = args.name or ("smollm2_cpu_quick" if args.quick else "smollm2_cpu")
    out = Path(args.out) if args.out else REPORTS
    tables = check_tables(cfg)
    clock_t1 = table_clock(tables)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-smollm2-"))
    work.mkdir(parents=True, exist_ok=True)
    started, load0 = time.strftime("%Y-%m-%d %H:%M", time.gmtime()), loadavg()
    if args.quick:
        os.environ["NAS_CACHE_DIR"] = str(work / "cache")  # the Ray trials see NAS_* variables
    try:
        from experiments.studies.benchmark_smollm2_cpu.analysis import summarize
        from experiments.studies.benchmark_smollm2_cpu.context import DecoderBench

        bench = DecoderBench(cfg, progress=say)
        runs = run_methods(bench, cfg, work, list(args.methods))
        points, refs = evaluate(bench, runs, cfg, work, clock_t1)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    import torch

    from experiments.studies.benchmark_smollm2_cpu.measure import SCORER

    cost = run_costs(runs)
    doc: dict[str, Any] = {
        "config": cfg.to_dict(), "mode": "quick" if args.quick else "full",
        "mode_note": args.label or ("tiny-llama with random weights: checks the pipeline, not the method."
                                    if args.quick else ""),
        "command": shlex.join(["python", "-m", MODULE, *args.argv]), "started": started,
        "finished": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": {**host(), "cores": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "loadavg_before": load0, "loadavg_after": loadavg(), "torch": torch.__version__,
                    "onnxruntime": ort_version()},
        "tables": {b: table_info(t) for b, t in tables.items()},
        "measure": {"clock_t1": clock_t1, "samples_per_point": cfg.measure.rounds * cfg.measure.repeats},
        "scorer": SCORER,
        "block_importance": runs["baselines"].extra.get("block_importance"),
        "references": refs, "points": points,
    }
    doc["summary"] = summarize(points, cost, doc["config"], refs)
    doc["mode"] = run_mode(doc)
    write_json(out / f"{name}.json", doc, default=str)  # first: the report can be redone
    from experiments.studies.benchmark_smollm2_cpu.report import write_report_files

    files = write_report_files(doc, out, name)
    say("wrote " + ", ".join(str(p) for p in files.values()))
    for t in doc["summary"]["targets"]:
        say(f"target {'met' if t['met'] else 'MISSED'}: {t['target']}: {t['value']:.3g} ({t['detail']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny-llama, its shipped tables, seconds per method (tests)")
    ap.add_argument("--budget-minutes", type=float, default=None, help="wall clock per search method (config default)")
    ap.add_argument("--out", default=None, help=f"report folder (default {REPORTS.relative_to(ROOT)})")
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--name", default=None, help="report file stem (default smollm2_cpu, smollm2_cpu_quick with --quick)")
    ap.add_argument("--work", default=None, help="keep subnets, studies and ONNX files here (default: a temp folder)")
    ap.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--report-only", metavar="JSON", help="rewrite the report (md, png) from a run's JSON")
    ap.add_argument("--label", default=None, help="a note printed at the top of the report (e.g. 'reduced budget')")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)

    from nas.errors import NASError

    try:
        if args.report_only:
            from experiments.studies.benchmark_smollm2_cpu.analysis import summarize
            from experiments.studies.benchmark_smollm2_cpu.report import write_report_files

            src = Path(args.report_only)
            doc = json.loads(src.read_text())
            for b, t in doc["tables"].items():  # runs before the device was recorded: from the installed table
                if "device" not in t:
                    from nas.latency.table import load_table

                    t["device"] = table_info(load_table(doc["config"]["latency_tables"][b]))["device"]
            doc["mode"] = run_mode(doc)
            doc["summary"] = summarize(doc["points"], doc["summary"]["cost"], doc["config"], doc.get("references") or {})
            files = write_report_files(doc, Path(args.out) if args.out else src.parent, args.name or src.stem)
            say("wrote " + ", ".join(str(p) for p in files.values()))
            return 0
        return run(args)
    except NASError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

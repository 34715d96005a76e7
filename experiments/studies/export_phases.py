"""TTFT and TPOT of exported decoder folders, measured side by side as the SmolLM2 benchmark measures its points.

    PYTHONPATH=. .venv/bin/python -m experiments.studies.export_phases LABEL=FOLDER [LABEL=FOLDER ...] \
        --baseline LABEL [--threads 1 2] [--rounds 5] [--out STEM]

Each folder's deployed graph (``model.quant.onnx``, else ``model.onnx``) runs a prefill of the benchmark's
prompt (128 tokens, TTFT) and one decode step after its context (256 cached tokens, TPOT), every graph and
phase interleaved in the same rounds (:func:`experiments.studies.benchmark_smollm2_cpu.measure.measure_phases`,
the benchmark's protocol and clock), with each table's calibration models alongside at 1 thread; each
folder's speedup over ``--baseline`` is the ratio of medians from the same rounds, and where the folder
carries its subnet (a ``nas export`` folder) the benchmark's tables' prediction sits beside its measurement
(raw and reference-normalised error).

Writes ``STEM.{md,json}`` (default ``experiments/reports/export_phases``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from experiments.studies.report_files import md_table, write_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "experiments" / "reports" / "export_phases"


def parse_folders(items: list[str]) -> dict[str, Path]:
    """``{label: folder}`` from ``LABEL=FOLDER`` arguments, in order.

    Raises:
        SystemExit: an argument without ``=``, a repeated label, or a folder without a graph.
    """
    out: dict[str, Path] = {}
    for it in items:
        label, sep, folder = it.partition("=")
        if not sep or not label:
            raise SystemExit(f"{it!r}: give LABEL=FOLDER")
        if label in out:
            raise SystemExit(f"{label!r}: label given twice")
        if graph_of(Path(folder)) is None:
            raise SystemExit(f"{folder}: no model.quant.onnx or model.onnx")
        out[label] = Path(folder)
    return out


def graph_of(folder: Path) -> Path | None:
    """The folder's deployed graph: ``model.quant.onnx``, else ``model.onnx`` (None: neither)."""
    for name in ("model.quant.onnx", "model.onnx"):
        if (folder / name).is_file():
            return folder / name
    return None


def subnet_of(folder: Path) -> Any:
    """The folder's subnet (a ``nas export`` folder carries it; the benchmark's scored folders do not): None without."""
    from nas.errors import NASError
    from nas.supernet.derive import load_subnet

    try:
        return load_subnet(folder)
    except (NASError, OSError):
        return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    from experiments.studies.benchmark_minilm_cpu.run import host, loadavg, ort_version
    from experiments.studies.benchmark_smollm2_cpu.config import DEFAULT_CONFIG, PHASES, DecoderBenchConfig
    from experiments.studies.benchmark_minilm_cpu.config import load_config
    from experiments.studies.benchmark_smollm2_cpu.measure import measure_phases
    from experiments.studies.benchmark_smollm2_cpu.run import check_tables, table_clock, table_info
    from nas.latency import latency_ms

    folders = parse_folders(args.folders)
    if args.baseline not in folders:
        raise SystemExit(f"--baseline: {args.baseline!r} is not one of {', '.join(folders)}")
    cfg = load_config(DEFAULT_CONFIG, quick=args.quick, cls=DecoderBenchConfig)
    tables = check_tables(cfg)
    m = cfg.measure if args.rounds is None else type(cfg.measure)(**{**vars(cfg.measure), "rounds": args.rounds})
    subnets = {k: subnet_of(f) for k, f in folders.items()}
    vocab = {json.loads((f / "generation.json").read_text())["vocab_size"] for f in folders.values()}
    if len(vocab) != 1:
        raise SystemExit(f"folders: graphs of different vocabularies {sorted(vocab)}")
    vocab = vocab.pop()
    load0 = loadavg()
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    stats, refs = measure_phases({k: graph_of(f) for k, f in folders.items()}, tables=tables, threads=args.threads,
                                 m=m, clock_t1=table_clock(tables), vocab=vocab)
    rows = []
    for k, f in folders.items():
        sub = subnets[k]
        row: dict[str, Any] = {"label": k, "folder": str(f), "graph": graph_of(f).name,
                               "size_mb": graph_of(f).stat().st_size / 1e6, "phases": {}}
        for b in PHASES:
            pred = None if sub is None else latency_ms(tables[b], sub.space, sub.arch)
            ph: dict[str, Any] = {"predicted_ms": pred}
            for t in args.threads:
                st = stats[k][b][f"t{t}"]
                base = stats[args.baseline][b][f"t{t}"]["median_ms"]
                ph[f"t{t}"] = {"median_ms": st["median_ms"], "iqr_ms": st["iqr_ms"],
                               "speedup_vs_baseline": base / st["median_ms"]}
            t1 = ph.get("t1")
            if t1 and pred is not None:
                ph["raw_error"] = (pred - t1["median_ms"]) / t1["median_ms"]
                r = (refs.get(b) or {}).get("ratio")
                if r:
                    ph["normalised_error"] = (pred * r - t1["median_ms"]) / t1["median_ms"]
            row["phases"][b] = ph
        rows.append(row)
    return {"command": shlex.join(["python", "-m", "experiments.studies.export_phases", *args.argv]),
            "started": started, "finished": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "machine": {**host(), "cores": os.cpu_count(), "loadavg_before": load0, "loadavg_after": loadavg(),
                        "onnxruntime": ort_version()},
            "baseline": args.baseline, "threads": list(args.threads),
            "measure": {**vars(m), "clock_t1": table_clock(tables)},
            "tables": {b: table_info(t) for b, t in tables.items()}, "references": refs, "rows": rows}


def markdown(doc: dict[str, Any]) -> str:
    m, ms = doc["machine"], doc["measure"]
    lines = ["# TTFT and TPOT of exported decoders, side by side", "",
             f"`{doc['command']}` — {doc['started']} to {doc['finished']} UTC, {m.get('cpu')} ({m.get('fingerprint')}), "
             f"{m['cores']} cores, onnxruntime {m.get('onnxruntime')}, load average {m['loadavg_before']} before, "
             f"{m['loadavg_after']} after.", "",
             f"Every graph and phase interleaved: prefill of {ms['prompt_tokens']} tokens (TTFT), one decode step "
             f"after {ms['context']} cached tokens (TPOT); {ms['warmup']} warm-up, {ms['rounds']} rounds × "
             f"{ms['repeats']} repeats, median (IQR) ms, clock `{ms['clock_t1']}` at 1 thread. Speedup: the "
             f"baseline's (`{doc['baseline']}`) median over the graph's, same rounds. Predicted: the benchmark's "
             "tables (" + ", ".join(f"`{t['id']}`" for t in doc["tables"].values()) + "); error raw, and normalised "
             "by the tables' own models measured alongside.", ""]
    for t in doc["threads"]:
        rows = []
        for r in doc["rows"]:
            cells = [r["label"], f"{r['size_mb']:.0f}"]
            for b, ph in r["phases"].items():
                s = ph[f"t{t}"]
                cells += [f"{s['median_ms']:.2f} ({s['iqr_ms']:.2f})", f"{s['speedup_vs_baseline']:.2f}×"]
                if t == 1:
                    cells += (["–", "–"] if ph["predicted_ms"] is None else
                              [f"{ph['predicted_ms']:.2f}", f"{ph.get('normalised_error', float('nan')):+.1%} "
                               f"(raw {ph['raw_error']:+.1%})"])
            rows.append(cells)
        head = ["graph", "MB"]
        for b in doc["rows"][0]["phases"]:
            head += [f"{b} t{t}", "speedup"] + (["predicted", "error"] if t == 1 else [])
        lines += [f"**{t} thread{'s' if t > 1 else ''}**", "", *md_table(head, rows), ""]
    lines += ["Folders: " + "; ".join(f"`{r['label']}` {r['folder']}" for r in doc["rows"]) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("folders", nargs="+", metavar="LABEL=FOLDER", help="export folders (nas export's layout)")
    ap.add_argument("--baseline", required=True, help="the label speedups are relative to")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--quick", action="store_true", help="tiny-llama folders: the benchmark's quick tables and shapes")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default: the benchmark's)")
    ap.add_argument("--out", default=str(REPORT), help="report stem")
    args = ap.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    doc = run(args)
    write_report(args.out, doc, markdown(doc))
    print(f"[export phases] wrote {args.out}.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

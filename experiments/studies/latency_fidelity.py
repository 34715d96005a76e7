"""Benchmark: reference-normalised and raw latency fidelity of the shipped tables, per phase, in one report.

One command::

    PYTHONPATH=. .venv/bin/python experiments/studies/latency_fidelity.py --samples 50

measures ``--samples`` random subnets of each table (:func:`nas.latency.validate.validate_table`:
derived, exported and quantized like ``nas export``, measured interleaved in groups together with
``--references`` of the table's calibration models):

* ``smollm2-135m`` prefill (``latency_luts/smollm2-135m.onnxruntime-cpu.t1.b1.s128``) and decode
  (``...t1.b1.c256.decode``): the same architectures (same seed), each generation graph exported and
  quantized once and run at both shapes;
* ``minilm-l6`` at 1 thread, the table that fits this host (``load_table`` picks
  ``latency_luts/<fingerprint>/`` when there is one).

It writes ``experiments/reports/latency_fidelity.{md,json}`` and one scatter PNG per table, after
each table (a cut-off run keeps what it measured). Per table: within ±10 %, Spearman, MAPE,
normalised (primary: prediction × the group's reference ratio) and raw; the reference ratios per
group; loadavg before/after; the command, host fingerprint and date. Post hoc (no new
measurement), every calibration form is refitted on the table's calibration models and judged on
the same subnets, raw and normalised (the lever of issue 30).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments.studies.report_files import md_table, write_report  # noqa: E402
from nas.latency.builder import backend_for  # noqa: E402
from nas.latency.device import device_info  # noqa: E402
from nas.latency.table import load_table  # noqa: E402
from nas.latency.validate import scatter_plot, validate_table  # noqa: E402
from nas.spaces import load_space  # noqa: E402
from nas.supernet import Supernet  # noqa: E402

REPORTS = ROOT / "experiments" / "reports"
TABLES = {  # report key: shipped table name (run in this order: the cheap ones first, decode exports the graphs)
    "minilm": "minilm-l6.onnxruntime-cpu.t1.b1.s128",
    "smollm2-decode": "smollm2-135m.onnxruntime-cpu.t1.b1.c256.decode",
    "smollm2-prefill": "smollm2-135m.onnxruntime-cpu.t1.b1.s128",
}
TARGETS = {"within_10pct": 0.95, "spearman": 0.98}
ANCHORS = ("nn-Meter 99 % within ±10 % (CNN kernels, mobile CPUs/GPUs); LitePred 98.9 % within ±10 %; "
           "GenZ 5.8 % mean error (LLM inference, analytical); Vidur < 9 % error (LLM serving, operator profiles)")


class SharedGenerationExports:
    """Export and quantize each decoder subnet's generation graph once; run it at each table's shape.

    A prefill and a decode table of one decoder time the same graph (``nas export``'s) at two
    shapes, so their validation can share the costly part. ``runner(table)`` is a
    :func:`validate_table` ``prepare`` for one table; every table must quantize int4 alike.
    """

    def __init__(self, net: Any, folder: Path) -> None:
        self.net, self.folder, self.paths = net, folder, {}

    def runner(self, table: Any):
        from nas.runtime.decoder_onnx import decoder_bits_by_node, export_decoder_onnx, int8_nbits_nodes, step_inputs
        from nas.runtime.quantize import quantize_onnx
        from nas.spaces.summary import format_arch
        from nas.supernet.derive import derive

        backend = backend_for(table)

        def prepare(arch):
            sub = derive(self.net, arch)
            key = (format_arch(self.net.space, arch), backend.accuracy_level)
            if key not in self.paths:
                d = self.folder / str(len(self.paths))
                d.mkdir(parents=True)
                fp32 = export_decoder_onnx(sub.model, d / "fp32.onnx")
                quant = {k: b for k, b in decoder_bits_by_node(sub).items() if b < 32}
                path = quantize_onnx(fp32, d / "quant.onnx", quant, accuracy_level=backend.accuracy_level,
                                     int8_nbits=int8_nbits_nodes(quant)) if quant else fp32
                if path != fp32:
                    fp32.unlink()
                    for extra in d.glob("fp32.onnx*"):
                        extra.unlink()
                self.paths[key] = path
            feeds = step_inputs(sub.model, batch=table.batch, new=table.seq, context=table.context)
            return backend.runner_for(self.paths[key], feeds)

        return prepare


def quartiles(values: list[float]) -> list[float]:
    q = statistics.quantiles(values, n=4, method="inclusive")
    return [q[0], statistics.median(values), q[2]]


def calibration_forms(table: Any, space: Any, rep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every calibration form fitted on the table's calibration models, judged raw and normalised on ``rep``'s subnets.

    The lever: does another form (e.g. one with a per-layer or per-precision term) fit the random
    subnets better than the table's chosen one? No new measurement.
    """
    import numpy as np
    from scipy.stats import spearmanr

    from nas.latency.calibration import FORMS, fit_form, form_of, make_rows, usable_forms
    from nas.latency.predictor import raw_by_bits, raw_latency_ms
    from nas.spaces.summary import parse_arch

    def rows(archs, measured):
        return make_rows([raw_latency_ms(table, space, a) for a in archs], [len(space.kept_layers(a)) for a in archs],
                         measured, [raw_by_bits(table, space, a) for a in archs])

    models = table.calibration["models"]
    fit_rows = rows([parse_arch(space, m["arch"]) for m in models], [m["measured_ms"] for m in models])
    subs = rep["subnets"]
    test = rows([parse_arch(space, r["arch"]) for r in subs], [r["measured_ms"] for r in subs])
    ratio = np.array([r["ratio"] if r.get("ratio") else 1.0 for r in subs])
    out = {}
    for form in (f for f in FORMS if f in usable_forms(fit_rows)):
        pred = test.predict(fit_form(form, fit_rows))
        raw = (pred - test.y) / test.y
        norm = (pred * ratio - test.y) / test.y
        out[form] = {"loo_mape": (table.calibration.get("loo_mape") or {}).get(form),
                     "chosen": form == form_of(table.calibration),
                     "normalised": {"mape": float(np.abs(norm).mean()), "within_10pct": float((np.abs(norm) <= 0.1).mean()),
                                    "mean_signed": float(norm.mean()),
                                    "spearman": float(spearmanr(pred * ratio, test.y).statistic)},
                     "raw": {"mape": float(np.abs(raw).mean()), "within_10pct": float((np.abs(raw) <= 0.1).mean()),
                             "mean_signed": float(raw.mean())}}
    return out


def size_matched(rep: dict[str, Any]) -> dict[str, float] | None:
    """Lever (post hoc, same measurements): each subnet's ratio interpolated by size instead of the group median.

    Within its group, the references' measured/recorded ratios are interpolated linearly in
    log(recorded latency) at log(the subnet's prediction), clamped to the end references. Under
    contention a longer call is preempted more often, so the ratio grows with model size; the median
    ratio of the rule misses that. Returns :func:`~nas.latency.validate.agreement`'s figures, or None
    without references.
    """
    import math

    from nas.latency.validate import agreement

    refs = rep.get("references")
    if not refs:
        return None
    rec = [m["recorded_ms"] for m in refs["models"]]
    pred, meas = [], []
    for g in refs["groups"]:
        pts = sorted(zip((math.log(x) for x in rec), g["ratios"]))
        for r in rep["subnets"][g["subnets"][0]:g["subnets"][1] + 1]:
            x = math.log(r["predicted_ms"])
            if x <= pts[0][0]:
                ratio = pts[0][1]
            elif x >= pts[-1][0]:
                ratio = pts[-1][1]
            else:
                (x0, y0), (x1, y1) = next((a, b) for a, b in zip(pts, pts[1:]) if a[0] <= x <= b[0])
                ratio = y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y0
            pred.append(r["predicted_ms"] * ratio)
            meas.append(r["measured_ms"])
    return agreement(pred, meas)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=50, help="random subnets per table (default 50)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--references", type=int, default=4, help="calibration models measured in every group (default 4)")
    ap.add_argument("--group", type=int, default=10, help="subnets per interleaved group (default 10)")
    ap.add_argument("--tables", nargs="+", choices=list(TABLES), default=list(TABLES),
                    help="which tables (default all; the others keep their previous results)")
    ap.add_argument("--rounds", nargs="*", default=[], metavar="TABLE=N",
                    help="interleaved rounds per group for a table, e.g. smollm2-prefill=10 (default: the table's)")
    ap.add_argument("--clock", nargs="*", default=[], metavar="TABLE=CLOCK",
                    help="time a table's subnets with another clock, e.g. minilm=thread-cpu (reported under "
                         "TABLE.CLOCK; default: the table's)")
    ap.add_argument("--out", default=str(REPORTS / "latency_fidelity"))
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from the JSON")
    args = ap.parse_args()
    rounds = {k: int(v) for k, v in (x.split("=") for x in args.rounds)}
    clocks = {k: v for k, v in (x.split("=") for x in args.clock)}
    if args.report_only:
        import json

        doc = json.loads(Path(f"{args.out}.json").read_text())
        for rep in doc["results"].values():  # post hoc figures follow the current code
            table = load_table(ROOT / rep["table"])
            rep["calibration_forms"] = calibration_forms(table, load_space(table.space_name), rep)
        write_report(args.out, doc, render_md(doc))
        print(render_md(doc))
        return 0
    command = "PYTHONPATH=. .venv/bin/python experiments/studies/latency_fidelity.py " + " ".join(sys.argv[1:])
    prev = Path(f"{args.out}.json")
    import json

    doc = json.loads(prev.read_text()) if prev.is_file() else {}
    doc.pop("commands", None)  # a hand-merged list of earlier runs' commands no longer applies
    doc.update({"command": command, "device": device_info(), "targets": TARGETS, "anchors": ANCHORS,
                "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")})
    results = doc.setdefault("results", {})
    nets: dict[str, Any] = {}
    folder = Path(tempfile.mkdtemp(prefix="latency_fidelity_"))
    shared: dict[str, SharedGenerationExports] = {}
    try:
        for key in args.tables:
            table = load_table(TABLES[key])
            space = load_space(table.space_name)
            if space.name not in nets:
                nets[space.name] = Supernet.build(space)
            prepare = None
            if table.has_head:  # a decoder's generation graph: shared between its phases
                shared.setdefault(space.name, SharedGenerationExports(nets[space.name], folder / space.name))
                prepare = shared[space.name].runner(table)
            print(f"== {key}: {table.path} ({args.samples} subnets)", file=sys.stderr, flush=True)
            t0 = time.time()
            rep = validate_table(table, samples=args.samples, seed=args.seed, group=args.group,
                                 rounds=rounds.get(key), references=args.references, supernet=nets[space.name],
                                 prepare=prepare, clock=clocks.get(key), log=sys.stderr)
            if clocks.get(key) and clocks[key] != (table.protocol or {}).get("clock"):
                key = f"{key}.{clocks[key]}"
            rep.update(key=key, command=command, fingerprint=device_info()["fingerprint"],
                       table_fingerprint=table.device.get("fingerprint"), table_created=table.created,
                       table_clock=(table.protocol or {}).get("clock"),
                       date=_dt.datetime.fromtimestamp(t0, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                       abs_error_quartiles={k: quartiles([abs(r[e]) for r in rep["subnets"]])
                                            for k, e in (("normalised", "normalised_error"), ("raw", "error"))
                                            if rep[k] is not None},
                       measurement_rel_iqr_quartiles=quartiles([r["iqr_ms"] / r["measured_ms"] for r in rep["subnets"]]),
                       calibration_forms=calibration_forms(table, space, rep))
            png = Path(f"{args.out}.{key}.png")
            scatter_plot(rep, png)
            rep["plot"] = png.name
            results[key] = rep
            write_report(args.out, doc, render_md(doc))
            n, r = rep["normalised"] or {}, rep["raw"]
            print(f"{key}: normalised within10 {n.get('within_10pct', float('nan')):.0%} spearman "
                  f"{n.get('spearman', float('nan')):.3f} MAPE {n.get('mape', float('nan')):.1%}; raw within10 "
                  f"{r['within_10pct']:.0%} spearman {r['spearman']:.3f} MAPE {r['mape']:.1%}; {rep['seconds']} s",
                  file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(render_md(doc))
    return 0


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


def render_md(doc: dict[str, Any]) -> str:
    dev = doc["device"]
    lines = ["# Latency fidelity: reference-normalised and raw, per phase", "",
             *(f"Command: `{c}`  " for c in doc.get("commands") or [doc["command"]]),
             f"Host: {dev['cpu']}, {dev['cores']} cores, fingerprint `{dev['fingerprint']}`; run started {doc['date']}.",
             "",
             "Each table is checked on random subnets of its space (uniform over width, depth and per-layer "
             "fp32/int8/int4), each derived, exported to ONNX and quantized like `nas export`, measured interleaved "
             "in groups under the table's protocol. In every group a few of the table's own calibration models "
             "(whole subnets whose latency the table recorded when it was built) are measured in the same rounds; "
             "the group's **reference ratio** r = median(measured / recorded) says how much slower the machine "
             "runs now than at build time. **Normalised** error = (predicted·r − measured)/measured (primary); "
             "**raw** error = (predicted − measured)/measured (beside it).", "",
             f"Targets: ≥ {TARGETS['within_10pct']:.0%} of subnets within ±10 % (normalised) and Spearman ≥ "
             f"{TARGETS['spearman']}, per table. Anchors: {doc['anchors']}.", ""]
    rows = []
    for key, r in doc["results"].items():
        n, raw = r["normalised"] or {}, r["raw"]
        ok = (n.get("within_10pct", 0) >= TARGETS["within_10pct"] and n.get("spearman", 0) >= TARGETS["spearman"])
        rows.append([key, r["phase"], r["samples"], _pct(n.get("within_10pct")), f"{n.get('spearman', float('nan')):.3f}",
                     _pct(n.get("mape")), _pct(n.get("max_abs_pct")), _pct(raw["within_10pct"]),
                     f"{raw['spearman']:.3f}", _pct(raw["mape"]), _pct(raw["mean_signed_pct"]),
                     "yes" if ok else "no"])
    lines += md_table(["table", "phase", "subnets", "**norm. within ±10 %**", "**norm. Spearman**", "**norm. MAPE**",
                       "norm. max", "raw within ±10 %", "raw Spearman", "raw MAPE", "raw mean signed", "targets met"],
                      rows)
    if doc.get("notes"):  # written by hand into the JSON after a run, kept by later runs
        lines += ["", "## Findings", "", *(f"- {x}" for x in doc["notes"])]
    lines += ["", "## Per table", ""]
    for key, r in doc["results"].items():
        refs = r["references"] or {"groups": [], "models": [], "count": 0}
        n = r["normalised"] or {}
        lines += [f"### {key}: `{r['table']}`", "",
                  f"- {r['phase']}" + (f", 1 token after {r['context']} cached" if r["phase"] == "decode"
                                       else f", {r['seq']} tokens") + f", {r['threads']} thread, clock {r['clock']} "
                  f"(table's {r['table_clock']}), {r['rounds']} rounds × {r['repeats']} repeats per group; table built "
                  f"{r['table_created']} on `{r['table_fingerprint']}`.",
                  f"- measured {r['date']}, {r['seconds']:.0f} s; loadavg before {r['loadavg_before']} → after "
                  f"{r['loadavg_after']}; noisy measurements (IQR/median above the protocol's threshold): "
                  f"{r['noisy_measurements']} of {r['samples']}.",
                  f"- normalised: within ±10 % {_pct(n.get('within_10pct'))}, Spearman {n.get('spearman', float('nan')):.3f}, "
                  f"Kendall {n.get('kendall', float('nan')):.3f}, MAPE {_pct(n.get('mape'))}, mean signed "
                  f"{_pct(n.get('mean_signed_pct'))}, max {_pct(n.get('max_abs_pct'))}; |error| quartiles "
                  + ", ".join(_pct(x) for x in r["abs_error_quartiles"].get("normalised", [])) + ".",
                  f"- raw: within ±10 % {_pct(r['raw']['within_10pct'])}, Spearman {r['raw']['spearman']:.3f}, "
                  f"Kendall {r['raw']['kendall']:.3f}, MAPE {_pct(r['raw']['mape'])}, mean signed "
                  f"{_pct(r['raw']['mean_signed_pct'])}, max {_pct(r['raw']['max_abs_pct'])}; |error| quartiles "
                  + ", ".join(_pct(x) for x in r["abs_error_quartiles"]["raw"]) + ".",
                  f"- measurement IQR/median quartiles: " + ", ".join(_pct(x) for x in r["measurement_rel_iqr_quartiles"])
                  + f". Scatter: `{r['plot']}`.",
                  f"- references ({refs['count']}): " + "; ".join(f"`{m['arch']}` recorded {m['recorded_ms']:.3g} ms"
                                                                  for m in refs["models"]) + ".", ""]
        lines += md_table(["group (subnets)", "reference ratio r", "per reference measured/recorded"],
                          [[f"{g['subnets'][0]}–{g['subnets'][1]}", f"{g['ratio']:.3f}",
                            ", ".join(f"{x:.3f}" for x in g["ratios"])] for g in refs["groups"]])
        sm = size_matched(r)
        if sm:
            lines += ["", f"Lever, size-matched ratio (post hoc, same measurements; each subnet's ratio interpolated in "
                      f"log latency between the group's references instead of their median): within ±10 % "
                      f"{_pct(sm['within_10pct'])}, Spearman {sm['spearman']:.3f}, MAPE {_pct(sm['mape'])}, mean signed "
                      f"{_pct(sm['mean_signed_pct'])}."]
        forms = r.get("calibration_forms") or {}
        if forms:
            lines += ["", "Calibration forms refitted on the table's calibration models (post hoc, same measurements):",
                      ""]
            lines += md_table(["form", "leave-one-out MAPE (cal. models)", "norm. MAPE", "norm. within ±10 %",
                               "norm. Spearman", "norm. mean signed", "raw MAPE", "raw within ±10 %"],
                              [[f"**{f}** (table's)" if v["chosen"] else f, _pct(v["loo_mape"]),
                                _pct(v["normalised"]["mape"]), _pct(v["normalised"]["within_10pct"]),
                                f"{v['normalised'].get('spearman', float('nan')):.3f}",
                                _pct(v["normalised"]["mean_signed"]), _pct(v["raw"]["mape"]),
                                _pct(v["raw"]["within_10pct"])] for f, v in forms.items()])
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

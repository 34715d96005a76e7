"""Write the decoder benchmark's report: ``<name>.md`` (targets first), ``<name>.json`` and one front plot
per phase and thread count (the MiniLM benchmark's plot on each phase's view of the points)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.studies.benchmark_minilm_cpu.analysis import lat
from experiments.studies.benchmark_minilm_cpu.report import LABELS, phase_note, plot_fronts
from experiments.studies.benchmark_smollm2_cpu.analysis import view
from experiments.studies.benchmark_smollm2_cpu.config import PHASES
from experiments.studies.report_files import md_table, write_report

PHASE_TEXT = {"ttft_ms": "TTFT", "tpot_ms": "TPOT"}
# the scorer of runs that record none: rows of different items batched 16 at a time (lm_eval.choice_scores)
BATCHED = ("batched: 16 rows of different items per call (lm_eval.choice_scores; a quantized graph's dynamic int8 "
           "makes a row's scores depend on its batch)")


def _f(v: Any, spec: str = ".3g") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return format(v, spec)


def _mi(stats: Mapping[str, Any] | None, spec: str = ".2f") -> str:
    return "–" if not stats else f"{stats['median_ms']:{spec}} ({stats['iqr_ms']:{spec}})"


def plot_phase(doc: Mapping[str, Any], phase: str, path: Path, threads: int) -> Path:
    """Accuracy × measured ``phase`` latency: :func:`~experiments.studies.benchmark_minilm_cpu.report.plot_fronts`."""
    m = doc["config"]["measure"]
    shape = (f"prefill of {m['prompt_tokens']} tokens" if phase == PHASES[0]
             else f"1 token after {m['context']} cached")
    vdoc = {**doc, "points": [view(p, phase) for p in doc["points"]],
            "latency_label": f"measured {PHASE_TEXT[phase]}, ms (median; {shape}, {{threads}} thread(s))",
            "accuracy_label": "definition → word accuracy, % (held-out items, onnxruntime)",
            "summary": {"accuracy_reference": doc["summary"]["accuracy_reference"]}}
    return plot_fronts(vdoc, path, threads)


def device_sentence(doc: Mapping[str, Any]) -> str:
    """A warning when the tables were measured on another device than this run's host (else nothing)."""
    here = (doc.get("machine") or {}).get("fingerprint")
    other = {t["device"]["fingerprint"]: t["device"].get("cpu") for t in doc["tables"].values()
             if (t.get("device") or {}).get("fingerprint") not in (None, here)}
    if not other or not here:
        return ""
    return (" **The tables were measured on another device** (" + ", ".join(f"{c} `{f}`" for f, c in other.items())
            + f") than this host (`{here}`): the reference-normalised fidelity removes a uniform speed ratio, not "
            "per-kernel differences between the two CPUs.")


def limits(doc: Mapping[str, Any]) -> list[str]:
    """What limits the missed targets, read off the run (one bullet each), with the change that would close it."""
    s, pts, out = doc["summary"], doc["points"], []
    ref = s["accuracy_reference"]["accuracy"]
    drop = doc["config"]["region"]["accuracy_drop_points"] / 100
    rows = {t["key"]: t for t in s["targets"]}
    best = {m: max((p for p in pts if p["method"] == m), key=lambda p: p["accuracy"], default=None)
            for m in ("dnas", "random", "nsga2")}
    within = [p["key"] for p in pts if p["accuracy"] >= ref - drop - 1e-12 and p["key"] != "baselines/full-fp32"]
    if not rows["tpot_speedup"]["met"]:
        q, trainer = s["best_quantized"], doc["config"]["trainer"]
        text = ", ".join(f"{m} {100 * p['accuracy']:.1f} % (`{p['name']}`)" for m, p in best.items() if p)
        cost = 100 * (ref - q["accuracy"])
        quant = (f"quantization alone already costs {cost:.1f} pt ({q['name']})" if cost >= 0 else
                 f"quantization alone ({q['name']}) scores {-cost:.1f} pt above full fp32 on these items")
        pruned = [k for k in within if k.startswith("baselines/") and not k.startswith("baselines/full-")]
        steps = (f"{trainer.get('finetune_steps')} distillation steps (`distill_text: "
                 f"{trainer.get('distill_text', 'glosses')}`)")
        why = (f"enough for the pruned baselines {', '.join(pruned)} to stay within {100 * drop:g} pt but not for "
               "any searched architecture" if pruned else "too few to recover a pruned decoder")
        change = ("more trials per method at this distillation budget (see Budget), or a search seeded with the "
                  "pruned structures that recovered" if pruned else
                  "a longer distillation (or the shared supernet of issue 31, trained once with the sandwich rule)")
        out.append(f"**Accuracy, not speed.** No searched point comes within {100 * drop:g} pt of full fp32 "
                   f"({100 * ref:.1f} %): the most accurate are {text}. Every point but the full model gets the same "
                   f"{steps}, {why}; {quant}. "
                   f"Points within {100 * drop:g} pt: {', '.join(within) or 'none'}. Change: {change}.")
    if any(not rows[f"hv_region_{b}_{o}"]["met"] for b in PHASES for o in ("nsga2", "random")):
        region = {b: sum(s["phases"][b]["hypervolume_region"].get(m, 0.0) for m in ("dnas", "random", "nsga2"))
                  for b in PHASES}
        if not any(region.values()):
            out.append("**The region is empty for every search method**: no searched point is both within the "
                       "accuracy drop and faster than the best quantize-only model, so its hypervolume ratios are "
                       "0/0; the whole-range ratios compare the fronts that exist.")
    if not rows["fidelity"]["met"]:
        ratios = s.get("reference_ratio") or {}
        fid = {b: s["phases"][b]["fidelity_front"]["normalised"] for b in PHASES}
        out.append("**Table fidelity**: front points within ±10 %, reference-normalised: "
                   + ", ".join(f"{PHASE_TEXT[b]} {_f(f.get('within_share'), '.0%')} (MAPE {_f(f.get('mape'), '.1%')})"
                               for b, f in fid.items())
                   + "; reference ratios " + ", ".join(f"{PHASE_TEXT[b]} {r:.3f}" for b, r in ratios.items())
                   + "." + (" The tables come from another CPU, whose kernels scale differently per precision "
                            "(a ratio far from 1 in one phase only): build both tables on the benchmark's host "
                            "(`nas lut build smollm2-135m --seq 128` and `--phase decode --context 256`)."
                            if device_sentence(doc) else ""))
    cost = s["cost"]
    out.append("**Budget**: " + ", ".join(f"{m} {cost[m]['trials']} trials in {cost[m]['wall_s']:.0f} s"
                                          for m in ("dnas", "random", "nsga2") if m in cost)
               + f" ({doc['config']['budget_minutes']:g} min each): too few for fronts to settle."
               + (f" DNAS{ph[1:]}." if (ph := phase_note((cost.get("dnas") or {}).get("phase_seconds"))) else ""))
    return out


def markdown(doc: Mapping[str, Any]) -> str:
    s, cfg, m = doc["summary"], doc["config"], doc["config"]["measure"]
    pts = doc["points"]
    drop = cfg["targets"].get("max_accuracy_drop_points", 1.0)
    q = s["best_quantized"]
    lines = [f"# {cfg['space']} on this CPU: search vs quantize-only and uniform pruning, per phase ({doc['mode']})", ""]
    if doc.get("mode_note"):
        lines += [f"**{doc['mode_note']}**", ""]
    mach = doc["machine"]
    lines += [
        f"Run {doc['started']} – {doc['finished']} UTC on {mach.get('cpu') or mach.get('processor')} "
        f"({mach['cores']} cores; load average {mach['loadavg_before']} before, {mach['loadavg_after']} after), "
        f"torch {mach['torch']}, onnxruntime {mach['onnxruntime']}. Command: `{doc['command']}`.", "",
        f"Every point is the generation graph `nas export` ships (KV cache in and out), run by onnxruntime: "
        f"definition → word accuracy on {cfg['test_items']} held-out items (4 parts of speech, chance 25 %; scorer "
        f"{doc.get('scorer', BATCHED)}), "
        f"perplexity of {cfg['ppl_glosses']} held-out glosses, TTFT = prefill of {m['prompt_tokens']} tokens, "
        f"TPOT = one decode step after {m['context']} cached tokens, each the median (IQR) of "
        f"{doc['measure']['samples_per_point']} samples, all graphs interleaved ({doc['measure']['clock_t1']} clock at "
        f"1 thread, wall at more). Tables: " + ", ".join(f"{PHASE_TEXT[b]} `{t['id']}`" for b, t in doc["tables"].items())
        + f". Each search method had {cfg['budget_minutes']:g} min of wall clock.{device_sentence(doc)}", "",
        "## Targets", "",
        *md_table(["target", "value", "goal", "met", "detail"],
                  [[t["target"], _f(t["value"]), _f(t["goal"]), "yes" if t["met"] else "**no**", t["detail"]]
                   for t in s["targets"]]), "",
        f"Accuracy reference: full fp32, {100 * s['accuracy_reference']['accuracy']:.1f} %. Best quantize-only full "
        f"model (lowest TPOT of int8 / int8-dynamic / int4): `{q['name']}`, accuracy {100 * q['accuracy']:.1f} %, TTFT "
        f"{q['ttft_ms']:.2f} ms, TPOT {q['tpot_ms']:.2f} ms (1 thread).", "",
        "## What limits it", "", *(f"- {line}" for line in limits(doc)), "",
        "## Hypervolume per phase", "",
        "Area dominated in (accuracy, latency / full fp32 latency). *Region*: above full fp32 accuracy − "
        f"{cfg['region']['accuracy_drop_points']:g} pt and faster than the best quantize-only full model in that phase "
        f"(what beats the user's free option); *whole*: reference ({cfg['reference']['accuracy']:g}, "
        f"{cfg['reference']['latency_fraction']:g}).", "",
    ]
    methods = list(s["phases"][PHASES[0]]["hypervolume"])
    rows = []
    for mth in methods:
        row = [LABELS.get(mth, mth)]
        for b in PHASES:
            ph = s["phases"][b]
            row += [_f(ph["hypervolume_region"][mth], ".4g"), _f(ph["hypervolume"][mth], ".4g")]
        c = s["cost"].get(mth, {})
        row += [str(c.get("trials", "–")), _f(c.get("wall_s"), ".0f")]
        rows.append(row)
    lines += md_table(["method", "TTFT region", "TTFT whole", "TPOT region", "TPOT whole", "trials", "wall s"], rows)
    lines += ["", "## Points (1 thread; 2 threads in the JSON)", ""]
    rows = []
    for p in sorted(pts, key=lambda p: (p["method"], lat(view(p, PHASES[1])))):
        pr = p.get("predicted") or {}
        rows.append([p["key"], p.get("arch_summary", ""), f"{100 * p['accuracy']:.1f}", _f(p["perplexity"], ".1f"),
                     _mi(p["latency"][PHASES[0]].get("t1"), ".1f"), _f(pr.get(PHASES[0]), ".1f"),
                     _mi(p["latency"][PHASES[1]].get("t1")), _f(pr.get(PHASES[1]), ".2f"), _f(p["size_mb"], ".1f")])
    lines += md_table(["point", "architecture", "acc %", "ppl", "TTFT ms (IQR)", "pred", "TPOT ms (IQR)", "pred", "MB"],
                      rows, compact=True)
    lines += ["", "## Latency tables on the front points", ""]
    rows = []
    for b in PHASES:
        ph = s["phases"][b]
        for which in ("fidelity_front", "fidelity_all"):
            for kind in ("normalised", "raw"):
                f = ph[which][kind]
                rows.append([PHASE_TEXT[b], "front" if which == "fidelity_front" else "all", kind, str(f.get("n", 0)),
                             _f(f.get("within_share"), ".0%"), _f(f.get("mape"), ".1%"), _f(f.get("spearman"), ".3f")])
    lines += md_table(["phase", "points", "error", "n", "within ±10 %", "MAPE", "Spearman"], rows)
    ratios = s.get("reference_ratio") or {}
    if ratios:
        lines += ["", "Reference ratio (measured / recorded latency of each table's calibration models, same rounds): "
                  + ", ".join(f"{PHASE_TEXT[b]} {r:.3f}" for b, r in ratios.items())
                  + "; the normalised error is (predicted·r − measured)/measured."]
    lines += ["", "## Budget hits (DNAS trials, 1 thread)", ""]
    rows = [[PHASE_TEXT[b], str(h.get("n", 0)), _f(h.get("predicted_hit_rate"), ".0%"), _f(h.get("measured_hit_rate"), ".0%"),
             _f(h.get("drift_corrected_hit_rate"), ".0%"), _f(h.get("within_10pct_of_target_rate"), ".0%")]
            for b in PHASES for h in [s["phases"][b]["budget_hits"]]]
    lines += md_table(["budget", "trials", "predicted ≤ T", "measured ≤ T", "reference-corrected ≤ T", "measured ≤ 1.1 T"], rows)
    bi = doc.get("block_importance") or {}
    if bi:
        lines += ["", f"Block importance (perplexity of {bi.get('items')} calibration items, full {bi['full']:.2f}) "
                  "with each layer dropped: " + ", ".join(f"{i}: {v:.1f}" for i, v in enumerate(bi["dropped"])) + "."]
    full = next((p for p in pts if p["key"] == "baselines/full-fp32"), None)
    if full and full.get("answer") is not None:
        lines += ["", f"Answer of full fp32 to “{cfg['prompt']}”: “{full['answer'].strip()}” (every point's in the JSON)."]
    lines += ["", f"Plots: " + ", ".join(f"`{{name}}.{b}.t{t}.png`" for b in PHASES for t in cfg["threads"]) + "."]
    return "\n".join(lines) + "\n"


def write_report_files(doc: dict[str, Any], out_dir: Path, name: str) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = write_report(out_dir / name, doc, markdown(doc).replace("{name}", name), default=str)
    files = {"json": js, "md": md}
    for b in PHASES:
        for t in doc["config"]["threads"]:
            files[f"{b}.t{t}"] = plot_phase(doc, b, out_dir / f"{name}.{b}.t{t}.png", t)
    return files

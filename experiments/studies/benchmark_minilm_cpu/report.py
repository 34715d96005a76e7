"""Write the benchmark report: ``<name>.md`` (summary table first), ``<name>.json`` and front plots (PNG)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.studies import report_files
from experiments.studies.benchmark_minilm_cpu.analysis import SEARCH_METHODS, front, lat, verdict
from nas.files import atomic_file

LABELS = {"dnas": "ours (DNAS, nas search)", "dnas_shared": "ours, one shared supernet per study",
          "random": "random search", "nsga2": "NSGA-II (Optuna)",
          "baselines": "user baselines"}
COLORS = {"dnas": "C3", "dnas_shared": "C1", "random": "C0", "nsga2": "C2", "baselines": "k"}


def plot_fronts(doc: Mapping[str, Any], path: Path, threads: int) -> Path:
    """All points faint, each search method's front as a step line, baselines as labelled markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = doc["points"]
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    for m in SEARCH_METHODS:
        mp = [p for p in pts if p["method"] == m]
        if not mp:
            continue
        ax.scatter([lat(p, threads) for p in mp], [100 * p["accuracy"] for p in mp], s=14, c=COLORS[m], alpha=0.3)
        f = front(mp, threads)
        ax.step([lat(p, threads) for p in f], [100 * p["accuracy"] for p in f], "-o", where="post", c=COLORS[m],
                ms=4, label=f"{LABELS[m]} front")
    for p in (p for p in pts if p["method"] == "baselines"):
        marker = "s" if "int8" in p["name"] else "^"
        ax.scatter([lat(p, threads)], [100 * p["accuracy"]], marker=marker, c="k", s=30)
        ax.annotate(p["name"], (lat(p, threads), 100 * p["accuracy"]), textcoords="offset points", xytext=(4, -10),
                    fontsize=7)
    ref = doc["summary"].get("accuracy_reference")
    if ref:
        drop = doc["config"]["targets"].get("max_accuracy_drop_points", 1.0)
        ax.axhline(100 * ref["accuracy"] - drop, ls=":", c="0.4", lw=1,
                   label=f"{ref['name']} − {drop:g} pt (the targets' bar)")
    ax.set_xscale("log")
    ax.set_xlabel(doc.get("latency_label", "measured latency, ms (median; batch 1, seq {seq}, {threads} thread(s))")
                  .format(seq=doc["config"]["measure"].get("seq"), threads=threads))
    ax.set_ylabel(doc.get("accuracy_label", "test accuracy, % (WordNet nouns, onnxruntime)"))
    ax.set_title(f"{doc['config']['space']}: accuracy × measured latency ({doc['mode']})", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    try:
        with atomic_file(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return path


def _f(v: Any, spec: str = ".3g") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return format(v, spec)


def phase_note(phases: Mapping[str, float] | None) -> str:
    """``; median trial: search 2.9 s, ...`` from a DNAS method's ``phase_seconds`` medians ("" without them).

    Example:
        >>> phase_note({"search": 2.91, "eval_before": 2.2, "finetune": 8.04})
        '; median trial: search 2.9 s, eval_before 2.2 s, finetune 8.0 s'
    """
    if not phases:
        return ""
    return "; median trial: " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())


def _runtime(version: str | None, doc: Mapping[str, Any], *, sep: str = " ") -> str:
    """``onnxruntime X (the table was measured with Y)``, or nothing when the run did not record it."""
    if not version:
        return ""
    built = (doc.get("latency_table") or {}).get("runtime_version")
    return (f"{sep}onnxruntime {version}" + (f" (the table was measured with {built})" if built and built != version
                                            else "") + ("." if sep == " " else ""))


def markdown(doc: Mapping[str, Any]) -> str:
    s, cfg = doc["summary"], doc["config"]
    ths = cfg["threads"]
    L: list[str] = []
    L.append(f"# Benchmark: MiniLM on this CPU — does the search beat what a user would do instead? ({doc['mode']})")
    L.append("")
    if doc["mode"] != "full" or doc.get("mode_note"):
        L.append(f"> **{doc['mode']} run.** {doc['mode_note']}" if doc["mode"] != "full" else f"> {doc['mode_note']}")
        L.append("")
    L.append(f"Command: `{doc['command']}` — {doc['started']} → {doc['finished']} UTC. "
             f"Machine: {doc['machine']['cpu']} ({doc['machine']['cores']} cores), load average "
             f"{doc['machine']['loadavg_before']} before / {doc['machine']['loadavg_after']} after; "
             f"{doc['machine']['note']}" + _runtime(doc["machine"].get("onnxruntime"), doc))
    r = doc.get("measure", {}).get("remeasured")
    if r:
        L.append("")
        L.append(f"Latencies re-measured at {r['at']} UTC from the run's artifacts (`--remeasure`, {r['rounds']} "
                 f"rounds; load average {r.get('loadavg_before') or '–'} before / {r.get('loadavg_after') or '–'} after"
                 f"{_runtime(r.get('onnxruntime'), doc, sep='; ')}): the run's own measurement was taken at a "
                 "noisy moment. Accuracies, trials and costs are the run's.")
    L.append("")
    L.append("## Summary")
    L.append("")
    region = s.get("hypervolume_region")
    ref = s.get("accuracy_reference") or {"name": "teacher"}
    beside = ref["name"] != "teacher" and "speedup_vs_teacher" in s  # the frozen teacher's column
    drop = cfg["targets"].get("max_accuracy_drop_points", 1.0)
    L.append("| method | trials (failed) | wall clock s | points on front | hypervolume (whole range) | "
             + ("hypervolume (region beating teacher int8) | " if region is not None else "")
             + f"best accuracy % | fastest point within {drop:g} pt of {ref['name']}: speed-up vs teacher int8 |"
             + (f" the same within {drop:g} pt of the frozen teacher |" if beside else ""))
    L.append("| --- | --- | --- | --- | --- | " + ("--- | " if region is not None else "") + "--- | --- |"
             + (" --- |" if beside else ""))

    def speedup_cell(sp: Mapping[str, Any] | None) -> str:
        return (_f(sp["speedup"], ".2f") + "× (" + sp["name"] + ")") if sp else "–"

    for m in (*SEARCH_METHODS, "baselines"):
        if m == "dnas_shared" and m not in s["cost"]:
            continue
        c = s["cost"].get(m, {})
        L.append(f"| {LABELS[m]} | {c.get('trials', '–')} ({c.get('failed', 0)}) | {_f(c.get('wall_s'), '.0f')} | "
                 f"{s['front_sizes'].get(m, 0)} | {_f(s['hypervolume'].get(m), '.4f')} | "
                 + (f"{_f(region.get(m), '.4f')} | " if region is not None else "") +
                 f"{_f(100 * s['best_accuracy'][m] if m in s['best_accuracy'] else None, '.2f')} | "
                 f"{speedup_cell(s['speedup'].get(m))} |"
                 + (f" {speedup_cell(s['speedup_vs_teacher'].get(m))} |" if beside else ""))
    L.append("")
    if beside:
        L.append(reference_sentence(s, drop))
        L.append("")
    frozen = any("vs_frozen_teacher" in t for t in s["targets"])
    L.append("| target | goal | value | met | detail |" + (" vs frozen teacher |" if frozen else ""))
    L.append("| --- | --- | --- | --- | --- |" + (" --- |" if frozen else ""))
    for t in s["targets"]:
        said = verdict(t)
        miss = f" (short by {_f(-t['gap'])})" if said == "missed" and t["gap"] is not None else ""
        v = t.get("vs_frozen_teacher")
        L.append(f"| {t['target']} | {_f(t['goal'])} | {_f(t['value'])} | {'**missed**' if said == 'missed' else said}"
                 f"{miss} | {t['detail']} |"
                 + ((f" {_f(v['value'])}, {'met' if v['met'] else 'missed'} ({v['detail']}) |" if v else " same |")
                    if frozen else ""))
    L.append("")
    if s.get("limits"):
        L.append("What limits the missed targets: " + " ".join(s["limits"]))
        L.append("")
    L.append(f"Plots: " + ", ".join(f"[{Path(p).name}]({Path(p).name})" for p in doc["plots"]))
    L.append("")
    L.append("## How to read this")
    L.append("")
    L.append(
        "* Every **point** is a deployed artifact: an ONNX file run by onnxruntime (CPU). Searched subnets are "
        "exported and quantized per layer exactly like `nas export` (`quantize_onnx`); user baselines use "
        "onnxruntime's `quantize_dynamic` with its defaults (`-int8`). **Accuracy** is that artifact's test "
        f"accuracy on {doc['data']['n_test']} WordNet noun glosses (26 lexicographer classes), through the "
        "point's own fine-tuned head. **Latency** is measured here, not predicted: all points interleaved "
        f"(nas.latency.protocol), batch {cfg['measure']['batch']}, seq {cfg['measure']['seq']}, median and IQR "
        f"over {doc['measure']['samples_per_point']} calls, at threads {', '.join(map(str, ths))}. "
        + clock_sentence(doc)
        + "**Size** is the ONNX file in MB.")
    L.append(
        f"* **Equal wall clock**: each search method had {cfg['budget_minutes']:g} min; a trial starts only "
        "before the deadline and the last one finishes (overrun shown in the cost table). All methods search "
        "the same space with the same latency table, distil from the same cached teacher on the same "
        f"{doc['data']['n_train']} training glosses with the same fine-tuning budget "
        f"({cfg['trainer'].get('finetune_steps')} steps); DNAS also spends {cfg['trainer'].get('steps')} "
        "supernet steps per trial. The black-box methods rank trials on the validation split; DNAS's "
        "study stores test accuracy (the trainer's choice); every number here is the artifact's test accuracy. "
        "The **teacher** is the pretrained encoder, frozen, with a linear head trained on its embeddings "
        f"({cfg['trainer'].get('teacher_steps')} steps): the distillation target. Subnets, students and trials "
        "fine-tune the whole encoder, so they can score above it. "
        + ("**full-finetuned** is the uncompressed model fine-tuned with exactly the students' recipe (same "
           f"data, distillation, {cfg['trainer'].get('finetune_steps')} steps, learning rate "
           f"{cfg['trainer'].get('finetune_lr')}): what a user gets by fine-tuning without compressing, and the "
           f"accuracy reference of the \"within {drop:g} pt\" targets; the frozen teacher's verdicts are kept beside "
           "them for comparison with earlier runs."
           if ref["name"] != "teacher" else
           "This run predates the full fine-tuned baseline: the frozen teacher is the accuracy reference of the "
           "targets, a low bar for fine-tuned subnets.")
        + cap_sentence(doc))
    L.append(
        "* **Front**: non-dominated points in (accuracy ↑, measured latency ↓). **Hypervolume**: area dominated "
        "by a method's points in (accuracy, latency / teacher fp32 latency at 1 thread), reference point "
        f"(accuracy {cfg['reference']['accuracy']:g}, latency {cfg['reference']['latency_fraction']:g}× teacher fp32 "
        f"= {_f(s['reference_ms'], '.4g')} ms); larger is better; points slower than the teacher add nothing."
        + (" **Hypervolume (region beating teacher int8)**: the same area with the reference point at what a user "
           f"gets for free: accuracy {100 * s['region']['accuracy']:.2f} % (frozen teacher − "
           f"{s['region']['accuracy_drop_points']:g} pt) and latency {_f(s['region']['latency_ms'], '.4g')} ms "
           "(teacher ORT int8): only points faster than onnxruntime's own int8 and at most "
           f"{s['region']['accuracy_drop_points']:g} pt below the frozen teacher count (the region's accuracy "
           "reference is the frozen teacher's, as in earlier runs, whatever the targets' reference). This reference was added after the "
           "first full run, whose whole-range hypervolume was mostly area all methods share."
           if region is not None else ""))
    L.append(
        "* **Latency-table fidelity**: the table's prediction (1 thread) vs the measurement, on the union of the "
        "three search fronts and on every in-space point. **Budget-hit rate**: share of DNAS trials whose "
        "measured latency is within the trial's target T. **Cost**: wall clock; CPU-hours allotted "
        "(wall × cores); CPU time measured (this process and reaped children: Ray workers are not all "
        "counted); orchestration overhead = wall clock not spent inside trials.")
    L.append("")
    L.append("## Search cost")
    L.append("")
    L.append("| method | budget s | wall s | overrun s | trials | CPU-hours allotted | CPU s measured | "
             "overhead share | notes |")
    L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for m in (*SEARCH_METHODS, "baselines"):
        c = s["cost"].get(m)
        if not c:
            continue
        b = c.get("budget_s")
        service = (f"{c.get('service_calls', 0)} service call(s), Ray/study setup {_f(c.get('service_setup_s'), '.0f')} s"
                   + phase_note(c.get("phase_seconds")))
        notes = {"dnas": service,
                 "dnas_shared": f"{service} (the shared supernet's training included); Kendall τ inherited vs "
                                f"fine-tuned {_f((c.get('proxy') or {}).get('kendall_tau'), '.3f')} over "
                                f"{(c.get('proxy') or {}).get('trials', 0)} trials",
                 "nsga2": f"population {c.get('population_size')}, {c.get('generations_completed')} full generation(s)",
                 "random": "", "baselines": "teacher, full fine-tuned model and students (not budgeted)"
                 + "".join(f"; incl. {a['wall_s']:.0f} s for {', '.join(a['names'])} added later"
                           for a in doc.get("added_baselines", []))}[m]
        L.append(f"| {LABELS[m]} | {_f(b, '.0f')} | {_f(c['wall_s'], '.0f')} | "
                 f"{_f(max(c['wall_s'] - b, 0.0) if b else None, '.0f')} | {c['trials']} | "
                 f"{_f(c['cpu_hours_allotted'], '.3f')} | {_f(c['cpu_s'], '.0f')} | {_f(c['overhead_share'], '.1%')} | "
                 f"{notes} |")
    L.append("")
    L.append("## Latency-table fidelity and budget hits")
    L.append("")
    L.append("| set | n | Spearman | MAPE | within ±10 % | mean signed error |")
    L.append("| --- | --- | --- | --- | --- | --- |")
    for k, v in s["fidelity"].items():
        L.append(f"| {k} | {v.get('n', 0)} | {_f(v.get('spearman'))} | {_f(v.get('mape'), '.1%')} | "
                 f"{_f(v.get('within_share'), '.0%')} | {_f(v.get('mean_signed'), '+.1%')} |")
    d = (doc.get("latency_table") or {}).get("drift") or {}
    if d.get("checked"):
        L.append("")
        L.append(f"Table check before the run (`nas lut drift`, {len(d.get('models', []))} calibration models): "
                 f"now/then median {d['median_ratio']:.3f} (IQR {d['q1']:.3f}–{d['q3']:.3f}); "
                 + (f"every method searched with the recalibrated table (calibration refitted, fit MAPE "
                    f"{d['fit_mape']:.1%}; entries unchanged), whose predictions are the ones above."
                    if d.get("recalibrated") else "within ±5 %: the table was used as shipped.")
                 + (f" After the measurements the same models measured {d['after']['median_ratio']:.3f}× the searched "
                    f"table's (IQR {d['after']['q1']:.3f}–{d['after']['q3']:.3f}): "
                    + ("the host drifted during the run, a uniform offset in the errors above."
                       if d["after"].get("drifted") else "the host held steady between the two checks."
                       if d.get("during") else
                       (f"yet the table predicts {ms:+.0%} against the in-space points' measurements on average, "
                        "an offset these short checks did not see: the host's speed while the points were measured, "
                        "or the table's error on these architectures (row `search_fronts_refit_cv` takes a uniform "
                        "offset out)."
                        if abs(ms := s["fidelity"].get("all_in_space_points", {}).get("mean_signed", 0.0)) > 0.05
                        else "the host held steady, so the errors above are the table's."))
                    if d.get("after") else ""))
    if d.get("during"):
        L.append("")
        L.append(during_sentence(d["during"], s["fidelity"].get("all_in_space_points", {})))
    corr = s["fidelity"].get("search_fronts_drift_corrected")
    if corr:
        src = {"during": "measured alongside the points", "after": "measured on the calibration models after the run"}
        L.append("")
        L.append("Row `search_fronts_drift_corrected`: the same front points with every prediction multiplied by the "
                 f"host's drift ({src.get(corr.get('drift_source', 'after'), 'after the run')}), which separates the "
                 "table's per-architecture error from the host's drift; the target is judged on the uncorrected row.")
    rf = s["fidelity"].get("search_fronts_refit_cv")
    if rf and rf.get("n"):
        L.append("")
        L.append(f"Row `search_fronts_refit_cv`: the same front points with the prediction recalibrated on this run's "
                 f"own measurements, `a·predicted + b` fitted on the {rf['fit_points']} in-space points "
                 f"({rf['folds']}-fold cross-validated: each point predicted by a fit that did not see it; on all "
                 f"points a = {rf['a']:.3f}, b = {rf['b']:+.3f} ms). It stands for the table recalibrated on this host "
                 "at the time of the measurements (its `scale` and `affine` forms), so its misses are the table's "
                 "per-architecture error plus measurement noise, not drift.")
    bh = s["budget_hits"]
    L.append("")
    L.append(f"DNAS budget-hit rate: measured {_f(bh.get('measured_hit_rate'), '.0%')}, predicted "
             f"{_f(bh.get('predicted_hit_rate'), '.0%')}, measured within 1.1·T {_f(bh.get('within_10pct_of_target_rate'), '.0%')} "
             f"({bh.get('n', 0)} trials)"
             + (f"; with the host's drift ({bh['drift']:.3f}×, the drift-corrected row's) divided out of the "
                f"measurements: {_f(bh.get('drift_corrected_hit_rate'), '.0%')} within T, "
                f"{_f(bh.get('drift_corrected_within_10pct_rate'), '.0%')} within 1.1·T" if bh.get("drift") else "")
             + ".")
    L.append("")
    L.append("## Every point")
    L.append("")
    head = " | ".join(f"t{t} median ms (IQR)" for t in ths)
    L.append(f"| method | point | architecture | deploy | accuracy % | {head} | predicted ms | target ms | size MB | front |")
    L.append("| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in ths) + " | --- | --- | --- | --- |")
    for p in doc["points"]:
        cells = " | ".join(f"{_f(p['latency'][f't{t}']['median_ms'], '.3f')} ({_f(p['latency'][f't{t}']['iqr_ms'], '.2f')})"
                           for t in ths)
        L.append(f"| {p['method']} | {p['name']}{' †' if p.get('latency_rescaled_by') else ''} | "
                 f"`{p.get('arch_summary', '')}` | {p['deploy']} | "
                 f"{100 * p['accuracy']:.2f} | {cells} | {_f(p.get('predicted_ms'), '.3f')} | "
                 f"{_f(p.get('target_ms'), '.3f')} | {p['size_mb']:.2f} | {'✓' if p.get('on_front') else ''} |")
    L.append("")
    for a in doc.get("added_baselines", []):
        L.append(added_sentence(a, doc))
        L.append("")
    return "\n".join(L)


def reference_sentence(s: Mapping[str, Any], drop: float) -> str:
    """The targets' accuracy reference, with the frozen teacher's numbers beside it."""
    ref, t = s["accuracy_reference"], s["teacher"]
    return (f"Accuracy reference of the \"within {drop:g} pt\" targets: **{ref['name']}**"
            + (" †" if ref.get("added") else "") + ", the uncompressed model "
            f"fine-tuned with the students' recipe, {100 * ref['accuracy']:.2f} % fp32 "
            f"({_f(ref['latency_ms_t1'], '.4g')} ms) / {100 * ref['int8_accuracy']:.2f} % ORT int8 "
            f"({_f(ref['int8_latency_ms_t1'], '.4g')} ms); the frozen teacher, the reference of earlier runs: "
            f"{100 * t['accuracy']:.2f} % / {100 * t['int8_accuracy']:.2f} % (columns \"frozen teacher\"). The "
            "speed-up stays measured against the teacher's ORT int8 latency (the same architecture)."
            + (" † Added after the run (see the note under \"Every point\"): its int8 accuracy is the adding host's."
               if ref.get("added") else ""))


def added_sentence(a: Mapping[str, Any], doc: Mapping[str, Any]) -> str:
    """How baselines added after the run (``--add-baselines``) were measured and put on the run's latency scale."""
    ths = doc["config"]["threads"]
    sc = "; ".join(f"{d}: " + ", ".join(f"t{t} ×{v[f't{t}']:.3f}" for t in ths) for d, v in a["scale"].items())
    acc = a.get("reference_accuracy", {})
    moved = {r: v for r, v in acc.items() if v["run"] != v["now"]}
    score = "; ".join(f"{r} {100 * v['run']:.2f} % in the run, {100 * v['now']:.2f} % now" for r, v in moved.items())
    host = a.get("host") or {}
    return (f"† {', '.join(a['points'])}: added on {a['at']} UTC (`{a['command']}`"
            + (f"; host {host.get('cpu')} {host.get('fingerprint')}" if host else "")
            + f"; load average {a.get('loadavg_before') or '–'} before / {a.get('loadavg_after') or '–'} after"
            f"{_runtime(a.get('onnxruntime'), doc, sep='; ')}), trained with this run's config, data, teacher and "
            "recipe, exported and scored like every point. Their latencies were measured interleaved with the run's "
            f"teacher and teacher-int8, re-exported ({a['rounds']} rounds), and multiplied by the run's over the "
            f"re-measured median of the teacher of the same deployment ({sc}): each is its latency relative to that "
            "teacher, measured side by side, put on this run's scale (a host drifts 10–20 % between runs, and "
            "this need not be the run's host). For an architecture the teacher shares (full-finetuned) this is "
            "exact up to noise; the raw measurements are in the JSON (`latency_measured`). The latency-table "
            "fidelity rows leave them out (their latency is not one of the run's measurements)."
            + ((" Not the run's teacher: " + score + "; the added accuracies are not comparable with the run's."
                if "teacher" in moved else
                " Int8 accuracy on this host: " + score + " (onnxruntime's int8 kernels differ between CPUs; the "
                "teacher's fp32 score is the run's).") if moved else ""))


def cap_sentence(doc: dict[str, Any]) -> str:
    """What the latency cap did to each method (``""`` for runs without one)."""
    cap = doc.get("latency_cap") or {}
    if not cap.get("predicted_ms"):
        return ""
    cost = doc["summary"]["cost"]
    rej = ", ".join(f"{LABELS[m]} {cost[m].get('rejected_over_cap', 0)}" for m in ("random", "nsga2") if m in cost)
    tf = cap.get("dnas_target_fraction")
    tf_txt = (f"[{tf['float'][0]:.2f}, {tf['float'][1]:.2f}]" if isinstance(tf, dict) and "float" in tf else str(tf))
    if isinstance(tf, dict) and "float" in tf:
        how = ("swept evenly over the trials (`stratified`: trial n takes the n-th point of a van der Corput "
               "sequence)" if tf.get("stratified") else "sampled by the study's sampler")
        tf_txt += f" ({'log-spaced, ' if tf.get('log') else ''}{how})"
    return (f" **Latency cap** (`latency_cap: {cap['kind']}`): every method searched only architectures the table "
            f"predicts at most {cap['predicted_ms']:.3f} ms"
            + (", its prediction for the teacher with every weight at int8 (what a user gets for free)"
               if cap["kind"] == "teacher_int8" else f" ({cap['kind']} of the full model's)")
            + ": black-box proposals above it were rejected before training (not counted as "
            f"trials: {rej}); DNAS sampled its target T as a fraction {tf_txt} of the full model's table latency.")


def write_report(doc: dict[str, Any], out_dir: Path, name: str) -> dict[str, Path]:
    """Write ``name.json``, ``name.md`` and ``name.t<T>.png`` per thread count into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = [plot_fronts(doc, out_dir / f"{name}.t{t}.png", t) for t in doc["config"]["threads"]]
    doc["plots"] = [p.name for p in plots]
    js, md = report_files.write_report(out_dir / name, doc, markdown(doc), default=str)
    return {"md": md, "json": js, **{f"png_t{t}": p for t, p in zip(doc["config"]["threads"], plots)}}


def clock_sentence(doc: dict[str, Any]) -> str:
    """How the report's latencies were timed, naming whether the 1-thread clock is the table's."""
    table_clock = doc["latency_table"].get("clock") or "wall"
    # runs before the resolved clock was recorded measured with the configured one
    clock = doc["measure"].get("clock_t1") or doc["config"]["measure"]["clock_t1"]
    same = "the latency table's clock too" if clock == table_clock else f"the latency table's clock is `{table_clock}`"
    if clock == "thread-cpu":
        return (f"At 1 thread the clock is `thread-cpu` (CPU time of the calling thread, which excludes time "
                f"stolen by other processes on a busy machine; {same}); at more threads it is wall time. ")
    return f"The clock is wall time at every thread count ({same} at 1 thread). "


def during_sentence(during: dict[str, Any], in_space: dict[str, Any]) -> str:
    """What the calibration models measured alongside the points says about the table's offset on them."""
    r, pts = during["median_ratio"], in_space.get("median_ratio")
    out = (f"Alongside the points (in the same interleaved rounds at {during.get('threads', 1)} thread(s)) the "
           f"table's {during.get('n', '')} calibration models measured {r:.3f}× their recorded latency "
           f"(IQR {during['q1']:.3f}–{during['q3']:.3f}): the host's drift in the points' own time window.")
    if pts is None:
        return out
    out += f" The in-space points measured {pts:.3f}× their predictions (median): "
    if abs(pts / r - 1) <= 0.03:
        return out + "the host's drift accounts for the table's offset on them (within 3 %)."
    return out + (f"{pts / r:.3f}× beyond the drift, an offset of the table on these architectures (the sum of "
                  "per-block entries against whole models), not the host's speed.")

"""Benchmark: does the search beat what a user would do instead? One command, one run, side by side.

    PYTHONPATH=. .venv/bin/python -m experiments.studies.benchmark_minilm_cpu.run [--quick] [--budget-minutes M] [--out DIR]

Runs, on this machine, the user baselines (teacher fp32 / onnxruntime dynamic int8, the full
model fine-tuned like every student, first-k students; each fp32 / int8), then three searches over the same space, task and latency table with
the same wall-clock budget each (ours: DNAS trials through ``nas.search.api.run_search``;
random search; Optuna NSGA-II), measures every point as a deployed ONNX artifact (test
accuracy, interleaved latency at each thread count, size) and writes
``<out>/minilm_cpu.{md,json}`` and ``<out>/minilm_cpu.t<T>.png`` (``minilm_cpu_quick.*`` with
``--quick``). Settings: ``config.yaml`` next to this file.

``--quick``: tiny-bert space, a latency table built into the work folder in seconds, a small
WordNet slice, a few seconds per method (the test suite runs it end to end).

``--add-baselines NAME[,NAME]``: add baselines missing from a finished run's report (``<out>/<name>.json``)
without running it again: trained with the run's own config, measured interleaved with the run's
teacher re-exported, their latencies put on the run's scale by the teacher's then/now ratio
(:func:`add_baselines`). ``--report-only`` and ``--remeasure`` redo a finished run's report and latencies.
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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from experiments.studies.benchmark_minilm_cpu.analysis import SEARCH_METHODS, verdict  # noqa: E402
from experiments.studies.benchmark_minilm_cpu.config import DEFAULT_CONFIG, BenchConfig, clock_t1, load_config  # noqa: E402
from experiments.studies.report_files import write_json  # noqa: E402
from nas.errors import ConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
REPORTS = ROOT / "experiments" / "reports"


_T0 = time.perf_counter()


def say(line: str) -> None:
    print(f"[bench {time.perf_counter() - _T0:6.1f}s] {line}", file=sys.stderr, flush=True)


def loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def quick_table(cfg: BenchConfig, work: Path) -> str:
    """A small latency table for the quick space, measured here in seconds."""
    from nas.latency.builder import build_table
    from nas.latency.protocol import Protocol
    from nas.spaces import load_space

    space = load_space(cfg.space)
    proto = Protocol(warmup=1, rounds=2, repeats=2, remeasure=0, max_noisy_fraction=1.0)
    table = build_table(space, threads=1, batch=cfg.measure.batch, seq=cfg.measure.seq, protocol=proto,
                        calibration_samples=3, log=None)
    path = work / f"{space.name}.onnxruntime-cpu.t1.b{cfg.measure.batch}.s{cfg.measure.seq}.json"
    table.save(path)
    return str(path)


def evaluate_points(bench: Any, candidates: list[dict[str, Any]], cfg: BenchConfig, work: Path, *,
                    clock: str, rounds: int | None = None,
                    alongside: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Export every candidate, score its test accuracy with onnxruntime, measure all latencies interleaved.

    Returns the points and the drift measured alongside them (:func:`measure_points`; ``alongside=False``:
    without the table's calibration models, drift None).
    """
    from experiments.studies.benchmark_minilm_cpu.context import load_head
    from experiments.studies.benchmark_minilm_cpu.measure import export_artifact, file_mb, onnx_accuracy
    from nas.runtime.quantize import bits_by_node
    from nas.supernet.derive import load_subnet

    points, paths = [], {}
    teacher_head = (bench.teacher.head_weight, bench.teacher.head_bias)
    for c in candidates:
        subnet = load_subnet(c["subnet_dir"])
        folder = work / "artifacts" / c["method"] / Path(c["subnet_dir"]).name
        deploy = c["deploy"]
        path = export_artifact(subnet, folder, bits=bits_by_node(subnet) if deploy == "searched" else None,
                               user_int8=deploy == "user_int8")
        head = load_head(c["head"]) if c.get("head") else teacher_head
        acc = onnx_accuracy(path, head, bench.test)
        key = f"{c['method']}/{c['name']}"
        paths[key] = path
        p = {k: v for k, v in c.items() if k not in ("subnet_dir", "head")}
        if deploy == "user_int8":  # not an architecture of the space: the table does not predict it
            p["predicted_ms"] = None
        p.update(accuracy=acc, size_mb=file_mb(path), artifact=str(path.name), key=key)
        points.append(p)
        say(f"eval {key}: accuracy {acc:.4f} (torch {c.get('test_accuracy_torch')}), {p['size_mb']:.2f} MB")
    for p in points:
        p["artifact_dir"] = str(paths[p["key"]].parent.relative_to(work))
    during = measure_points(points, paths, bench.space, cfg, rounds, clock=clock,
                            table=bench.table if alongside else None)
    return points, during


def measure_points(points: list[dict[str, Any]], paths: dict[str, Path], space: Any, cfg: BenchConfig,
                   rounds: int | None = None, *, clock: str, table: Any = None) -> dict[str, Any] | None:
    """Measure every artifact interleaved at each thread count; set each point's ``latency``.

    ``clock`` times the 1-thread measurements (:func:`~experiments.studies.benchmark_minilm_cpu.config.clock_t1`: by
    default the latency table's own, so that prediction and measurement time the same thing); more threads
    use wall time. With ``table`` (a :class:`~nas.latency.table.LatencyTable` with calibration models), its
    models run in the same interleaved rounds at the table's thread count.

    Returns:
        The drift of the table's calibration models measured alongside the points (``{median_ratio, q1, q3,
        drifted, measured, n, threads}``), or None without a table or when it has no calibration models.
    """
    from experiments.studies.benchmark_minilm_cpu.measure import measure_latency

    lat, m, during = {}, cfg.measure, None
    cal_runners, cal_rows = calibration_alongside(table, cfg)
    for t in cfg.threads:
        extra = {f"calibration/{k}": r for k, r in cal_runners.items()} if t == getattr(table, "threads", None) else {}
        say(f"measuring {len(paths)} artifacts interleaved at {t} thread(s)"
            + (f" with the table's {len(extra)} calibration models" if extra else ""))
        lat[t] = measure_latency(paths, space=space, threads=t, batch=m.batch, seq=m.seq, warmup=m.warmup,
                                 rounds=rounds or m.rounds, repeats=m.repeats, remeasure=m.remeasure,
                                 clock=clock, extra=extra)
        if extra:
            from nas.latency.drift import drift_report

            stats = {k.removeprefix("calibration/"): v for k, v in lat[t].items() if k.startswith("calibration/")}
            rep = drift_report(table, cal_rows, stats, clock=clock)
            during = {k: rep[k] for k in ("median_ratio", "q1", "q3", "drifted", "measured")}
            during.update(n=len(cal_rows), threads=t)
            say(f"drift alongside the points: now/then median {rep['median_ratio']:.3f} "
                f"(IQR {rep['q1']:.3f}–{rep['q3']:.3f})")
    for p in points:
        p["latency"] = {f"t{t}": lat[t][p["key"]] for t in cfg.threads}
    return during


def calibration_alongside(table: Any, cfg: BenchConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``table``'s calibration runners and rows (:func:`nas.latency.drift.calibration_runners`), or empty ones.

    Empty without a table, with fewer than two calibration models, or when no measured thread count is the table's.
    """
    models = ((getattr(table, "calibration", None) or {}).get("models")) or []
    if table is None or len(models) < 2 or table.threads not in cfg.threads:
        return {}, []
    from nas.latency.drift import calibration_runners

    return calibration_runners(table)


def remeasure(doc: dict[str, Any], work: Path, rounds: int | None) -> dict[str, Any]:
    """Measure a finished run's artifacts again (kept with ``--work``) and recompute its summary."""
    from nas.spaces import load_space

    cfg = BenchConfig.from_dict(doc["config"])
    load0, paths = loadavg(), {}
    for p in doc["points"]:
        # runs before artifact_dir was recorded: artifacts/<method>/<name without -int8>
        rel = p.get("artifact_dir") or f"artifacts/{p['method']}/{p['name'].removesuffix('-int8')}"
        path = work / rel / p["artifact"]
        if not path.is_file():
            raise ConfigError(f"--remeasure: {p['key']}: no artifact at {path} (the run's --work folder?)")
        paths[p["key"]] = path
    clock = clock_t1(cfg, doc["latency_table"].get("clock") or "wall")
    table = None
    if Path(doc["latency_table"]["path"]).is_file():  # the searched table (a recalibrated one lives in --work)
        from nas.latency.table import load_table

        table = load_table(doc["latency_table"]["path"])
        doc["latency_table"].setdefault("runtime_version", table.runtime.get("version"))
    during = measure_points(doc["points"], paths, load_space(cfg.space), cfg, rounds, clock=clock, table=table)
    for p in doc["points"]:  # every point measured in the same rounds now: none is on a rescaled clock
        for k in ("latency_measured", "latency_rescaled_by"):
            p.pop(k, None)
    doc.pop("added_baselines", None)
    drift = doc["latency_table"].get("drift")
    if drift is not None:  # a drift from the first measurements no longer applies to these
        drift.pop("during", None)
        if during:
            drift["during"] = during
    doc["summary"] = summarize(doc["points"], doc["summary"]["cost"], cfg, drift)
    rounds = rounds or cfg.measure.rounds
    doc["measure"]["samples_per_point"] = rounds * cfg.measure.repeats
    doc["measure"]["clock_t1"] = clock
    doc["measure"]["remeasured"] = {"at": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "loadavg_before": load0,
                                    "loadavg_after": loadavg(), "rounds": rounds, "onnxruntime": ort_version()}
    return doc


def host() -> dict[str, Any]:
    """This machine's CPU name and device fingerprint (:func:`nas.latency.device.device_info`)."""
    from nas.latency.device import device_info

    info = device_info()
    return {"cpu": info.get("cpu"), "fingerprint": info.get("fingerprint")}


def ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def run_costs(runs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each method's cost summary (wall clock, trials, CPU-hours allotted, overhead share)."""
    cores = os.cpu_count() or 1
    cost = {m: {**r.summary(), "cpu_hours_allotted": r.wall_s * cores / 3600} for m, r in runs.items()}
    for c in cost.values():
        c.pop("calls", None)
    return cost


def summarize(points: list[dict[str, Any]], cost: dict[str, dict[str, Any]], cfg: BenchConfig,
              drift: dict[str, Any] | None = None) -> dict[str, Any]:
    from experiments.studies.benchmark_minilm_cpu import analysis as A

    by = {m: [p for p in points if p["method"] == m] for m in (*A.SEARCH_METHODS, "baselines")}
    base = {p["name"]: p for p in by["baselines"]}
    teacher, teacher_int8 = base["teacher"], base["teacher-int8"]
    ref = A.accuracy_reference(points)  # the full model fine-tuned like the students (teacher in older runs)
    ref_int8 = base[f"{ref['name']}-int8"]
    t_ms = A.lat(teacher)
    for p in points:
        p["on_front"] = False
    fronts = {m: A.front(ps) for m, ps in by.items() if ps}
    for m, f in fronts.items():
        for p in f:
            p["on_front"] = True
    search_front_pts = [p for m in A.SEARCH_METHODS for p in fronts.get(m, [])]
    in_space = A.in_space_measured(points)
    goals = cfg.targets
    drop = goals.get("max_accuracy_drop_points", 1.0) / 100
    region_ref = {"accuracy": teacher["accuracy"] - float(cfg.region["accuracy_drop_points"]) / 100,
                  "latency_fraction": A.lat(teacher_int8) / t_ms}
    ratio = drift_ratio(drift)  # the host's drift since the table was (re)calibrated
    s: dict[str, Any] = {
        "teacher": {"accuracy": teacher["accuracy"], "latency_ms_t1": t_ms, "int8_latency_ms_t1": A.lat(teacher_int8),
                    "int8_accuracy": teacher_int8["accuracy"]},
        "accuracy_reference": {"name": ref["name"], "accuracy": ref["accuracy"], "latency_ms_t1": A.lat(ref),
                               "int8_accuracy": ref_int8["accuracy"], "int8_latency_ms_t1": A.lat(ref_int8),
                               "added": bool(ref.get("latency_rescaled_by"))},
        "reference_ms": cfg.reference["latency_fraction"] * t_ms,
        "hypervolume": {m: A.hypervolume(ps, teacher_ms=t_ms, ref=cfg.reference) for m, ps in by.items()
                        if ps or m in cost},  # a method that ran but finished no trial scores 0
        "region": {"accuracy_drop_points": float(cfg.region["accuracy_drop_points"]), "accuracy_reference": "teacher",
                   "accuracy": region_ref["accuracy"], "latency_ms": A.lat(teacher_int8)},
        "hypervolume_region": {m: A.hypervolume(ps, teacher_ms=t_ms, ref=region_ref) for m, ps in by.items()
                               if ps or m in cost},
        "hypervolume_t2": {m: A.hypervolume(ps, teacher_ms=A.lat(teacher, 2), ref=cfg.reference, threads=2)
                           for m, ps in by.items() if ps and 2 in cfg.threads},
        "front_sizes": {m: len(f) for m, f in fronts.items()},
        "best_accuracy": {m: max(p["accuracy"] for p in ps) for m, ps in by.items() if ps},
        "speedup": {m: A.best_speedup(fronts[m], reference_acc=ref["accuracy"], max_drop=drop,
                                      baseline_ms=A.lat(teacher_int8)) for m in fronts},
        "speedup_vs_teacher": {m: A.best_speedup(fronts[m], reference_acc=teacher["accuracy"], max_drop=drop,
                                                 baseline_ms=A.lat(teacher_int8)) for m in fronts},
        "fidelity": {"search_fronts": A.fidelity(search_front_pts, goals.get("latency_within", 0.10)),
                     "dnas_front": A.fidelity(fronts.get("dnas", []), goals.get("latency_within", 0.10)),
                     "all_in_space_points": A.fidelity(in_space, goals.get("latency_within", 0.10))},
        "budget_hits": A.budget_hits(by["dnas"], drift=ratio[0] if ratio else None),
        "cost": cost,
    }
    if ratio:
        s["fidelity"]["search_fronts_drift_corrected"] = A.fidelity(
            search_front_pts, goals.get("latency_within", 0.10), scale=ratio[0])
        s["fidelity"]["search_fronts_drift_corrected"]["drift_source"] = ratio[1]
    add_refit_fidelity(s, points, goals.get("latency_within", 0.10))
    s["targets"] = A.targets(s, goals)
    s["limits"] = limits(s, cfg.to_dict(), drift)
    return s


def drift_ratio(drift: dict[str, Any] | None) -> tuple[float, str] | None:
    """``(now/then median of the table's calibration models, "during" | "after")`` to correct predictions by, or None.

    The ratio measured interleaved with the points (``during``) shares their time window; the check after
    the measurements (``after``) is the fallback for runs made before the calibration models ran alongside.
    """
    for key in ("during", "after"):
        r = ((drift or {}).get(key) or {}).get("median_ratio")
        if r:
            return float(r), key
    return None


def within_sentence(s: dict[str, Any]) -> str:
    """With no DNAS point within the drop: how far DNAS's best point falls short and who gets within; else ``""``."""
    ref, best, sp = s.get("accuracy_reference"), s.get("best_accuracy", {}), s.get("speedup", {})
    if not ref or sp.get("dnas") or "dnas" not in best:
        return ""
    others = [f"{v['name']} {100 * v['accuracy']:.2f} % at {v['latency_ms']:.1f} ms ({v['speedup']:.2f}×)"
              for m, v in sp.items() if v and m != "dnas"]
    return (f"; DNAS's most accurate point scores {100 * best['dnas']:.2f} %, "
            f"{100 * (ref['accuracy'] - best['dnas']):.2f} pt below {ref['name']} ({100 * ref['accuracy']:.2f} %); "
            + ("within 1 pt: " + ", ".join(others) if others else "no point of any method is within 1 pt"))


def hv_ceiling(s: dict[str, Any], cfg: dict[str, Any]) -> str:
    """A clause naming the whole-range hypervolume the goals need when no front could reach it, else ``""``.

    With latency normalised to the teacher's and the reference at latency 1, a front's hypervolume is at
    most (its best accuracy − the reference accuracy) × 1, reached only by a point at zero latency.
    """
    hv, best, goals = s.get("hypervolume", {}), s.get("best_accuracy", {}), cfg.get("targets", {})
    need = max((goals.get(f"hv_ratio_vs_{m}", 0) * hv[m] for m in ("nsga2", "random") if m in hv), default=0.0)
    if not best or not need:
        return ""
    top = max(best, key=best.get)
    ceiling = best[top] - cfg.get("reference", {}).get("accuracy", 0.0)
    if need <= ceiling:
        return ""
    return (f"; the goals need a whole-range hypervolume of {need:.3f}, above what any front here could reach: a "
            f"front's is at most its best accuracy above the reference ({ceiling:.3f} for the best point of any "
            f"method, {best[top]:.2%} by {top}, even at zero latency)")


def run_mode(*, quick: bool, budget_minutes: float | None, default_minutes: float, methods: list[str]) -> str:
    """``quick``, ``reduced`` (less wall clock than the config's or not every search method) or ``full``.

    A ``--label`` is a note on the run, not a mode: a full run may carry one.
    """
    if quick:
        return "quick"

    if (budget_minutes is not None and budget_minutes < default_minutes) or set(methods) != set(SEARCH_METHODS):
        return "reduced"
    return "full"


def add_refit_fidelity(s: dict[str, Any], points: list[dict[str, Any]], within: float) -> None:
    """Add row ``search_fronts_refit_cv`` to ``s["fidelity"]``: what recalibrating on this run's own measurements leaves.

    ``points`` carry ``on_front`` (set by :func:`summarize`); a run too small to cross-validate adds nothing.
    """
    from experiments.studies.benchmark_minilm_cpu import analysis as A

    in_space = A.in_space_measured(points)
    fronts = [p for p in in_space if p.get("on_front") and p["method"] in A.SEARCH_METHODS]
    refit = A.refit_fidelity(in_space, fronts, within)
    if refit.get("n"):
        s["fidelity"]["search_fronts_refit_cv"] = refit


def limits(s: dict[str, Any], cfg: dict[str, Any], drift: dict[str, Any] | None = None) -> list[str]:
    """One sentence per missed target on what limits it, from the run's numbers.

    ``cfg``: the config dict; ``drift``: the table check made before the run (``drift.prepare_table``).
    """
    rows, cost, t = {r.get("key", str(i)): r for i, r in enumerate(s["targets"])}, s["cost"], s["teacher"]
    met = lambda k: rows.get(k, {"met": True})["met"]  # noqa: E731
    tr = cfg.get("trainer", {})
    ft, n_train, steps = tr.get("finetune_steps"), tr.get("max_train"), tr.get("steps")
    out = []
    if not met("speedup"):
        gain = t["latency_ms_t1"] / t["int8_latency_ms_t1"]
        tf = cfg.get("dnas", {}).get("sample", {}).get("target_fraction", {}).get("float")
        ref = s.get("accuracy_reference") or {"name": "teacher", "accuracy": t.get("accuracy")}
        of = (f" from the full model fine-tuned alike ({100 * ref['accuracy']:.2f} %)" if ref["name"] != "teacher"
              else "")
        out.append(
            f"Speed-up: ORT int8 alone makes the teacher {gain:.2f}× faster, so 3× over it means ≈{3 * gain:.1f}× "
            f"over fp32 (≈{1 / (3 * gain):.0%} of its latency) at ≤ 1 pt accuracy drop{of}"
            + (f"; DNAS trials sample T between {tf[0]:.0%} and {tf[1]:.0%} of the full model's table latency"
               if tf else "")
            + f", and with {ft} fine-tuning steps on {n_train} glosses the small subnets near that latency lose "
              "more than 1 pt" + (f" (best DNAS point within 1 pt: {rows['speedup']['detail']})"
                                  if (s.get("speedup") or {}).get("dnas", True) else "")
            + within_sentence(s) + ".")
    if not all(met(k) for k in ("hv_nsga2", "hv_random", "hv_region_nsga2", "hv_region_random")):
        d = cost.get("dnas", {})
        per = d.get("wall_s", 0) / max(d.get("trials", 0), 1)
        more = min(cost.get(m, {}).get("trials", 0) for m in ("random", "nsga2")) / max(d.get("trials", 0), 1)
        region_missed = "hv_region_nsga2" in rows and not (met("hv_region_nsga2") and met("hv_region_random"))
        out.append(
            f"Hypervolume: DNAS ran {d.get('trials', 0)} trial(s) in {d.get('wall_s', 0):.0f} s (budget "
            f"{d.get('budget_s') or 0:.0f} s; one trial = {steps} supernet steps + {ft} fine-tuning steps, ≈{per:.0f} s "
            f"here, orchestration overhead {d.get('overhead_share', 0):.0%}) against "
            f"{cost.get('random', {}).get('trials', 0)} random and {cost.get('nsga2', {}).get('trials', 0)} NSGA-II "
            "trials of fine-tuning only; "
            + ("a front of one or two points cannot span the latency range, so at this budget the hypervolume "
               "counts trials more than it measures search quality."
               if s.get("front_sizes", {}).get("dnas", 0) <= 2 else
               ("measured from accuracy 0 and the teacher's fp32 latency, the hypervolume is mostly the area every "
                "method covers, so fronts a few accuracy points apart differ by a few % in hypervolume"
                + hv_ceiling(s, cfg)
                if not (met("hv_nsga2") and met("hv_random")) else "the whole-range ratios are met")
               + ("; in the region that beats the teacher's ORT int8 the ratios are "
                  f"{rows['hv_region_nsga2']['value']:.2f} (NSGA-II) and {rows['hv_region_random']['value']:.2f} "
                  "(random)" if "hv_region_nsga2" in rows else "")
               + ("; there too the black-box fronts come close: with this fine-tuning budget a sampled architecture "
                  f"fine-tuned alone scores nearly as well as a searched one, and they try {more:.1f}× as many "
                  "architectures" if region_missed else "")
               + "."))
    if not met("fidelity"):
        fid = s.get("fidelity", {}).get("search_fronts", {})
        bias = fid.get("mean_signed")
        d = drift or {}
        checked = (f"; before the run the table's calibration models measured {d['median_ratio']:.2f}× their "
                   "recorded latency" + (" and the search used the recalibrated table" if d.get("recalibrated")
                                         else "") if d.get("checked") else "")
        if d.get("after"):
            checked += (f"; after the measurements they measured {d['after']['median_ratio']:.2f}× the searched "
                        "table's (IQR " f"{d['after']['q1']:.2f}–{d['after']['q3']:.2f})")
        corr = s.get("fidelity", {}).get("search_fronts_drift_corrected", {})
        if d.get("during"):
            checked += (f"; in the same interleaved rounds as the points they measured {d['during']['median_ratio']:.2f}× "
                        "(the host's drift while the points were measured)")
        if corr.get("n"):
            checked += (f"; with that drift taken out of the predictions {corr['within_share']:.0%} of the front points "
                        f"fall within ±{cfg.get('targets', {}).get('latency_within', 0.10):.0%}")
        out.append("Latency fidelity: measurements on a 2-core machine shared with other jobs are noisy (see IQR)"
                   + checked
                   + (f"; the table predicts {-bias:.0%} below the measurements on average, a uniform offset "
                      "(the host slower than when the table was built or recalibrated: `nas lut drift`)"
                      if bias is not None and bias < -0.05 else "")
                   + (f"; on DNAS's front the table predicts {dbias:+.0%} against the measurements on average"
                      + (" (a recalibration fitted on the calibration models scales every architecture alike)"
                         if d.get("recalibrated") else " (the sum of per-block entries misses some whole-model effect)")
                      if (dbias := s.get("fidelity", {}).get("dnas_front", {}).get("mean_signed")) is not None
                      and abs(dbias) > 0.05 else "")
                   + (f"; {fid['mape']:.1%} MAPE is the table's per-architecture error plus that noise"
                      if fid.get("mape") is not None else "")
                   + (f"; recalibrated on this run's own {rf['fit_points']} measured in-space points "
                      f"({rf['folds']}-fold cross-validated), the table would put {rf['within_share']:.0%} of the front "
                      f"points within ±{cfg.get('targets', {}).get('latency_within', 0.10):.0%} "
                      f"(MAPE {rf['mape']:.1%}): what is left is the "
                      "per-architecture error of a sum of per-block entries plus measurement noise, which no recalibration "
                      "removes"
                      if (rf := s.get("fidelity", {}).get("search_fronts_refit_cv", {})).get("n") else "") + ".")
    out.extend(shared_limits(rows, cost))
    return out


def shared_limits(rows: dict[str, Any], cost: dict[str, Any]) -> list[str]:
    """What limits the shared arm's missed targets (issue 31): trials per hour and the proxy's τ."""
    sh, d = cost.get("dnas_shared"), cost.get("dnas")
    if not sh or not sh.get("trials"):
        return []
    out = []
    per_h = rows.get("shared_trials_per_hour")
    if per_h and not per_h["met"] and d and d.get("trials"):
        setup, wall = sh.get("service_setup_s", 0.0), sh["wall_s"]
        per_s, per_d = (wall - setup) / sh["trials"], d["wall_s"] / d["trials"]
        need = (wall - setup) / (per_h["goal"] * d["trials"] / d["wall_s"] * wall)
        out.append(f"Trials per hour: the shared supernet's training and Ray start took {setup:.0f} s of the shared "
                   f"arm's {wall:.0f} s ({setup / wall:.0%}); after it a shared trial took ≈{per_s:.1f} s against "
                   f"≈{per_d:.0f} s per-trial ({per_d / per_s:.1f}× cheaper); {per_h['goal']:g}× at this clock needs "
                   f"≈{need:.1f} s per shared trial, a shorter supernet training, or a supernet reused across studies.")
    tau = rows.get("proxy_tau_dnas_shared")
    proxy = sh.get("proxy") or {}
    if tau and tau.get("judged", True) and not tau["met"] and "kendall_tau_same_budget" in proxy:
        out.append(f"Kendall τ: the shared trials sample their fine-tuning budget, which moves the fine-tuned accuracy "
                   f"as well and the inherited accuracy cannot know it; over pairs of trials in the same budget half "
                   f"(≤ / > {proxy['budget_median']:g} steps) τ is {proxy['kendall_tau_same_budget']:.3f} against "
                   f"{proxy['kendall_tau']:.3f} pooled.")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny-bert, tiny table, seconds per method (tests)")
    ap.add_argument("--budget-minutes", type=float, default=None, help="wall clock per search method (config default)")
    ap.add_argument("--out", default=None, help=f"report folder (default {REPORTS.relative_to(ROOT)})")
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--name", default=None, help="report file stem (default minilm_cpu, minilm_cpu_quick with --quick)")
    ap.add_argument("--work", default=None, help="keep subnets, studies and ONNX files here (default: a temp folder)")
    ap.add_argument("--methods", nargs="+", default=list(SEARCH_METHODS), choices=list(SEARCH_METHODS))
    ap.add_argument("--report-only", metavar="JSON", help="rewrite the report (md, png) from a run's JSON")
    ap.add_argument("--remeasure", metavar="JSON", help="measure a run's artifacts again (with its --work folder) "
                    "and rewrite its report: for a measurement spoilt by a noisy moment")
    ap.add_argument("--add-baselines", metavar="NAME[,NAME]", help="add these baselines (e.g. full-finetuned) to "
                    "the finished run <out>/<name>.json and rewrite its report, measured against its teacher")
    ap.add_argument("--rounds", type=int, default=None,
                    help="with --remeasure or --add-baselines: rounds per artifact (config default)")
    ap.add_argument("--label", default=None, help="a note printed at the top of the report (e.g. 'reduced budget')")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)

    from nas.errors import NASError

    try:
        if args.remeasure:
            if not args.work:
                raise ConfigError("--remeasure: needs --work, the run's kept work folder")
            src = Path(args.remeasure)
            doc = remeasure(json.loads(src.read_text()), Path(args.work), args.rounds)
            files = write_report_files(doc, Path(args.out) if args.out else src.parent, args.name or src.stem)
            say("wrote " + ", ".join(str(p) for p in files.values()))
            return 0
        if args.add_baselines:
            out, name = Path(args.out) if args.out else REPORTS, args.name or "minilm_cpu"
            src = out / f"{name}.json"
            if not src.is_file():
                raise ConfigError(f"--add-baselines: no run at {src} (--out, --name)")
            work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-add-"))
            work.mkdir(parents=True, exist_ok=True)
            try:
                doc = add_baselines(json.loads(src.read_text()), [n for n in args.add_baselines.split(",") if n],
                                    work, args.rounds, command=shlex.join(
                                        ["python", "-m", "experiments.studies.benchmark_minilm_cpu.run", *args.argv]))
            finally:
                if not args.work:
                    shutil.rmtree(work, ignore_errors=True)
            files = write_report_files(doc, out, name)
            say("wrote " + ", ".join(str(p) for p in files.values()))
            return 0
        if args.report_only:
            src = Path(args.report_only)
            doc = json.loads(src.read_text())
            from experiments.studies.benchmark_minilm_cpu.analysis import budget_hits, targets

            doc["summary"]["targets"] = targets(doc["summary"], doc["config"]["targets"])  # the current rows
            ratio = drift_ratio(doc["latency_table"].get("drift"))
            doc["summary"]["budget_hits"] = budget_hits(  # with the drift-corrected rates of newer runs
                [p for p in doc["points"] if p["method"] == "dnas"], drift=ratio[0] if ratio else None)
            if "search_fronts_refit_cv" not in doc["summary"].get("fidelity", {}):  # a run from before the row
                add_refit_fidelity(doc["summary"], doc["points"], doc["config"]["targets"].get("latency_within", 0.10))
            doc["summary"]["limits"] = limits(doc["summary"], doc["config"], doc["latency_table"].get("drift"))
            files = write_report_files(doc, Path(args.out) if args.out else src.parent, args.name or src.stem)
            say("wrote " + ", ".join(str(p) for p in files.values()))
            return 0
        return run(args)
    except NASError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, quick=args.quick, budget_minutes=args.budget_minutes)
    name = args.name or ("minilm_cpu_quick" if args.quick else "minilm_cpu")
    out = Path(args.out) if args.out else REPORTS
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started, load0 = time.strftime("%Y-%m-%d %H:%M", time.gmtime()), loadavg()
    if args.quick:
        os.environ["NAS_CACHE_DIR"] = str(work / "cache")  # the Ray trials see NAS_* variables
    try:
        from experiments.studies.benchmark_minilm_cpu.context import resolve_latency_cap
        from experiments.studies.benchmark_minilm_cpu.drift import prepare_table

        if cfg.latency_table:  # a bad cap fails before the drift check measures anything
            resolve_latency_cap(cfg.latency_cap, cfg.latency_table, cfg.space, cfg.dnas.get("sample", {}))
        table, drift = prepare_table(cfg.latency_table or quick_table(cfg, work), cfg.recalibrate, work, say)
        say(f"latency table: {table}")
        doc = _run(cfg, args, table, work, drift)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    import torch

    mode = run_mode(quick=args.quick, budget_minutes=args.budget_minutes, methods=args.methods,
                    default_minutes=load_config(args.config, quick=args.quick).budget_minutes)
    doc.update(
        mode=mode,
        mode_note=args.label or ("tiny-bert with random weights and a table measured in seconds: checks the "
                                 "pipeline, not the method." if args.quick else
                                 f"{cfg.budget_minutes:g} min per method; methods: {', '.join(args.methods)}."
                                 if mode == "reduced" else ""),
        command=shlex.join(["python", "-m", "experiments.studies.benchmark_minilm_cpu.run", *args.argv]),
        started=started, finished=time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        machine={"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                 "loadavg_before": load0, "loadavg_after": loadavg(), "torch": torch.__version__,
                 "onnxruntime": ort_version(),
                 "note": ("the machine is shared (load well above its core count during the run): latencies are "
                          "noisy" + ("; the 1-thread clock excludes time stolen by other processes, 2-thread wall "
                                     "times do not." if doc["measure"]["clock_t1"] == "thread-cpu" else ".")
                          if (load0 or [0])[0] > (os.cpu_count() or 1) else "machine quiet.")},
    )
    write_json(out / f"{name}.json", doc, default=str)  # first: the report can be redone
    files = write_report_files(doc, out, name)
    say("wrote " + ", ".join(str(p) for p in files.values()))
    for t in doc["summary"]["targets"]:
        said = verdict(t)
        say(f"target {'MISSED' if said == 'missed' else said}: {t['target']}: {t['value']:.3g} ({t['detail']})")
    return 0


def write_report_files(doc: dict[str, Any], out: Path, name: str) -> dict[str, Path]:
    from experiments.studies.benchmark_minilm_cpu.report import write_report

    return write_report(doc, out, name)


def dnas_seeds(cfg: BenchConfig) -> list[int]:
    """Seeds a DNAS trial can run with (the sampled ``seed`` range, else the fixed one)."""
    spec = cfg.dnas.get("sample", {}).get("seed")
    if isinstance(spec, dict) and "int" in spec:
        lo, hi = spec["int"]
        return list(range(int(lo), int(hi) + 1))
    if isinstance(spec, dict) and "choices" in spec:
        return [int(v) for v in spec["choices"]]
    return [int(cfg.trainer.get("seed", cfg.seed))]


def make_bench(cfg: BenchConfig, table: str) -> Any:
    """The run's shared :class:`~experiments.studies.benchmark_minilm_cpu.context.Bench` (data, teacher, supernet)."""
    from experiments.studies.benchmark_minilm_cpu.context import Bench
    from trainers.config import SearchConfig

    base = SearchConfig.from_dict({"space": cfg.space, "latency_table": table, **cfg.trainer, "seed": cfg.seed})
    return Bench(base, val_examples=cfg.val_examples, progress=say)


def add_baselines(doc: dict[str, Any], names: list[str], work: Path, rounds: int | None, *,
                  command: str) -> dict[str, Any]:
    """Train, export and measure only the baselines ``names`` a finished run lacks; merge them into ``doc``.

    Everything but the latency is what a full run would give them: the run's own config (data caps,
    cached teacher, fine-tuning recipe), :func:`~experiments.studies.benchmark_minilm_cpu.methods.run_baselines`
    and :func:`evaluate_points`. The latency: the new artifacts (fp32 and ORT int8) are measured
    interleaved with the run's teacher and teacher-int8, re-exported; a host drifts 10–20 % between
    runs, so each new point's median and IQR are multiplied by then/now of the teacher of its deployment
    (:func:`~experiments.studies.benchmark_minilm_cpu.analysis.latency_scale`): its latency relative to
    the teacher measured side by side, on the run's scale. The raw measurement stays in
    ``latency_measured``; ``doc["added_baselines"]`` records the addition; the summary is recomputed.

    Raises:
        ConfigError: a name already in the run or unknown, or the run's latency table cannot be rebuilt.
    """
    from experiments.studies.benchmark_minilm_cpu import analysis as A
    from experiments.studies.benchmark_minilm_cpu.drift import searched_table
    from experiments.studies.benchmark_minilm_cpu.methods import baseline_names, check_baseline, run_baselines
    from nas.spaces import load_space

    cfg = BenchConfig.from_dict(doc["config"])
    n_layers = load_space(cfg.space).dims.num_layers
    for n in names:  # before minutes of setup
        check_baseline(n, n_layers)
    have = {p["name"].removesuffix("-int8") for p in doc["points"] if p["method"] == "baselines"}
    if clash := sorted(set(names) & (have | {"teacher"})):
        raise ConfigError(f"--add-baselines: {', '.join(clash)} already in the run")
    if doc.get("mode") == "quick":  # the quick run's teacher cache lives in its work folder
        os.environ["NAS_CACHE_DIR"] = str(work / "cache")
    table = searched_table(doc, work)
    say(f"latency table: {table}")
    bench = make_bench(cfg, table)
    then = {p["name"]: p for p in doc["points"] if p["method"] == "baselines"}
    load0 = loadavg()
    sub = Path(tempfile.mkdtemp(prefix="added-", dir=work))  # never an earlier run's artifacts of the same name
    run = run_baselines(bench, cfg.students_k, sub, say, only=["teacher", *names])
    clock = doc["measure"].get("clock_t1") or clock_t1(cfg, bench.table.protocol.get("clock", "wall"))
    points, _ = evaluate_points(bench, run.candidates, cfg, sub, clock=clock, rounds=rounds, alongside=False)
    for p in points:  # --remeasure finds them under the same --work
        p["artifact_dir"] = str(Path(sub.name) / p["artifact_dir"])
    now = {p["name"]: p for p in points}
    refs = {p["deploy"]: p["name"] for p in points if p["name"] in ("teacher", "teacher-int8")}
    scale = {d: A.latency_scale(then[r], now[r], cfg.threads) for d, r in refs.items()}
    added = [p for p in points if p["name"] not in refs.values()]
    for p in added:
        p.update(latency_measured=p["latency"], latency=A.rescaled(p["latency"], scale[p["deploy"]]),
                 latency_rescaled_by=f"baselines/{refs[p['deploy']]}")
    order = baseline_names(cfg.students_k, n_layers)
    rank = lambda p: order.index(b) if (b := p["name"].removesuffix("-int8")) in order else len(order)  # noqa: E731
    base = sorted([*(p for p in doc["points"] if p["method"] == "baselines"), *added], key=rank)
    doc["points"] = base + [p for p in doc["points"] if p["method"] != "baselines"]
    cost, extra = doc["summary"]["cost"], run_costs({"baselines": run})["baselines"]
    c = cost.setdefault("baselines", extra)
    if c is not extra:  # the baselines' cost now includes the added ones
        for k in ("wall_s", "cpu_s", "compute_s", "cpu_hours_allotted"):
            c[k] += extra[k]
        c["overhead_share"] = max(c["wall_s"] - c["compute_s"], 0.0) / c["wall_s"] if c["wall_s"] > 0 else 0.0
    doc.setdefault("added_baselines", []).append({
        "names": names, "points": [p["name"] for p in added], "command": command,
        "at": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "loadavg_before": load0, "loadavg_after": loadavg(),
        "onnxruntime": ort_version(), "rounds": rounds or cfg.measure.rounds, "wall_s": run.wall_s, "host": host(),
        "scale": scale, "reference_now": {r: now[r]["latency"] for r in refs.values()},
        "reference_accuracy": {r: {"run": then[r]["accuracy"], "now": now[r]["accuracy"]} for r in refs.values()},
    })
    for r in refs.values():
        say(f"{r}: run {A.lat(then[r]):.3f} ms, now {A.lat(now[r]):.3f} ms at 1 thread "
            f"(scale {scale[now[r]['deploy']]})")
    if now["teacher"]["accuracy"] != then["teacher"]["accuracy"]:
        say(f"WARNING: the teacher scores {now['teacher']['accuracy']:.4f} now, {then['teacher']['accuracy']:.4f} "
            "in the run: not the run's teacher")
    doc["summary"] = summarize(doc["points"], cost, cfg, doc["latency_table"].get("drift"))
    return doc


def arm_trainer(cfg: BenchConfig, arm: str, sample: Mapping[str, Any]) -> dict[str, Any]:
    """The trainer fields of a DNAS arm's experiment: ``trainer`` with the arm's own ``trainer`` overrides on top,
    less the fields its ``sample`` draws per trial."""
    over = getattr(cfg, arm).get("trainer") or {}
    return {k: v for k, v in {**cfg.trainer, **over}.items() if k not in sample}


def _run(cfg: BenchConfig, args: argparse.Namespace, table: str, work: Path, drift: dict[str, Any]) -> dict[str, Any]:
    from experiments.studies.benchmark_minilm_cpu.context import resolve_latency_cap
    from experiments.studies.benchmark_minilm_cpu.dnas import experiment_dict, run_dnas
    from experiments.studies.benchmark_minilm_cpu.methods import run_baselines, run_nsga2, run_random

    cap_ms, dnas_sample = resolve_latency_cap(cfg.latency_cap, table, cfg.space, cfg.dnas.get("sample", {}))
    if cap_ms is not None:
        say(f"latency cap ({cfg.latency_cap}): {cap_ms:.3f} ms predicted; DNAS target_fraction "
            f"{dnas_sample['target_fraction']}")
    t0 = time.perf_counter()
    bench = make_bench(cfg, table)
    if "dnas" in args.methods:  # teachers of every seed a DNAS trial may sample: shared, outside the budgets
        for seed in dnas_seeds(cfg):
            bench.cached_teacher(seed, progress=say)
    setup_s = time.perf_counter() - t0
    runs, candidates = {}, []
    runs["baselines"] = run_baselines(bench, list(cfg.students_k), work, say)
    candidates += runs["baselines"].candidates
    budget = cfg.budget_s
    for m in args.methods:
        say(f"== {m}: {budget:.0f} s")
        if m == "dnas":
            exp = experiment_dict("bench_dnas", space=cfg.space, latency_table=table,
                                  trainer=arm_trainer(cfg, "dnas", dnas_sample),
                                  dnas={**cfg.dnas, "sample": dnas_sample, "seed": cfg.seed})
            runs[m], cands = run_dnas(exp, budget, work, say)
            runs[m].candidates = cands
        elif m == "dnas_shared":
            sh = cfg.dnas_shared
            if not sh:
                raise ConfigError("dnas_shared: the method needs a dnas_shared section (supernet, trainer, sample)")
            _, sample = resolve_latency_cap(cfg.latency_cap, table, cfg.space, sh.get("sample") or cfg.dnas.get("sample", {}))
            exp = experiment_dict("bench_dnas_shared", space=cfg.space, latency_table=table,
                                  trainer=arm_trainer(cfg, "dnas_shared", sample),
                                  dnas={**cfg.dnas, "sample": sample, "seed": cfg.seed})
            exp["supernet"] = dict(sh["supernet"])
            runs[m], cands = run_dnas(exp, budget, work / "shared", say, method=m)
            runs[m].candidates = cands
            say(f"dnas_shared: Kendall tau of inherited vs fine-tuned accuracy {runs[m].extra['proxy']['kendall_tau']:.3f} "
                f"over {runs[m].extra['proxy']['trials']} trials")
        elif m == "random":
            runs[m] = run_random(bench, budget, work, say, seed=cfg.seed, cap_ms=cap_ms, max_trials=cfg.max_trials)
        else:
            runs[m] = run_nsga2(bench, budget, work, say, seed=cfg.seed,
                                population_size=int(cfg.nsga2.get("population_size", 8)), cap_ms=cap_ms,
                                max_trials=cfg.max_trials)
        candidates += runs[m].candidates
    clock = clock_t1(cfg, bench.table.protocol.get("clock", "wall"))
    points, during = evaluate_points(bench, candidates, cfg, work, clock=clock)
    if during:
        drift = {**drift, "during": during}
    if drift.get("checked"):
        from experiments.studies.benchmark_minilm_cpu.drift import recheck_table

        drift = {**drift, "after": recheck_table(table, say)}
    return {
        "config": cfg.to_dict(),
        "latency_table": {"id": bench.table.id, "path": table, "clock": bench.table.protocol.get("clock"),
                          "runtime_version": bench.table.runtime.get("version"),
                          "source": cfg.latency_table or "built for --quick", "drift": drift},
        "data": {"source": bench.data_source, "n_train": len(bench.train), "n_val": len(bench.val),
                 "n_test": len(bench.test), "teacher_torch_accuracy": bench.teacher.accuracy},
        "measure": {"samples_per_point": cfg.measure.rounds * cfg.measure.repeats, "order": ["baselines", *args.methods],
                    "clock_t1": clock},
        "latency_cap": {"kind": cfg.latency_cap, "predicted_ms": cap_ms,
                        "dnas_target_fraction": dnas_sample.get("target_fraction")},
        "setup_s": setup_s, "summary": summarize(points, run_costs(runs), cfg, drift), "points": points,
    }


if __name__ == "__main__":
    sys.exit(main())

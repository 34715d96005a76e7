"""Pure analysis of measured points: fronts, hypervolume, latency-table fidelity, budget hits, targets.

A point is a dict with at least ``method``, ``name``, ``accuracy`` and
``latency`` (``{"t1": {"median_ms", "iqr_ms", ...}, "t2": ...}``); searched and
fp32 points also carry ``arch`` and ``predicted_ms`` (the table's prediction at 1 thread).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from experiments.studies.benchmark_minilm_cpu.hypervolume import hypervolume_2d
from nas.search.pareto import pareto_front

SEARCH_METHODS = ("dnas", "dnas_shared", "random", "nsga2")  # dnas_shared: ours with one shared supernet per study
REFERENCE = "full-finetuned"  # the baseline judged against (methods.FULL_FINETUNED)
DIRECTIONS = ("maximize", "minimize")


def lat(point: Mapping[str, Any], threads: int = 1) -> float:
    return float(point["latency"][f"t{threads}"]["median_ms"])


def front(points: Sequence[Mapping[str, Any]], threads: int = 1) -> list[Mapping[str, Any]]:
    """Non-dominated points in (accuracy ↑, measured latency ↓), fastest first."""
    f = pareto_front(list(points), DIRECTIONS, key=lambda p: (p["accuracy"], lat(p, threads)))
    return sorted(f, key=lambda p: lat(p, threads))


def accuracy_reference(points: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The point the "within N pt" targets are judged against: ``full-finetuned`` (fp32), else ``teacher``.

    The full model fine-tuned with the students' recipe is the fair bar for fine-tuned students and
    subnets; the frozen teacher is the reference of runs made before that baseline existed.
    """
    by_name = {p["name"]: p for p in points if p.get("method") == "baselines"}
    return by_name.get(REFERENCE) or by_name["teacher"]


def in_space_measured(points: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Points the table predicts (``predicted_ms``) whose latency was measured in the run's own rounds.

    A baseline added later (``latency_rescaled_by``) is left out: its latency is a later measurement put
    on the run's scale through the teacher's, not a measurement the table's prediction can be judged on.
    """
    return [p for p in points if p.get("predicted_ms") is not None and not p.get("latency_rescaled_by")]


def latency_scale(then: Mapping[str, Any], now: Mapping[str, Any], threads: Sequence[int]) -> dict[str, float]:
    """``{"t<T>": then / now}`` of one artifact's median latency: what turns a re-measurement into the run's scale."""
    return {f"t{t}": lat(then, t) / lat(now, t) for t in threads}


def rescaled(latency: Mapping[str, Mapping[str, Any]], scale: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    """``latency`` (``{"t<T>": {median_ms, iqr_ms, ...}}``) with the times multiplied by ``scale["t<T>"]``."""
    return {t: {**v, "median_ms": v["median_ms"] * scale[t], "iqr_ms": v["iqr_ms"] * scale[t]}
            for t, v in latency.items()}


def hypervolume(points: Sequence[Mapping[str, Any]], *, teacher_ms: float, ref: Mapping[str, float],
                threads: int = 1) -> float:
    """Hypervolume in (accuracy, latency / teacher fp32 latency) with reference ``(ref.accuracy, ref.latency_fraction)``."""
    pts = [(p["accuracy"], lat(p, threads) / teacher_ms) for p in points]
    return hypervolume_2d(pts, (ref["accuracy"], ref["latency_fraction"]))


def fidelity(points: Sequence[Mapping[str, Any]], within: float = 0.10, *, scale: float = 1.0) -> dict[str, Any]:
    """Predicted (table) vs measured latency at 1 thread: Spearman, MAPE, share within ``±within``.

    ``scale`` multiplies every prediction (the host's uniform drift, measured on the table's
    calibration models alongside the points: :func:`experiments.studies.benchmark_minilm_cpu.run.measure_points`).
    ``median_ratio`` is the median of measured / predicted: the uniform offset, comparable with a drift ratio.
    """
    pairs = [(scale * float(p["predicted_ms"]), lat(p)) for p in points if p.get("predicted_ms") is not None]
    out: dict[str, Any] = {"n": len(pairs)}
    if not pairs:
        return out
    rel = [(pr - m) / m for pr, m in pairs]
    out.update(mape=sum(abs(r) for r in rel) / len(rel),
               within_share=sum(abs(r) <= within + 1e-9 for r in rel) / len(rel),  # ±within inclusive
               mean_signed=sum(rel) / len(rel), max_abs=max(abs(r) for r in rel),
               median_ratio=statistics.median(m / pr for pr, m in pairs))
    if len(pairs) >= 3:
        from scipy.stats import spearmanr

        out["spearman"] = float(spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic)
    return out


def _affine_fit(pairs: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """``(a, b)`` of ``measured ≈ a·predicted + b``: the table calibration's ``affine`` form (relative least squares)."""
    import numpy as np

    from nas.latency.calibration import fit_form, make_rows

    pr, m = (np.array(v, dtype=float) for v in zip(*pairs))
    cal = fit_form("affine", make_rows(pr, np.zeros_like(pr), m))
    return cal.scale, cal.constant_ms


def refit_fidelity(points: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]],
                   within: float = 0.10, *, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Fidelity on ``targets`` once the table is recalibrated on this run's own measurements, cross-validated.

    The prediction is refitted as ``a·predicted + b`` on the in-space ``points`` (``targets`` among
    them); each target is predicted by the fit on the folds that do not hold it. The fit is the
    table's ``scale`` and ``affine`` calibration forms (and any uniform drift correction) made on
    measurements taken side by side with the targets', so what stays outside ``±within`` is the
    table's per-architecture error plus measurement noise: the part of a fidelity miss that
    recalibrating the table on today's host would not remove.

    Returns:
        :func:`fidelity`'s keys for the targets (with their held-out predictions), plus ``folds``,
        ``fit_points`` and the ``a``, ``b`` of the fit on every point; ``{"n": 0}`` with fewer
        than ``2·folds`` points.
    """
    import random

    pts = [p for p in points if p.get("predicted_ms") is not None]
    if len(pts) < 2 * folds or not targets:
        return {"n": 0}
    order = list(range(len(pts)))
    random.Random(seed).shuffle(order)
    fold_of = {id(pts[i]): k % folds for k, i in enumerate(order)}
    fits = [_affine_fit([(float(p["predicted_ms"]), lat(p)) for p in pts if fold_of[id(p)] != f]) for f in range(folds)]
    held_out = []
    for t in targets:
        if id(t) not in fold_of:
            raise ValueError(f"refit_fidelity: target {t.get('method')}/{t.get('name')} is not among the points")
        a, b = fits[fold_of[id(t)]]
        held_out.append({**t, "predicted_ms": a * float(t["predicted_ms"]) + b})
    a, b = _affine_fit([(float(p["predicted_ms"]), lat(p)) for p in pts])
    return {**fidelity(held_out, within), "folds": folds, "fit_points": len(pts), "a": a, "b": b}


def budget_hits(points: Sequence[Mapping[str, Any]], *, drift: float | None = None) -> dict[str, Any]:
    """Share of DNAS trials whose measured (1 thread) and predicted latency meet the trial's target.

    With ``drift`` (the host's now/then ratio on the table's calibration models), also the measured rates
    with that uniform slow-down divided out (``drift_corrected_*``): whether the search landed in its budget
    on the machine the table describes, apart from how much the host's speed moved since.
    """
    with_t = [p for p in points if p.get("target_ms") is not None and math.isfinite(p["target_ms"])]
    if not with_t:
        return {"n": 0}

    def share(ok: Any) -> float:
        return sum(map(ok, with_t)) / len(with_t)

    out = {"n": len(with_t),
           "measured_hit_rate": share(lambda p: lat(p) <= p["target_ms"]),
           "predicted_hit_rate": share(lambda p: p["predicted_ms"] <= p["target_ms"]),
           "within_10pct_of_target_rate": share(lambda p: lat(p) <= 1.1 * p["target_ms"])}
    if drift:
        out.update(drift=drift,
                   drift_corrected_hit_rate=share(lambda p: lat(p) / drift <= p["target_ms"]),
                   drift_corrected_within_10pct_rate=share(lambda p: lat(p) / drift <= 1.1 * p["target_ms"]))
    return out


def best_speedup(points: Sequence[Mapping[str, Any]], *, reference_acc: float, max_drop: float,
                 baseline_ms: float) -> dict[str, Any] | None:
    """The fastest point within ``max_drop`` (accuracy, fraction) of ``reference_acc``, as a speed-up over
    ``baseline_ms``."""
    ok = [p for p in points if p["accuracy"] >= reference_acc - max_drop]
    if not ok:
        return None
    p = min(ok, key=lat)
    return {"name": f"{p['method']}/{p['name']}", "accuracy": p["accuracy"], "latency_ms": lat(p),
            "speedup": baseline_ms / lat(p)}


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else (math.inf if a > 0 else math.nan)


def targets(summary: Mapping[str, Any], goals: Mapping[str, float]) -> list[dict[str, Any]]:
    """Every issue target: key, goal, value, met, and by how much (``gap``: value − goal, in the goal's unit).

    Keys: ``speedup``, ``hv_nsga2``, ``hv_random``, ``fidelity`` and, when the summary has
    ``hypervolume_region``, ``hv_region_nsga2`` and ``hv_region_random`` (the same goals, measured in the
    region that beats the teacher's ORT int8).

    ``speedup`` is judged within the drop of ``summary["accuracy_reference"]`` (the full fine-tuned model;
    the teacher for runs without one); with ``summary["speedup_vs_teacher"]`` the row also carries
    ``vs_frozen_teacher`` (``value``, ``met``, ``detail``): the same goal judged against the frozen teacher.
    """
    rows = []
    ref = summary.get("accuracy_reference") or {"name": "teacher"}
    ref_text = "the full model fine-tuned alike" if ref["name"] == REFERENCE else "the teacher"

    def speedup_row(sp: Mapping[str, Any] | None) -> dict[str, Any]:
        v = sp["speedup"] if sp else 0.0
        return {"value": v, "met": v >= goals["speedup_vs_teacher_int8"],
                "detail": sp["name"] if sp else "no DNAS point within the accuracy drop"}

    rows.append({"key": "speedup",
                 "target": f"DNAS front point within {goals['max_accuracy_drop_points']:g} pt of {ref_text}, "
                           f"≥ {goals['speedup_vs_teacher_int8']:g}× faster than teacher ORT int8 (1 thread)",
                 "goal": goals["speedup_vs_teacher_int8"], **speedup_row(summary["speedup"].get("dnas"))})
    if ref["name"] != "teacher" and "speedup_vs_teacher" in summary:  # the frozen teacher's verdict beside it
        rows[-1]["vs_frozen_teacher"] = speedup_row(summary["speedup_vs_teacher"].get("dnas"))

    def hv_rows(hv: Mapping[str, float], prefix: str, where: str, ours: str = "dnas") -> None:
        if ours not in hv:
            return
        name = "DNAS" if ours == "dnas" else "shared-supernet DNAS"
        for other, key in (("nsga2", "hv_ratio_vs_nsga2"), ("random", "hv_ratio_vs_random")):
            if other not in hv:  # not run (--methods): nothing to judge against
                continue
            r = ratio(hv.get(ours, 0.0), hv.get(other, 0.0))
            rows.append({"key": f"{prefix}{'' if ours == 'dnas' else 'shared_'}{other}",
                         "target": f"hypervolume{where} {name} / {other} ≥ {goals[key]:g}",
                         "goal": goals[key], "value": r, "met": bool(r >= goals[key]),
                         "detail": f"{hv.get(ours, 0):.4f} vs {hv.get(other, 0):.4f}"})

    hv_rows(summary["hypervolume"], "hv_", " (whole range)" if "hypervolume_region" in summary else "")
    fid = summary["fidelity"]["search_fronts"]
    share = fid.get("within_share", 0.0)
    rows.append({"key": "fidelity",
                 "target": f"≥ {goals['latency_within_share']:.0%} of front points measured within "
                           f"±{goals['latency_within']:.0%} of the table's prediction",
                 "goal": goals["latency_within_share"], "value": share,
                 "met": share >= goals["latency_within_share"], "detail": f"{fid.get('n', 0)} front points"})
    if "hypervolume_region" in summary:
        reg = summary.get("region", {})
        where = (f" (region beating teacher int8: accuracy > frozen teacher − {reg.get('accuracy_drop_points', 0):g} pt, "
                 "latency < teacher int8)")
        hv_rows(summary["hypervolume_region"], "hv_region_", where)
        hv_rows(summary["hypervolume_region"], "hv_region_", where, ours="dnas_shared")
    shared_rows(summary, goals, rows)
    for r in rows:
        r["gap"] = r["value"] - r["goal"] if math.isfinite(r["value"]) else None
    return rows


def verdict(row: Mapping[str, Any]) -> str:
    """A target row's verdict: ``met``, ``not judged`` (its condition unmet, e.g. fewer than 10 trials) or ``missed``."""
    return "met" if row["met"] else ("missed" if row.get("judged", True) else "not judged")


def shared_rows(summary: Mapping[str, Any], goals: Mapping[str, float], rows: list[dict[str, Any]]) -> None:
    """Issue 31's rows when the run has the ``dnas_shared`` method: its trials per hour over per-trial DNAS's
    (goal ``shared_trials_per_hour_vs_dnas``, 3) and the Kendall τ of inherited vs fine-tuned accuracy of each DNAS
    method with ≥ 10 trials (goal ``proxy_kendall_tau``, 0.6)."""
    cost = summary.get("cost") or {}
    if "dnas_shared" not in cost:
        return
    per_h = {m: cost[m]["trials"] / cost[m]["wall_s"] * 3600 for m in ("dnas", "dnas_shared")
             if m in cost and cost[m].get("wall_s")}
    goal = goals.get("shared_trials_per_hour_vs_dnas", 3.0)
    r = ratio(per_h.get("dnas_shared", 0.0), per_h.get("dnas", 0.0))
    rows.append({"key": "shared_trials_per_hour", "target": f"shared-supernet DNAS trials per hour ≥ {goal:g}× "
                 "per-trial DNAS's (the shared supernet's training inside its clock)", "goal": goal, "value": r,
                 "met": bool(r >= goal), "detail": ", ".join(f"{m} {v:.1f}/h" for m, v in per_h.items())})
    goal = goals.get("proxy_kendall_tau", 0.6)
    for m in ("dnas", "dnas_shared"):
        proxy = (cost.get(m) or {}).get("proxy") or {}
        n, tau = int(proxy.get("trials", 0)), float(proxy.get("kendall_tau", math.nan))
        judged = n >= 10
        rows.append({"key": f"proxy_tau_{m}", "target": f"{m}: Kendall τ of inherited vs fine-tuned accuracy ≥ {goal:g} "
                     "(with ≥ 10 trials)", "goal": goal, "value": tau, "judged": judged,
                     "met": bool(judged and math.isfinite(tau) and tau >= goal),
                     "detail": f"{n} trials" + ("" if judged else " (fewer than 10: not judged)")
                     + _same_budget(proxy)})


def _same_budget(proxy: Mapping[str, Any]) -> str:
    """The same-budget τ beside a pooled one whose trials fine-tuned for sampled budgets (nas.search.proxy)."""
    if "kendall_tau_same_budget" not in proxy:
        return ""
    return (f"; within fine-tuning-budget halves (≤ / > {proxy['budget_median']:g} steps) "
            f"{proxy['kendall_tau_same_budget']:.3f}")

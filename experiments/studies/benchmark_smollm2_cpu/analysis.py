"""Pure analysis of the decoder benchmark's measured points, per phase, on the MiniLM benchmark's rules.

A decoder point carries both phases: ``latency`` ``{ttft_ms: {"t1": stats, "t2": ...}, tpot_ms: ...}``,
``predicted`` ``{ttft_ms, tpot_ms}`` and (DNAS) ``targets``. :func:`view` turns it into the
single-latency point :mod:`experiments.studies.benchmark_minilm_cpu.analysis` works on, so the
fronts, hypervolumes, fidelity and budget hits follow one copy of each rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from experiments.studies.benchmark_minilm_cpu import analysis as A
from experiments.studies.benchmark_smollm2_cpu.config import PHASES

SEARCH_METHODS = A.SEARCH_METHODS
FULL_FP32 = "full-fp32"
QUANTIZE_ONLY = ("full-int8", "full-int8-dynamic", "full-int4")


def view(point: Mapping[str, Any], phase: str) -> dict[str, Any]:
    """``point`` seen in one phase: ``latency``, ``predicted_ms`` and ``target_ms`` of that phase."""
    return {**point, "latency": point["latency"][phase], "predicted_ms": (point.get("predicted") or {}).get(phase),
            "target_ms": (point.get("targets") or {}).get(phase)}


def baseline(points: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    return next((p for p in points if p["method"] == "baselines" and p["name"] == name), None)


def best_quantized(points: Sequence[Mapping[str, Any]], threads: int = 1) -> Mapping[str, Any]:
    """The fastest (measured TPOT) of the full model's int8, onnxruntime-alone int8 and int4 deployments (fp32 if none ran)."""
    found = [p for p in (baseline(points, n) for n in QUANTIZE_ONLY) if p is not None]
    if not found:
        return baseline(points, FULL_FP32) or points[0]
    return min(found, key=lambda p: A.lat(view(p, PHASES[1]), threads))


def method_points(points: Sequence[Mapping[str, Any]], method: str) -> list[Mapping[str, Any]]:
    return [p for p in points if p["method"] == method]


def front_union(points: Sequence[Mapping[str, Any]], methods: Sequence[str] = SEARCH_METHODS) -> list[Mapping[str, Any]]:
    """Points on any searched method's front in either phase (1 thread), each once."""
    seen, out = set(), []
    for m in methods:
        for b in PHASES:
            for v in A.front([view(p, b) for p in method_points(points, m)]):
                if v["key"] not in seen:
                    seen.add(v["key"])
                    out.append(next(p for p in points if p["key"] == v["key"]))
    return out


def within_both(points: Sequence[Mapping[str, Any]], ratios: Mapping[str, float], within: float) -> dict[str, Any]:
    """Share of ``points`` whose prediction is within ``±within`` of the measurement in *both* phases,
    reference-normalised by ``ratios[phase]`` and raw."""
    def ok(p: Mapping[str, Any], scale: Mapping[str, float]) -> bool:
        return all(abs(scale.get(b, 1.0) * p["predicted"][b] - A.lat(view(p, b))) <= (within + 1e-9) * A.lat(view(p, b))
                   for b in PHASES)
    pts = [p for p in points if p.get("predicted")]
    if not pts:
        return {"n": 0}
    return {"n": len(pts), "normalised_share": sum(ok(p, ratios) for p in pts) / len(pts),
            "raw_share": sum(ok(p, {}) for p in pts) / len(pts)}


def best_tpot_speedup(points: Sequence[Mapping[str, Any]], *, reference_acc: float, max_drop: float,
                      quantized: Mapping[str, Any]) -> dict[str, Any] | None:
    """The point within ``max_drop`` (fraction) of ``reference_acc`` with TTFT no worse than ``quantized``'s and
    the lowest measured TPOT, as a TPOT speed-up over ``quantized`` (1 thread)."""
    q_ttft, q_tpot = A.lat(view(quantized, PHASES[0])), A.lat(view(quantized, PHASES[1]))
    ok = [p for p in points if p["accuracy"] >= reference_acc - max_drop - 1e-12 and A.lat(view(p, PHASES[0])) <= q_ttft]
    if not ok:
        return None
    p = min(ok, key=lambda p: A.lat(view(p, PHASES[1])))
    tpot = A.lat(view(p, PHASES[1]))
    return {"name": p["key"], "accuracy": p["accuracy"], "ttft_ms": A.lat(view(p, PHASES[0])), "tpot_ms": tpot,
            "speedup": q_tpot / tpot}


def summarize(points: list[dict[str, Any]], cost: Mapping[str, Any], cfg: Mapping[str, Any],
              references: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the report states, from the measured points (pure).

    ``cfg`` is :meth:`DecoderBenchConfig.to_dict`; ``references`` the per-phase reference reports of the
    1-thread measurement (``{phase: {"ratio", ...}}``; empty: raw only).
    """
    full = baseline(points, FULL_FP32)
    if full is None:
        raise ValueError("summarize: no full-fp32 baseline among the points")
    quant = best_quantized(points)
    ref_acc = float(full["accuracy"])
    drop = float(cfg["region"]["accuracy_drop_points"]) / 100.0
    methods = [m for m in (*SEARCH_METHODS, "baselines") if method_points(points, m)]
    ratios = {b: float(r["ratio"]) for b, r in references.items()}
    within = float(cfg["targets"].get("latency_within", 0.10))
    s: dict[str, Any] = {"accuracy_reference": {"name": FULL_FP32, "accuracy": ref_acc},
                         "best_quantized": {"name": quant["name"], "accuracy": quant["accuracy"],
                                            **{b: A.lat(view(quant, b)) for b in PHASES}},
                         "reference_ratio": ratios, "cost": dict(cost), "phases": {}}
    for b in PHASES:
        full_ms = A.lat(view(full, b))
        region = {"accuracy": ref_acc - drop, "latency_fraction": A.lat(view(quant, b)) / full_ms}
        ph: dict[str, Any] = {"full_fp32_ms": full_ms, "region_reference": region, "hypervolume": {},
                              "hypervolume_region": {}, "fronts": {}}
        for m in methods:
            vs = [view(p, b) for p in method_points(points, m)]
            ph["hypervolume"][m] = A.hypervolume(vs, teacher_ms=full_ms, ref=cfg["reference"])
            ph["hypervolume_region"][m] = A.hypervolume(vs, teacher_ms=full_ms, ref=region)
            ph["fronts"][m] = [v["key"] for v in A.front(vs)]
        fronts = [view(p, b) for p in front_union(points)]
        ph["fidelity_front"] = {"raw": A.fidelity(fronts, within),
                                "normalised": A.fidelity(fronts, within, scale=ratios.get(b, 1.0))}
        every = [view(p, b) for p in points if p.get("predicted")]
        ph["fidelity_all"] = {"raw": A.fidelity(every, within),
                              "normalised": A.fidelity(every, within, scale=ratios.get(b, 1.0))}
        ph["budget_hits"] = A.budget_hits([view(p, b) for p in method_points(points, "dnas")],
                                          drift=ratios.get(b))
        s["phases"][b] = ph
    s["fidelity_front_both"] = within_both(front_union(points), ratios, within)
    s["speedup"] = {m: best_tpot_speedup(method_points(points, m), reference_acc=ref_acc, max_drop=drop, quantized=quant)
                    for m in methods}
    s["targets"] = targets(s, cfg["targets"])
    return s


def targets(s: Mapping[str, Any], goals: Mapping[str, float]) -> list[dict[str, Any]]:
    """Every issue target: key, target text, goal, value, met, gap (value − goal)."""
    rows = []
    sp = s["speedup"].get("dnas")
    q = s["best_quantized"]["name"]
    g = goals.get("tpot_speedup_vs_quantized", 1.5)
    rows.append({"key": "tpot_speedup",
                 "target": f"DNAS point within {goals.get('max_accuracy_drop_points', 1.0):g} pt of full fp32, TTFT ≤ "
                           f"{q}'s, TPOT ≥ {g:g}× lower than {q} (1 thread)",
                 "goal": g, "value": sp["speedup"] if sp else 0.0, "met": bool(sp and sp["speedup"] >= g),
                 "detail": sp["name"] if sp else "no DNAS point within the accuracy drop and the TTFT bound"})
    for b in PHASES:
        for kind, key in (("hypervolume_region", "region"), ("hypervolume", "whole")):
            hv = s["phases"][b][kind]
            for other in ("nsga2", "random"):
                goal = goals.get(f"hv_ratio_vs_{other}", 1.2)
                r = A.ratio(hv.get("dnas", 0.0), hv.get(other, 0.0))
                rows.append({"key": f"hv_{key}_{b}_{other}",
                             "target": f"{b} hypervolume ({'region beating the best quantize-only full model' if key == 'region' else 'whole range'}) "
                                       f"DNAS / {other} ≥ {goal:g}",
                             "goal": goal, "value": r, "met": bool(r >= goal),
                             "detail": f"{hv.get('dnas', 0):.4g} vs {hv.get(other, 0):.4g}"})
    fb = s["fidelity_front_both"]
    share, goal = fb.get("normalised_share", 0.0), goals.get("latency_within_share", 0.95)
    rows.append({"key": "fidelity", "target": f"≥ {goal:.0%} of front points within ±{goals.get('latency_within', 0.1):.0%} "
                                               "of both tables, reference-normalised",
                 "goal": goal, "value": share, "met": bool(share >= goal),
                 "detail": f"{fb.get('n', 0)} front points; raw {fb.get('raw_share', 0.0):.0%}"})
    for r in rows:
        r["gap"] = r["value"] - r["goal"] if math.isfinite(r["value"]) else None
    return rows

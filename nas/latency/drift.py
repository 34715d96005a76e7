"""Is a latency table still true on this machine? Re-measure its calibration models and re-anchor.

A table is measured once, but a shared or thermally throttled machine drifts: the
same model can run 10–15 % slower hours later. :func:`check_drift` re-measures
the table's own calibration models (the whole subnets its calibration was fitted
on, re-derived from the space and the table's seed) with the table's backend and
protocol, and compares them with what the table recorded (:func:`calibration_runners`
and :func:`drift_report` do the same for models measured interleaved with other
entries, e.g. the artifacts of a benchmark, so that drift and measurements share
one time window; :func:`nas.latency.reference.reference_runners` picks a few of them as the
*references* whose measured/recorded ratio normalises predictions). :func:`recalibrated`
refits the calibration on the new measurements (entries unchanged, so relative
costs stay the table's; only the map from block sum to whole-model latency moves).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from nas.errors import ArchError, LatencyTableError
from nas.latency.calibration import fit_calibration
from nas.latency.table import LatencyTable

DRIFT_TOLERANCE = 0.05  # |median ratio − 1| above this: the table no longer describes the machine


def drift_summary(then_ms: list[float], now_ms: list[float]) -> dict[str, Any]:
    """Median and quartiles of ``now/then`` per model (pure)."""
    if len(then_ms) != len(now_ms) or not then_ms:
        raise LatencyTableError("calibration.models: nothing to compare")
    ratios = [n / t for t, n in zip(then_ms, now_ms)]
    q = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else [ratios[0]] * 3
    median = statistics.median(ratios)
    return {"ratios": ratios, "median_ratio": median, "q1": q[0], "q3": q[2],
            "drifted": abs(median - 1) > DRIFT_TOLERANCE, "tolerance": DRIFT_TOLERANCE}


def calibration_runners(table: LatencyTable, *, strict: bool = False, supernet: Any = None,
                        only: Sequence[int] | None = None, backend: Any = None
                        ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Runners of ``table``'s calibration models on this machine, ready to measure (with other entries or alone).

    Args:
        only: prepare runners for these model indices only (default: all; what
            :func:`nas.latency.reference.reference_runners` uses). ``rows`` still covers every model.
        backend: the table's backend, already made (default: :func:`nas.latency.builder.backend_for`).

    Returns:
        ``(runners, rows)``: ``runners[str(n)]`` runs model ``n`` (exported and quantized like ``nas export``,
        with the table's backend, threads, shape, phase and int4 accuracy level); ``rows[n]`` is ``{arch, layers, raw_ms, raw_by_bits,
        then_ms}`` (what the table recorded and predicts for it), for :func:`drift_report`.

    Raises:
        LatencyTableError: the table has no calibration models, they cannot be re-derived
            (another space or seed), or (``strict``) it was built on another device or runtime.
    """
    from nas.latency.builder import backend_for, model_runner, runner_options
    from nas.latency.device import device_info
    from nas.latency.predictor import raw_by_bits, raw_latency_ms
    from nas.spaces import load_space
    from nas.spaces.summary import parse_arch

    models = (table.calibration or {}).get("models") or []
    if len(models) < 2:
        raise LatencyTableError(f"{table.id}: calibration.models: needs the whole models the table was calibrated on")
    space = load_space(table.space_name)
    archs = []
    for m in models:
        try:
            archs.append(parse_arch(space, str(m["arch"])))
        except (ArchError, KeyError) as e:
            raise LatencyTableError(f"{table.id}: calibration.models: cannot re-derive {m.get('arch')!r} in space "
                                    f"{space.name!r} ({e}); rebuild the table") from None
    wanted = set(range(len(archs)) if only is None else only)
    if not wanted <= set(range(len(archs))):
        raise LatencyTableError(f"{table.id}: calibration.models: no model {sorted(wanted - set(range(len(archs))))}")
    backend = backend if backend is not None else backend_for(table)
    table.check_environment(device=device_info(), runtime=backend.info(), strict=strict)
    if supernet is None:
        from nas.supernet.supernet import Supernet

        supernet = Supernet.build(space)
    runners = {str(n): model_runner(supernet, a, backend, **runner_options(table))
               for n, a in enumerate(archs) if n in wanted}
    rows = [{"arch": m["arch"], "layers": len(space.kept_layers(a)), "raw_ms": raw_latency_ms(table, space, a),
             "raw_by_bits": {str(b): v for b, v in raw_by_bits(table, space, a).items()},
             "then_ms": m["measured_ms"]}
            for m, a in zip(models, archs)]
    return runners, rows


def drift_report(table: LatencyTable, rows: list[dict[str, Any]], stats: Mapping[str, Mapping[str, Any]], *,
                 clock: str) -> dict[str, Any]:
    """:func:`check_drift`'s report from :func:`calibration_runners`' ``rows`` and their measured ``stats`` (pure).

    ``stats[str(n)]`` holds model ``n``'s ``median_ms`` and ``iqr_ms`` (:func:`nas.latency.protocol.measure`).
    """
    missing = [str(n) for n in range(len(rows)) if str(n) not in stats]
    if missing:
        raise LatencyTableError(f"{table.id}: calibration.models: not measured: {', '.join(missing)}")
    rows = [{**r, "now_ms": stats[str(n)]["median_ms"], "iqr_ms": stats[str(n)]["iqr_ms"]} for n, r in enumerate(rows)]
    summary = drift_summary([r["then_ms"] for r in rows], [r["now_ms"] for r in rows])
    del summary["ratios"]
    return {"table": table.path or table.id, "models": rows, **summary, "clock": clock,
            "measured": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def check_drift(table: LatencyTable, *, rounds: int | None = None, strict: bool = False, supernet: Any = None,
                log: TextIO | None = None) -> dict[str, Any]:
    """Re-measure ``table``'s calibration models now, with the table's own protocol.

    Returns:
        ``{"models": [{arch, layers, raw_ms, raw_by_bits, then_ms, now_ms, iqr_ms}], "median_ratio", "q1", "q3",
        "drifted", "tolerance", "clock", "measured"}``.

    Raises:
        LatencyTableError: as :func:`calibration_runners`.
    """
    from nas.latency.protocol import Protocol, measure

    runners, rows = calibration_runners(table, strict=strict, supernet=supernet)
    known = set(Protocol.__dataclass_fields__)
    proto = Protocol(**{**{k: v for k, v in dict(table.protocol or {}).items() if k in known},
                        "max_noisy_fraction": 1.0, **({"rounds": rounds} if rounds else {})})
    return drift_report(table, rows, measure(runners, proto, log=log), clock=proto.clock)


def recalibrated(table: LatencyTable, drift: dict[str, Any]) -> LatencyTable:
    """``table`` with its calibration refitted on ``drift``'s measurements (pure; entries unchanged).

    Every form is considered again (``per_precision`` where the rows carry ``raw_by_bits``), so the
    form may change with the host.
    """
    rows = drift["models"]
    split = [{int(b): float(v) for b, v in r["raw_by_bits"].items()} for r in rows] \
        if all("raw_by_bits" in r for r in rows) else None
    cal = fit_calibration([r["raw_ms"] for r in rows], [r["layers"] for r in rows], [r["now_ms"] for r in rows],
                          raw_by_bits=split)
    cal["models"] = [{"arch": r["arch"], "raw_ms": r["raw_ms"], "measured_ms": r["now_ms"], "iqr_ms": r["iqr_ms"]}
                     for r in rows]
    cal["recalibrated"] = {"measured": drift["measured"], "median_ratio": drift["median_ratio"],
                           "previous": {k: v for k, v in (table.calibration or {}).items() if k != "models"}}
    return dataclasses.replace(table, calibration=cal)

"""Validation: predicted vs measured latency of random mixed-precision subnets.

Each subnet is derived, exported and quantized exactly like ``nas export``
does, run by the table's backend with the table's threads, shape, phase and
int4 accuracy level, and measured in interleaved groups under the table's
protocol: for a prefill table one call over ``seq`` tokens, for a decode table
one token after a ``context``-long cache (a decoder's whole generation graph,
:func:`nas.latency.builder.model_runner`).

Absolute times drift between a table's build and its use, so every group also
measures a few of the table's own calibration models (the *references*,
:mod:`nas.latency.reference`) in the same rounds; each prediction is scaled by
its group's measured/recorded ratio. That *normalised* error is the primary
figure; the raw error (prediction against measurement as is) stays beside it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from nas.errors import ConfigError
from nas.files import atomic_file
from nas.latency.reference import DEFAULT_REFERENCES
from nas.latency.table import LatencyTable
from nas.spaces.space import Arch

Runner = Callable[[], object]


def agreement(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Rank and error agreement of predictions with measurements.

    Returns:
        ``{"spearman", "kendall", "mape", "within_10pct", "max_abs_pct", "mean_signed_pct"}``;
        errors are fractions of the measured latency.
    """
    from scipy.stats import kendalltau, spearmanr

    if len(predicted) != len(measured) or len(measured) < 2:
        raise ConfigError("samples: need at least 2 predicted/measured pairs of equal length")
    rel = [(p - m) / m for p, m in zip(predicted, measured)]
    return {
        "spearman": float(spearmanr(predicted, measured).statistic),
        "kendall": float(kendalltau(predicted, measured).statistic),
        "mape": sum(abs(r) for r in rel) / len(rel),
        "within_10pct": sum(abs(r) <= 0.10 for r in rel) / len(rel),
        "max_abs_pct": max(abs(r) for r in rel),
        "mean_signed_pct": sum(rel) / len(rel),
    }


def _loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def validate_table(
    table: LatencyTable,
    *,
    samples: int,
    seed: int = 0,
    strict: bool = False,
    group: int = 10,
    rounds: int | None = None,
    clock: str | None = None,
    log: TextIO | None = None,
    supernet: Any = None,
    references: int = DEFAULT_REFERENCES,
    prepare: Callable[[Arch], Runner] | None = None,
) -> dict[str, Any]:
    """Measure ``samples`` random subnets and compare them with the table's predictions, raw and reference-normalised.

    Every interleaved group measures, in the same :func:`~nas.latency.protocol.measure` call as its
    subnets, ``references`` of the table's calibration models (:mod:`nas.latency.reference`); the
    group's ratio ``r`` (median measured/recorded) scales each of its predictions: normalised error
    ``(p·r − m)/m``, the primary figure, with the raw ``(p − m)/m`` beside it.

    Args:
        table: the table to validate (its space is loaded by name and hash-checked).
        samples: random architectures (``space.sample``) to measure.
        seed: seed of the architectures.
        strict: a device or runtime mismatch is an error instead of a warning.
        group: subnets measured interleaved at a time (bounds memory).
        rounds: interleaved rounds per group (default: the table's protocol).
        clock: ``wall`` or ``thread-cpu`` (default: the table's protocol clock).
        log: progress lines.
        supernet: a built supernet of the table's space (built here if None).
        references: reference models per group (0: none, raw figures only; a table without
            calibration models has none either, and says so in ``log``).
        prepare: how a subnet's runner is made (default: :func:`nas.latency.builder.model_runner` with the
            table's backend and :func:`~nas.latency.builder.runner_options`); e.g. one that reuses an
            export across a decoder's prefill and decode tables.

    Returns:
        ``primary`` (``"normalised"``, or ``"raw"`` without references); ``normalised`` and ``raw``:
        :func:`agreement`'s figures of each error (``normalised`` None without references);
        ``references``: ``{"count", "models": [{index, arch, layers, recorded_ms}], "groups":
        [{"subnets": [first, last], "ratio", "measured_ms", "ratios"}]}`` (None without);
        ``table``, ``samples``, ``seed``, ``threads``, ``loadavg_before/after``, ``seconds``; and one
        row per subnet in ``subnets``: ``predicted_ms``, ``measured_ms``, ``iqr_ms``, ``noisy``, ``error``
        (raw), ``ratio`` (its group's), ``normalised_error``. The top-level ``spearman``, ``kendall``,
        ``mape``, ``within_10pct``, ``max_abs_pct`` and ``mean_signed_pct`` are the raw figures (as before
        references existed), kept for existing readers.

    Raises:
        LatencyTableError: the table is for another space hash, or (``strict``) another device/runtime.
        ConfigError: ``samples`` < 2, ``references`` < 0.
    """
    from nas.latency.builder import backend_for, model_runner, runner_options
    from nas.latency.device import device_info
    from nas.latency.predictor import Predictor
    from nas.latency.protocol import Protocol, measure
    from nas.latency.reference import normalised_error, reference_report, reference_runners
    from nas.spaces import load_space
    from nas.spaces.summary import format_arch

    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise ConfigError(f"samples: need at least 2, got {samples!r}")
    if isinstance(references, bool) or not isinstance(references, int) or references < 0:
        raise ConfigError(f"references: need 0 or more, got {references!r}")
    space = load_space(table.space_name)
    predictor = Predictor(table, space)  # checks the space hash and every entry
    backend = backend_for(table)
    table.check_environment(device=device_info(), runtime=backend.info(), strict=strict)
    if supernet is None:
        from nas.supernet.supernet import Supernet

        supernet = Supernet.build(space)
    p = dict(table.protocol or {})
    known = set(Protocol.__dataclass_fields__)
    proto = Protocol(**{**{k: v for k, v in p.items() if k in known}, "max_noisy_fraction": 1.0,
                        **({"rounds": rounds} if rounds else {}), **({"clock": clock} if clock else {})})
    if proto.clock == "thread-cpu" and table.threads != 1:
        raise ConfigError(f"clock: thread-cpu time is not latency with {table.threads} threads (use wall)")
    if prepare is None:
        options = runner_options(table)

        def prepare(arch: Arch) -> Runner:
            return model_runner(supernet, arch, backend, **options)

    rng = random.Random(seed)
    archs = [space.sample(rng) for _ in range(samples)]
    t0, load0 = time.perf_counter(), _loadavg()
    ref_runners: dict[str, Runner] = {}
    ref_rows: list[dict[str, Any]] = []
    if references and len((table.calibration or {}).get("models") or []) >= 2:
        ref_runners, ref_rows = reference_runners(table, count=references, supernet=supernet, backend=backend)
        if log is not None:
            print(f"references: {len(ref_rows)} calibration models measured in every group: "
                  + ", ".join(f"{r['arch']} ({r['recorded_ms']:.3g} ms)" for r in ref_rows), file=log, flush=True)
    elif references and log is not None:
        print(f"references: {table.id} records no calibration models: raw errors only", file=log, flush=True)
    rows: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    for start in range(0, len(archs), group):
        chunk = archs[start:start + group]
        runners: dict[str, Runner] = {}
        for n, arch in enumerate(chunk, start):
            runners[str(n)] = prepare(arch)
            if log is not None:
                print(f"[{n + 1}/{samples}] prepared {format_arch(space, arch)}", file=log, flush=True)
        stats = measure({**runners, **ref_runners}, proto, log=log)
        ratio = None
        if ref_rows:
            ref = reference_report(ref_rows, stats)
            ratio = ref["ratio"]
            groups.append({"subnets": [start, start + len(chunk) - 1], "ratio": ratio,
                           "measured_ms": [m["measured_ms"] for m in ref["models"]],
                           "ratios": [m["ratio"] for m in ref["models"]]})
        for n, arch in enumerate(chunk, start):
            s = stats[str(n)]
            pred = predictor.latency_ms(arch)
            rows.append({"arch": format_arch(space, arch), "layers": len(space.kept_layers(arch)),
                         "predicted_ms": pred, "measured_ms": s["median_ms"], "iqr_ms": s["iqr_ms"],
                         "noisy": s["noisy"], "error": normalised_error(pred, s["median_ms"]),
                         "ratio": ratio,
                         "normalised_error": None if ratio is None else normalised_error(pred, s["median_ms"], ratio)})
        del runners
        if log is not None:
            done = rows[-len(chunk):]
            line = f"measured {len(rows)}/{samples}; last group mean |err| raw {_mean_abs(done, 'error'):.1%}"
            if ratio is not None:
                line += f", normalised {_mean_abs(done, 'normalised_error'):.1%} (reference ratio {ratio:.3f})"
            print(line, file=log, flush=True)
    measured = [r["measured_ms"] for r in rows]
    raw = agreement([r["predicted_ms"] for r in rows], measured)
    normalised = agreement([r["predicted_ms"] * r["ratio"] for r in rows], measured) if ref_rows else None
    return {
        "table": table.path or table.id, "space": space.name, "runtime": table.runtime, "threads": table.threads,
        "batch": table.batch, "seq": table.seq, "phase": table.phase, "context": table.context,
        "accuracy_level": table.accuracy_level, "samples": samples, "seed": seed, "clock": proto.clock,
        "rounds": proto.rounds, "repeats": proto.repeats, **raw,
        "primary": "normalised" if normalised is not None else "raw", "normalised": normalised, "raw": raw,
        "references": {"count": len(ref_rows), "models": [{k: r[k] for k in ("index", "arch", "layers", "recorded_ms")}
                                                          for r in ref_rows],
                       "groups": groups} if ref_rows else None,
        "noisy_measurements": sum(r["noisy"] for r in rows),
        "loadavg_before": load0, "loadavg_after": _loadavg(), "seconds": round(time.perf_counter() - t0, 1),
        "subnets": rows,
    }


def _mean_abs(rows: Sequence[dict[str, Any]], key: str) -> float:
    return sum(abs(r[key]) for r in rows) / len(rows)


def primary_figures(report: dict[str, Any]) -> tuple[str, dict[str, float]]:
    """``(name, figures)`` of a :func:`validate_table` report's primary error: normalised when it has references.

    Reports from before references existed hold the raw figures at the top level only.
    """
    if report.get("normalised"):
        return "normalised", report["normalised"]
    return "raw", report.get("raw") or {k: report[k] for k in ("spearman", "kendall", "mape", "within_10pct",
                                                               "max_abs_pct", "mean_signed_pct") if k in report}


def scatter_plot(report: dict[str, Any], path: str | Path, *, title: str | None = None) -> Path:
    """Predicted vs measured scatter with the identity line and a ±10 % band, written atomically.

    With references, the filled points are the normalised predictions (``p·r``, the primary figure) and
    the hollow grey ones the raw predictions; without, the raw ones, filled.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["subnets"]
    meas = [r["measured_ms"] for r in rows]
    raw = [r["predicted_ms"] for r in rows]
    norm = [r["predicted_ms"] * r["ratio"] for r in rows] if report.get("normalised") else None
    hi = max(meas + raw + (norm or [])) * 1.05
    fig, ax = plt.subplots(figsize=(5, 5))
    xs = [0, hi]
    ax.fill_between(xs, [0, hi * 0.9], [0, hi * 1.1], color="tab:green", alpha=0.15, label="±10 %")
    ax.plot(xs, xs, "k--", lw=1, label="predicted = measured")
    layers = [r["layers"] for r in rows]
    if norm is not None:
        ax.scatter(meas, raw, s=14, facecolors="none", edgecolors="0.6", lw=0.7, label="raw prediction")
        ax.scatter(meas, norm, s=14, c=layers, cmap="viridis", label="normalised (× reference ratio)")
    else:
        ax.scatter(meas, raw, s=14, c=layers, cmap="viridis")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    if title is None:
        name, f = primary_figures(report)
        title = (f"{report['space']} {report.get('phase') or 'prefill'} t{report['threads']}: {name} "
                 f"Spearman {f['spearman']:.3f}, MAPE {f['mape']:.1%}, ±10 % {f['within_10pct']:.0%}")
        if name == "normalised":
            r = report["raw"]
            title += f"\n(raw: Spearman {r['spearman']:.3f}, MAPE {r['mape']:.1%}, ±10 % {r['within_10pct']:.0%})"
    ax.set_title(title, fontsize=8)
    ax.legend(loc="upper left", fontsize=7)
    path = Path(path)
    try:
        with atomic_file(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path

"""Validation: predicted vs measured latency of random mixed-precision subnets.

Each subnet is derived, exported and quantized exactly like ``nas export``
does, run by the table's backend with the table's threads, shape, phase and
int4 accuracy level, and measured in interleaved groups under the table's
protocol: for a prefill table one call over ``seq`` tokens, for a decode table
one token after a ``context``-long cache (a decoder's whole generation graph,
:func:`nas.latency.builder.model_runner`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from nas.errors import ConfigError
from nas.files import atomic_file
from nas.latency.table import LatencyTable


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
) -> dict[str, Any]:
    """Measure ``samples`` random subnets and compare them with the table's predictions.

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

    Returns:
        :func:`agreement`'s figures plus ``table``, ``samples``, ``seed``,
        ``threads``, ``loadavg_before/after``, ``seconds`` and one row per subnet.

    Raises:
        LatencyTableError: the table is for another space hash, or (``strict``) another device/runtime.
        ConfigError: ``samples`` < 2.
    """
    from nas.latency.builder import backend_for, model_runner, runner_options
    from nas.latency.device import device_info
    from nas.latency.predictor import Predictor
    from nas.latency.protocol import Protocol, measure
    from nas.spaces import load_space
    from nas.spaces.summary import format_arch

    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise ConfigError(f"samples: need at least 2, got {samples!r}")
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
    rng = random.Random(seed)
    archs = [space.sample(rng) for _ in range(samples)]
    t0, load0 = time.perf_counter(), _loadavg()
    rows: list[dict[str, Any]] = []
    for start in range(0, len(archs), group):
        chunk = archs[start:start + group]
        runners = {}
        for n, arch in enumerate(chunk, start):
            runners[n] = model_runner(supernet, arch, backend, **runner_options(table))
            if log is not None:
                print(f"[{n + 1}/{samples}] prepared {format_arch(space, arch)}", file=log, flush=True)
        stats = measure({str(k): v for k, v in runners.items()}, proto, log=log)
        for n, arch in enumerate(chunk, start):
            s = stats[str(n)]
            pred = predictor.latency_ms(arch)
            rows.append({"arch": format_arch(space, arch), "layers": len(space.kept_layers(arch)),
                         "predicted_ms": pred, "measured_ms": s["median_ms"], "iqr_ms": s["iqr_ms"],
                         "noisy": s["noisy"], "error": (pred - s["median_ms"]) / s["median_ms"]})
        del runners
        if log is not None:
            done = rows[-len(chunk):]
            print(f"measured {len(rows)}/{samples}; last group mean |err| "
                  f"{sum(abs(r['error']) for r in done) / len(done):.1%}", file=log, flush=True)
    figures = agreement([r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows])
    return {
        "table": table.path or table.id, "space": space.name, "runtime": table.runtime, "threads": table.threads,
        "batch": table.batch, "seq": table.seq, "phase": table.phase, "context": table.context,
        "accuracy_level": table.accuracy_level, "samples": samples, "seed": seed, "clock": proto.clock, **figures,
        "noisy_measurements": sum(r["noisy"] for r in rows),
        "loadavg_before": load0, "loadavg_after": _loadavg(), "seconds": round(time.perf_counter() - t0, 1),
        "subnets": rows,
    }


def scatter_plot(report: dict[str, Any], path: str | Path, *, title: str | None = None) -> Path:
    """Predicted vs measured scatter with the identity line and a ±10 % band, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["subnets"]
    meas = [r["measured_ms"] for r in rows]
    pred = [r["predicted_ms"] for r in rows]
    hi = max(meas + pred) * 1.05
    fig, ax = plt.subplots(figsize=(5, 5))
    xs = [0, hi]
    ax.fill_between(xs, [0, hi * 0.9], [0, hi * 1.1], color="tab:green", alpha=0.15, label="±10 %")
    ax.plot(xs, xs, "k--", lw=1, label="predicted = measured")
    ax.scatter(meas, pred, s=14, c=[r["layers"] for r in rows], cmap="viridis")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title or (f"{report['space']} {report['runtime'].get('name')} t{report['threads']}: "
                           f"Spearman {report['spearman']:.3f}, MAPE {report['mape']:.1%}"), fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    path = Path(path)
    try:
        with atomic_file(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path

"""Reference-normalised latency: predictions scaled by the table's own models, measured in the same rounds.

Absolute times drift between a table's build and its use (10–20 % on a shared VM:
other processes, frequency, neighbours' memory traffic). A table records the
whole-model latency of its calibration models (``calibration.models[i].measured_ms``,
the *recorded* latency). Measuring a few of them — the *reference models* — in the
same interleaved rounds as the models under test (:func:`nas.latency.protocol.measure`)
tells how much slower or faster this machine runs *now* than when the table was built.
The one rule, used by validation (:func:`nas.latency.validate.validate_table`), export
and the benchmarks:

* reference ratio ``r = median_i(measured_i / recorded_i)`` over the reference models
  (:func:`reference_ratio`);
* normalised error of a prediction ``p`` against a measurement ``m`` taken in the same
  rounds: ``(p·r − m) / m`` (:func:`normalised_error`); the raw error is ``(p − m) / m``,
  the same rule with ``r = 1``.

Example, by hand: references recorded at 10 and 20 ms measure 11 and 23 ms now
(ratios 1.10 and 1.15, median ``r = 1.125``); a subnet predicted at 8 ms measures
9 ms: raw error ``(8 − 9)/9 = −11.1 %``, normalised ``(8·1.125 − 9)/9 = 0``.

To measure references next to any model (e.g. ``nas export``'s re-measured artifact)::

    refs, rows = reference_runners(table)                   # {"ref/0": runner, ...}, their recorded latency
    stats = measure({"model": runner, **refs}, protocol)     # one interleaved measurement
    ref = reference_report(rows, stats)                      # {"ratio": r, "models": [...]}
    err = normalised_error(predicted_ms, stats["model"]["median_ms"], ref["ratio"])

The references are chosen spread over the recorded latencies (:func:`spread_indices`),
so a ratio that depends on model size is sampled at both ends.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from nas.errors import ConfigError, LatencyTableError
from nas.latency.table import LatencyTable

__all__ = ["DEFAULT_REFERENCES", "REFERENCE_PREFIX", "normalised_error", "reference_ratio", "reference_report",
           "reference_runners", "spread_indices"]

DEFAULT_REFERENCES = 4
"""Reference models measured alongside (a few: each costs a model's measurement per interleaved group)."""
REFERENCE_PREFIX = "ref/"
"""Key prefix of the reference runners in a :func:`~nas.latency.protocol.measure` call."""


def reference_ratio(measured_ms: Sequence[float], recorded_ms: Sequence[float]) -> float:
    """``median_i(measured_i / recorded_i)``: how much slower (> 1) this machine runs the references now (pure).

    Raises:
        ConfigError: no references, lengths differ, or a latency that is not > 0.
    """
    if len(measured_ms) != len(recorded_ms) or not measured_ms:
        raise ConfigError(f"references: need measured and recorded latencies of equal, non-zero length, got "
                          f"{len(measured_ms)} and {len(recorded_ms)}")
    if any(not (v > 0) for v in (*measured_ms, *recorded_ms)):
        raise ConfigError("references: latencies must be > 0")
    return float(statistics.median(m / r for m, r in zip(measured_ms, recorded_ms)))


def normalised_error(predicted_ms: float, measured_ms: float, ratio: float = 1.0) -> float:
    """``(predicted·ratio − measured) / measured`` (pure); ``ratio`` 1 gives the raw error."""
    if not measured_ms > 0:
        raise ConfigError(f"measured_ms: must be > 0, got {measured_ms!r}")
    return (predicted_ms * ratio - measured_ms) / measured_ms


def spread_indices(latencies_ms: Sequence[float], count: int) -> list[int]:
    """Indices of ``count`` of ``latencies_ms`` spread evenly over their sorted order, fastest first (pure).

    Position ``round(j·(n−1)/(count−1))`` of the ascending order for ``j = 0 … count−1``: the
    fastest and slowest are always in; all of them when ``count >= n``; the median one for ``count`` 1.

    Example:
        >>> spread_indices([40.0, 10.0, 30.0, 20.0, 50.0], 3)   # sorted: 10, 20, 30, 40, 50
        [1, 2, 4]
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"references: need at least 1, got {count!r}")
    order = sorted(range(len(latencies_ms)), key=lambda i: (latencies_ms[i], i))
    n = len(order)
    if count >= n:
        return order
    if count == 1:
        return [order[(n - 1) // 2]]
    return [order[round(j * (n - 1) / (count - 1))] for j in range(count)]


def reference_runners(table: LatencyTable, *, count: int = DEFAULT_REFERENCES, strict: bool = False,
                      supernet: Any = None, backend: Any = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Runners of ``count`` of ``table``'s calibration models, to add to a :func:`~nas.latency.protocol.measure` call.

    Each is exported and quantized like ``nas export`` and run with the table's backend, threads,
    shape, phase and int4 accuracy level (:func:`nas.latency.drift.calibration_runners`).

    Args:
        table: a table whose ``calibration.models`` record whole-model latencies.
        count: reference models, chosen by :func:`spread_indices` over the recorded latencies.
        strict: a device or runtime mismatch is an error instead of a warning.
        supernet: a built supernet of the table's space (built here if None).
        backend: the table's backend, already made (:func:`nas.latency.builder.backend_for`; made here if None).

    Returns:
        ``(runners, rows)``: ``runners["ref/<i>"]`` runs calibration model ``i``; ``rows`` (one per runner,
        same order) ``{"key", "index", "arch", "layers", "recorded_ms"}`` for :func:`reference_report`.

    Raises:
        LatencyTableError: as :func:`nas.latency.drift.calibration_runners` (no calibration models, or
            they cannot be re-derived).
        ConfigError: ``count`` < 1.
    """
    from nas.latency.drift import calibration_runners

    models = (table.calibration or {}).get("models") or []
    idx = spread_indices([float(m["measured_ms"]) for m in models], count) if models else []
    runners, rows = calibration_runners(table, strict=strict, supernet=supernet, only=idx, backend=backend)
    out_runners: dict[str, Any] = {}
    out_rows: list[dict[str, Any]] = []
    for i in idx:
        key = f"{REFERENCE_PREFIX}{i}"
        out_runners[key] = runners[str(i)]
        r = rows[i]
        out_rows.append({"key": key, "index": i, "arch": r["arch"], "layers": r["layers"], "recorded_ms": r["then_ms"]})
    return out_runners, out_rows


def reference_report(rows: Sequence[Mapping[str, Any]], stats: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The reference ratio of one measurement from :func:`reference_runners`' ``rows`` and its ``stats`` (pure).

    ``stats[row["key"]]`` holds the reference's ``median_ms`` (and ``iqr_ms``), as
    :func:`nas.latency.protocol.measure` returns it; other keys are ignored.

    Returns:
        ``{"ratio", "models": [{"index", "arch", "recorded_ms", "measured_ms", "iqr_ms", "ratio"}]}``.

    Raises:
        LatencyTableError: a reference was not measured.
    """
    missing = [r["key"] for r in rows if r["key"] not in stats]
    if missing or not rows:
        raise LatencyTableError(f"references: not measured: {', '.join(missing) or 'none given'}")
    models = [{"index": r["index"], "arch": r["arch"], "recorded_ms": r["recorded_ms"],
               "measured_ms": stats[r["key"]]["median_ms"], "iqr_ms": stats[r["key"]].get("iqr_ms"),
               "ratio": stats[r["key"]]["median_ms"] / r["recorded_ms"]} for r in rows]
    ratio = reference_ratio([m["measured_ms"] for m in models], [m["recorded_ms"] for m in models])
    return {"ratio": ratio, "models": models}

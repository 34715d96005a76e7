"""Calibration: fit the correction from the pure block sum to whole-model latency.

``measured ≈ scale · raw + per_layer_ms · layers + constant_ms`` by least
squares on *relative* errors (each row weighted by 1/measured, so a 1-layer
subnet counts as much as the full model: the targets are relative, MAPE and
±10 %) over a handful of whole models the builder measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nas.errors import LatencyTableError


def fit_calibration(raw_ms: Sequence[float], layers: Sequence[int], measured_ms: Sequence[float]) -> dict[str, Any]:
    """Least-squares ``scale``, ``per_layer_ms``, ``constant_ms`` and the fit's errors.

    With fewer than 3 distinct layer counts, ``per_layer_ms`` is fixed at 0 (it
    cannot be told apart from the constant). A non-positive fitted scale falls
    back to ``scale`` + ``constant_ms`` only.

    Returns:
        ``{"scale", "per_layer_ms", "constant_ms", "samples", "fit_mape", "fit_max_pct", "raw_mape"}``
        (errors as fractions of the measured latency).

    Raises:
        LatencyTableError: fewer than 2 samples or lengths that differ.
    """
    raw, lay, y = (np.asarray(v, dtype=float) for v in (raw_ms, layers, measured_ms))
    if not len(raw) == len(lay) == len(y):
        raise LatencyTableError("calibration: raw, layers and measured differ in length")
    if len(y) < 2:
        raise LatencyTableError(f"calibration: needs at least 2 whole-model measurements, got {len(y)}")
    cols = [raw, np.ones_like(raw)]
    use_layers = len(set(lay.tolist())) >= 3 and len(y) >= 4
    if use_layers:
        cols.insert(1, lay)
    if (y <= 0).any():
        raise LatencyTableError("calibration: measured latencies must be positive")
    w = 1.0 / y
    coef = np.linalg.lstsq(np.stack(cols, axis=1) * w[:, None], y * w, rcond=None)[0]
    if coef[0] <= 0 and use_layers:
        use_layers = False
        coef = np.linalg.lstsq(np.stack([raw, np.ones_like(raw)], axis=1) * w[:, None], y * w, rcond=None)[0]
    scale = float(coef[0])
    per_layer = float(coef[1]) if use_layers else 0.0
    const = float(coef[-1])
    pred = scale * raw + per_layer * lay + const
    err = np.abs(pred - y) / y
    return {
        "scale": scale,
        "per_layer_ms": per_layer,
        "constant_ms": const,
        "samples": int(len(y)),
        "fit_mape": float(err.mean()),
        "fit_max_pct": float(err.max()),
        "raw_mape": float((np.abs(raw - y) / y).mean()),
    }

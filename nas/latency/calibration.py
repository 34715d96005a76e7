"""Calibration: the correction from the pure block sum to whole-model latency.

``measured ≈ scale · raw + per_layer_ms · layers + constant_ms``, one of four
nested forms, chosen by leave-one-out error on a handful of whole models the
builder measured:

==============  =====================================  ==========================
form            fitted                                 needs
==============  =====================================  ==========================
identity        nothing (1, 0, 0): the plain block sum  any 2 models
scale           ``scale``                              2 models
affine          ``scale``, ``constant_ms``             3 models
affine_layers   ``scale``, ``per_layer_ms``,           4 models, 3 layer counts
                ``constant_ms``
==============  =====================================  ==========================

Fits are least squares on *relative* errors (each row weighted by 1/measured,
so a 1-layer subnet counts as much as the full model: the targets are relative,
MAPE and ±10 %). Choosing by held-out error, not by in-sample fit, matters: on a
noisy host a three-term fit on 8 models can predict unseen subnets *worse* than
the plain sum (it did: 6.8 % MAPE against 5.9 %, experiments/reports/latency_validation.md).
The simplest form within ``tolerance`` of the best held-out MAPE wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nas.errors import LatencyTableError

FORMS: dict[str, tuple[str, ...]] = {
    "identity": (),
    "scale": ("raw",),
    "affine": ("raw", "one"),
    "affine_layers": ("raw", "layers", "one"),
}


def _design(form: str, raw: np.ndarray, layers: np.ndarray) -> np.ndarray:
    cols = {"raw": raw, "layers": layers, "one": np.ones_like(raw)}
    return np.stack([cols[c] for c in FORMS[form]], axis=1)


def relative_lstsq(design: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficients of ``y ≈ design @ coef`` minimising relative errors (rows weighted by 1/y)."""
    w = 1.0 / y
    return np.linalg.lstsq(design * w[:, None], y * w, rcond=None)[0]


def fit_form(form: str, raw: np.ndarray, layers: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """``(scale, per_layer_ms, constant_ms)`` of ``form`` fitted on the rows given."""
    if form == "identity":
        return 1.0, 0.0, 0.0
    coef = relative_lstsq(_design(form, raw, layers), y)
    terms = dict(zip(FORMS[form], (float(c) for c in coef)))
    return terms.get("raw", 1.0), terms.get("layers", 0.0), terms.get("one", 0.0)


def _predict(terms: tuple[float, float, float], raw: np.ndarray, layers: np.ndarray) -> np.ndarray:
    scale, per_layer, const = terms
    return scale * raw + per_layer * layers + const


def form_of(calibration: dict[str, Any]) -> str:
    """The form of a table's calibration (tables built before forms were recorded: read off its terms)."""
    if calibration.get("form") in FORMS:
        return str(calibration["form"])
    if calibration.get("per_layer_ms", 0.0):
        return "affine_layers"
    if calibration.get("constant_ms", 0.0):
        return "affine"
    return "scale" if calibration.get("scale", 1.0) != 1.0 else "identity"


def usable_forms(layers: Sequence[int]) -> list[str]:
    """Forms that leave-one-out can judge on these models (a form needs a row more than its terms)."""
    n, distinct = len(layers), len(set(layers))
    return [f for f in FORMS if n >= len(FORMS[f]) + 1 and (f != "affine_layers" or distinct >= 3)]


def loo_mape(form: str, raw: np.ndarray, layers: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out mean relative error of ``form``: each model predicted by a fit on the others."""
    errs = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        p = _predict(fit_form(form, raw[keep], layers[keep], y[keep]), raw[i:i + 1], layers[i:i + 1])[0]
        errs.append(abs(p - y[i]) / y[i])
    return float(np.mean(errs))


def fit_calibration(raw_ms: Sequence[float], layers: Sequence[int], measured_ms: Sequence[float], *,
                    tolerance: float = 0.005) -> dict[str, Any]:
    """The calibration form with the lowest leave-one-out MAPE (the simplest within ``tolerance``), fitted on all rows.

    A fitted form whose scale is not positive is skipped (it would invert the ranking).

    Returns:
        ``{"form", "scale", "per_layer_ms", "constant_ms", "samples", "loo_mape" (form -> held-out MAPE),
        "fit_mape", "fit_max_pct", "raw_mape"}`` (errors as fractions of the measured latency).

    Raises:
        LatencyTableError: fewer than 2 samples, lengths that differ or a non-positive measurement.
    """
    raw, lay, y = (np.asarray(v, dtype=float) for v in (raw_ms, layers, measured_ms))
    if not len(raw) == len(lay) == len(y):
        raise LatencyTableError("calibration: raw, layers and measured differ in length")
    if len(y) < 2:
        raise LatencyTableError(f"calibration: needs at least 2 whole-model measurements, got {len(y)}")
    if (y <= 0).any():
        raise LatencyTableError("calibration: measured latencies must be positive")
    loo: dict[str, float] = {}
    fitted: dict[str, tuple[float, float, float]] = {}
    for form in usable_forms([int(v) for v in lay]):
        terms = fit_form(form, raw, lay, y)
        if terms[0] <= 0:
            continue
        fitted[form], loo[form] = terms, loo_mape(form, raw, lay, y)
    best = min(loo.values())
    form = next(f for f in fitted if loo[f] <= best + tolerance)  # FORMS order: simplest first
    pred = _predict(fitted[form], raw, lay)
    err = np.abs(pred - y) / y
    scale, per_layer, const = fitted[form]
    return {
        "form": form,
        "scale": scale,
        "per_layer_ms": per_layer,
        "constant_ms": const,
        "samples": int(len(y)),
        "loo_mape": loo,
        "fit_mape": float(err.mean()),
        "fit_max_pct": float(err.max()),
        "raw_mape": float((np.abs(raw - y) / y).mean()),
    }

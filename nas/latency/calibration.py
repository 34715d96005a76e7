"""Calibration: the correction from the pure block sum to whole-model latency.

``measured ≈ scale · raw + per_layer_ms · layers + constant_ms``, or, with one scale per
weight precision, ``measured ≈ Σ_b s_b · raw_b + constant_ms`` (``raw_b`` the summed entries
of the blocks whose weights have ``b`` bits); one of five forms, chosen by leave-one-out
error on a handful of whole models the builder measured:

==============  =====================================  ===============================
form            fitted                                 needs
==============  =====================================  ===============================
identity        nothing (1, 0, 0): the plain block sum  any 2 models
scale           ``scale``                              2 models
affine          ``scale``, ``constant_ms``             3 models
affine_layers   ``scale``, ``per_layer_ms``,           4 models, 3 layer counts
                ``constant_ms``
per_precision   ``bit_scale[b]`` per weight            B + 2 models (B precisions),
                precision, ``constant_ms``              each precision in 2 of them
==============  =====================================  ===============================

``per_precision`` exists because an isolated block and the same block inside the whole model
need not differ by one factor: on an AVX2-only EPYC the int8 blocks cost 1.7–1.8× their
isolated entries in the whole model while fp32 ones cost about 1× (experiments/reports/
calibration_forms.md), so a single scale errs with the subnet's precision mix. It leaves the
fixed entries (``overhead``, ``rest``: the same in every subnet) at face value and folds their
correction into ``constant_ms``. Every form stays linear in the entries, so the expected
latency under the supernet's distributions is still exact (:mod:`nas.latency.predictor`).

Fits are least squares on *relative* errors (each row weighted by 1/measured,
so a 1-layer subnet counts as much as the full model: the targets are relative,
MAPE and ±10 %). Choosing by held-out error, not by in-sample fit, matters: on a
noisy host a three-term fit on 8 models can predict unseen subnets *worse* than
the plain sum (it did: 6.8 % MAPE against 5.9 %, experiments/reports/latency_validation.md).
The simplest form within ``tolerance`` of the best held-out MAPE wins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nas.errors import LatencyTableError

FORMS: dict[str, tuple[str, ...]] = {  # simplest first; "bits" stands for one column per weight precision
    "identity": (),
    "scale": ("raw",),
    "affine": ("raw", "one"),
    "affine_layers": ("raw", "layers", "one"),
    "per_precision": ("bits", "one"),
}


@dataclass(frozen=True)
class Calibration:
    """The terms of a table's calibration; ``predicted = Σ_entries entry_scale(bits)·entry + per_layer_ms·layers + constant_ms``.

    ``bit_scale`` maps a weight precision to the scale of the entries at that precision; the fixed
    entries (no precision) and precisions it does not name take ``scale``.
    """

    form: str = "identity"
    scale: float = 1.0
    per_layer_ms: float = 0.0
    constant_ms: float = 0.0
    bit_scale: Mapping[int, float] = field(default_factory=dict)

    def entry_scale(self, bits: int | None) -> float:
        return self.bit_scale.get(bits, self.scale) if bits is not None else self.scale

    def predict(self, fixed: np.ndarray, parts: Mapping[int, np.ndarray], layers: np.ndarray) -> np.ndarray:
        """Predicted latency of rows given their fixed entries' sum and their entries summed per precision."""
        out = self.scale * fixed + self.per_layer_ms * layers + self.constant_ms
        for b, raw_b in parts.items():
            out = out + self.entry_scale(b) * raw_b
        return out

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"form": self.form, "scale": self.scale, "per_layer_ms": self.per_layer_ms,
                             "constant_ms": self.constant_ms}
        if self.bit_scale:
            d["bit_scale"] = {str(b): s for b, s in sorted(self.bit_scale.items(), reverse=True)}
        return d

    @classmethod
    def from_dict(cls, cal: Mapping[str, Any] | None) -> "Calibration":
        """The terms of a table's ``calibration`` object (absent terms: 1, 0, 0; no per-precision scales).

        Raises:
            LatencyTableError: a term that is not a finite number, or a ``bit_scale`` key that is not a
                bit-width or whose scale is not positive (naming the key).
        """
        cal = cal or {}

        def num(key: str, value: Any) -> float:
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise LatencyTableError(f"calibration.{key}: not a number: {value!r}") from None
            if not math.isfinite(v):
                raise LatencyTableError(f"calibration.{key}: not finite: {value!r}")
            return v

        raw_bits = cal.get("bit_scale") or {}
        if not isinstance(raw_bits, Mapping):
            raise LatencyTableError(f"calibration.bit_scale: expected an object {{bits: scale}}, got {raw_bits!r}")
        bit_scale = {}
        for k, v in raw_bits.items():
            if not str(k).isdigit() or int(k) < 1:
                raise LatencyTableError(f"calibration.bit_scale.{k}: not a bit-width")
            bit_scale[int(k)] = s = num(f"bit_scale.{k}", v)
            if s <= 0:
                raise LatencyTableError(f"calibration.bit_scale.{k}: scale must be positive, got {s}")
        return cls(form=form_of(cal), scale=num("scale", cal.get("scale", 1.0)),
                   per_layer_ms=num("per_layer_ms", cal.get("per_layer_ms", 0.0)),
                   constant_ms=num("constant_ms", cal.get("constant_ms", 0.0)), bit_scale=bit_scale)


@dataclass(frozen=True)
class Rows:
    """Whole models to fit on: block sum, layer count, measured latency and the block sum split by precision.

    ``parts`` (rows × ``bits``) holds each row's entries summed per weight precision; ``raw − parts.sum(1)``
    is the fixed part. Empty (``bits == ()``) when the split is unknown.
    """

    raw: np.ndarray
    layers: np.ndarray
    y: np.ndarray
    bits: tuple[int, ...] = ()
    parts: np.ndarray | None = None

    def take(self, idx: np.ndarray) -> "Rows":
        return Rows(self.raw[idx], self.layers[idx], self.y[idx], self.bits,
                    None if self.parts is None else self.parts[idx])

    @property
    def fixed(self) -> np.ndarray:
        return self.raw - (self.parts.sum(axis=1) if self.parts is not None else 0.0)

    def split(self) -> dict[int, np.ndarray]:
        return {b: self.parts[:, j] for j, b in enumerate(self.bits)} if self.parts is not None else {}

    def predict(self, cal: Calibration) -> np.ndarray:
        return cal.predict(self.fixed, self.split(), self.layers)


def make_rows(raw_ms: Sequence[float], layers: Sequence[int], measured_ms: Sequence[float],
              raw_by_bits: Sequence[Mapping[int, float]] | None = None) -> Rows:
    """:class:`Rows` from plain sequences (``raw_by_bits``: per row, ``{bits: summed entries}``; missing bits count 0).

    Raises:
        LatencyTableError: lengths that differ, or a split whose parts exceed the row's block sum.
    """
    raw, lay, y = (np.asarray(v, dtype=float) for v in (raw_ms, layers, measured_ms))
    if not len(raw) == len(lay) == len(y) or (raw_by_bits is not None and len(raw_by_bits) != len(y)):
        raise LatencyTableError("calibration: raw, layers, measured and raw_by_bits differ in length")
    if raw_by_bits is None:
        return Rows(raw, lay, y)
    bits = tuple(sorted({int(b) for r in raw_by_bits for b in r}, reverse=True))
    parts = np.array([[float(r.get(b, 0.0)) for b in bits] for r in raw_by_bits]).reshape(len(y), len(bits))
    if (parts.sum(axis=1) > raw * (1 + 1e-9) + 1e-12).any():
        raise LatencyTableError("calibration: raw_by_bits: the parts of a model exceed its block sum")
    return Rows(raw, lay, y, bits, parts)


def _design(form: str, rows: Rows) -> np.ndarray:
    cols = {"raw": [rows.raw], "layers": [rows.layers], "one": [np.ones_like(rows.raw)],
            "bits": [] if rows.parts is None else list(rows.parts.T)}
    return np.stack([c for name in FORMS[form] for c in cols[name]], axis=1)


def relative_lstsq(design: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficients of ``y ≈ design @ coef`` minimising relative errors (rows weighted by 1/y)."""
    w = 1.0 / y
    return np.linalg.lstsq(design * w[:, None], y * w, rcond=None)[0]


def fit_form(form: str, rows: Rows) -> Calibration:
    """The terms of ``form`` fitted on ``rows``."""
    if form == "identity":
        return Calibration()
    coef = [float(c) for c in relative_lstsq(_design(form, rows), rows.y)]
    if form == "per_precision":
        # fitted: Σ_b s_b·raw_b + c; the fixed part (the same in every row) stays at face value, inside c
        fixed = float(rows.fixed.mean())
        return Calibration(form, 1.0, 0.0, coef[-1] - fixed, dict(zip(rows.bits, coef[:-1])))
    terms = dict(zip(FORMS[form], coef))
    return Calibration(form, terms.get("raw", 1.0), terms.get("layers", 0.0), terms.get("one", 0.0))


def form_of(calibration: Mapping[str, Any]) -> str:
    """The form of a table's calibration (tables built before forms were recorded: read off its terms)."""
    if calibration.get("form") in FORMS:
        return str(calibration["form"])
    if calibration.get("bit_scale"):
        return "per_precision"
    if calibration.get("per_layer_ms", 0.0):
        return "affine_layers"
    if calibration.get("constant_ms", 0.0):
        return "affine"
    return "scale" if calibration.get("scale", 1.0) != 1.0 else "identity"


def usable_forms(rows: Rows) -> list[str]:
    """Forms that leave-one-out can judge on these models (a form needs a row more than its terms).

    ``affine_layers`` needs 3 layer counts; ``per_precision`` a split of at least two precisions,
    each present in two models or more (a precision no model has would go uncalibrated).
    """
    n, distinct = len(rows.y), len(set(rows.layers.tolist()))
    out = [f for f in FORMS if f != "per_precision" and n >= len(FORMS[f]) + 1 and (f != "affine_layers" or distinct >= 3)]
    if rows.parts is not None and len(rows.bits) >= 2 and n >= len(rows.bits) + 2 \
            and ((rows.parts > 0).sum(axis=0) >= 2).all():
        out.append("per_precision")
    return out


def loo_mape(form: str, rows: Rows) -> float:
    """Leave-one-out mean relative error of ``form``: each model predicted by a fit on the others."""
    errs = []
    for i in range(len(rows.y)):
        keep = np.arange(len(rows.y)) != i
        p = rows.take(np.array([i])).predict(fit_form(form, rows.take(keep)))[0]
        errs.append(abs(p - rows.y[i]) / rows.y[i])
    return float(np.mean(errs))


def fit_calibration(raw_ms: Sequence[float], layers: Sequence[int], measured_ms: Sequence[float], *,
                    raw_by_bits: Sequence[Mapping[int, float]] | None = None,
                    tolerance: float = 0.005) -> dict[str, Any]:
    """The calibration form with the lowest leave-one-out MAPE (the simplest within ``tolerance``), fitted on all rows.

    A fitted form with a scale that is not positive is skipped (it would invert the ranking).

    Args:
        raw_ms, layers, measured_ms: per whole model, its block sum, kept layers and measured latency.
        raw_by_bits: per model, its entries summed per weight precision (every precision of the space
            as a key, 0 where absent: :func:`nas.latency.predictor.raw_by_bits`); enables ``per_precision``.

    Returns:
        ``{"form", "scale", "per_layer_ms", "constant_ms", ["bit_scale" (str(bits) -> scale)], "samples",
        "loo_mape" (form -> held-out MAPE), "fit_mape", "fit_max_pct", "raw_mape"}`` (errors as fractions
        of the measured latency).

    Raises:
        LatencyTableError: fewer than 2 samples, lengths that differ or a non-positive measurement.
    """
    rows = make_rows(raw_ms, layers, measured_ms, raw_by_bits)
    if len(rows.y) < 2:
        raise LatencyTableError(f"calibration: needs at least 2 whole-model measurements, got {len(rows.y)}")
    if (rows.y <= 0).any():
        raise LatencyTableError("calibration: measured latencies must be positive")
    loo: dict[str, float] = {}
    fitted: dict[str, Calibration] = {}
    for form in usable_forms(rows):
        cal = fit_form(form, rows)
        if cal.scale <= 0 or any(s <= 0 for s in cal.bit_scale.values()):
            continue
        fitted[form], loo[form] = cal, loo_mape(form, rows)
    best = min(loo.values())
    form = next(f for f in fitted if loo[f] <= best + tolerance)  # FORMS order: simplest first
    err = np.abs(rows.predict(fitted[form]) - rows.y) / rows.y
    return {
        **fitted[form].to_dict(),
        "samples": int(len(rows.y)),
        "loo_mape": loo,
        "fit_mape": float(err.mean()),
        "fit_max_pct": float(err.max()),
        "raw_mape": float((np.abs(rows.raw - rows.y) / rows.y).mean()),
    }

"""The checks an export must pass, each a pure comparison returning a :class:`Check`.

* ``onnx_checker`` – ``onnx.checker.check_model`` on both graphs;
* ``parity_fp32`` – max |ONNX fp32 − PyTorch subnet| over every shape in
  ``shapes`` (≥ 3 batch/sequence shapes, padding in the last row) ≤ ``tolerance``;
* ``cosine_quant`` – the mean over the metric's evaluation sequences (real
  text) of the cosine between the mean-pooled outputs of ``model.quant.onnx``
  and of the PyTorch subnet at its deployed precision (:func:`fake_quantized`:
  weights on their bit grids, 8-bit linears computed as onnxruntime's dynamic
  int8 computes them: per-tensor uint8 activations, integer accumulation,
  int16 pair saturation where this CPU's kernel has it) ≥ ``min_cosine``.
  Recorded, not gated: the smallest cosine, the cosines against the
  weight-only fake-quantized subnet (the search's view, activations fp32) and
  on random-token inputs;
* ``metric_quant`` – the task metric of ``model.quant.onnx`` within
  ``metric_tolerance`` points of the PyTorch subnet's, on the evaluation inputs
  (an accuracy with per-item results also passes a larger gap that an exact
  McNemar test cannot tell from chance: :func:`check_metric`);
* ``latency`` – ``model.quant.onnx`` re-measured with the latency table's
  backend and protocol (:mod:`nas.latency.protocol`: threads, batch, sequence,
  warm-up, interleaved rounds × repeats; median and IQR) next to the table's
  prediction; it fails only when a tolerance is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nas.models.transformer import mean_pool
from nas.quant import fake_quantized, int8_pairs_saturate
from nas.runtime.session import cpu_session, run

DEFAULT_SHAPES: tuple[tuple[int, int], ...] = ((1, 8), (2, 17), (4, 32))


@dataclass(frozen=True)
class Check:
    """One verification result; ``ok`` is ``None`` for a report-only measurement."""

    name: str
    ok: bool | None
    value: float
    limit: float | None
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "value": self.value, "limit": self.limit, "detail": self.detail, **self.data}


def inputs(vocab: int, batch: int, seq: int, *, seed: int = 0, pad: bool = True) -> tuple[Tensor, Tensor]:
    """Seeded token ids in ``1..vocab-1``; the last row is padded from the middle when ``batch > 1``."""
    g = torch.Generator().manual_seed(seed * 7919 + batch * 131 + seq)
    ids = torch.randint(1, vocab, (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    if pad and batch > 1:
        mask[-1, max(1, seq // 2):] = 0
    return ids, mask


def check_onnx(*paths: str | Path) -> Check:
    import onnx

    for p in paths:
        try:
            onnx.checker.check_model(str(p), full_check=True)
        except Exception as e:  # onnx raises ValidationError and friends
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return Check("onnx_checker", False, 1.0, 0.0, f"{Path(p).name}: {first}")
    return Check("onnx_checker", True, 0.0, 0.0, "onnx.checker passed: " + ", ".join(Path(p).name for p in paths))


@torch.no_grad()
def check_parity(model: torch.nn.Module, sess, vocab: int, *, shapes: Sequence[tuple[int, int]] = DEFAULT_SHAPES,
                 tolerance: float = 1e-4) -> Check:
    """Max abs difference of the last hidden state over ``shapes`` (padding positions included)."""
    per_shape = {}
    for b, t in shapes:
        ids, mask = inputs(vocab, b, t)
        ref = model(ids, mask).numpy()
        per_shape[f"{b}x{t}"] = float(np.abs(run(sess, ids, mask) - ref).max())
    worst = max(per_shape.values())
    ok = worst <= tolerance
    return Check("parity_fp32", ok, worst, tolerance,
                 f"max abs diff {worst:.3g} {'<=' if ok else '>'} {tolerance:g} over {len(shapes)} shapes",
                 {"per_shape": per_shape})


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


@torch.no_grad()
def check_cosine(model: torch.nn.Module, sess, batches: Mapping[str, tuple[Tensor, Tensor]], *,
                 min_cosine: float = 0.999, report_only: Mapping[str, tuple[Tensor, Tensor]] | None = None,
                 weight_only: torch.nn.Module | None = None) -> Check:
    """Mean over the sequences of the cosine of mean-pooled outputs (quantized ONNX vs ``model``); min recorded.

    The mean, not the min, gates: each int8 linear is bit-exact against its
    reference (``tests/export/test_onnx_quantize.py``), but fp32 noise of 1e-6
    flips a few activation codes per layer and a deep int8 stack amplifies the
    flips on a few sequences (``experiments/reports/int8_kernels.md``).

    Args:
        model: the reference, the subnet at its deployed precision (:func:`fake_quantized`).
        batches: the gating inputs by name (real text: the metric's evaluation examples).
        report_only: further inputs whose cosines are recorded but do not gate (random tokens).
        weight_only: a second reference, recorded on ``batches`` but not gated
            (``fake_quantized(subnet, activations=False)``: the search's view).
    """
    def cosines(ref_model, sets: Mapping[str, tuple[Tensor, Tensor]]) -> tuple[dict[str, float], dict[str, float]]:
        low, mean = {}, {}
        for name, (ids, mask) in sets.items():
            ref = mean_pool(ref_model(ids, mask), mask).numpy()
            got = mean_pool(torch.from_numpy(run(sess, ids, mask)), mask).numpy()
            c = _cos(ref, got)
            low[name], mean[name] = float(c.min()), float(c.mean())
        return low, mean

    gating, gating_mean = cosines(model, batches)
    extra, _ = cosines(model, report_only or {})
    wo, wo_mean = cosines(weight_only, batches) if weight_only is not None else ({}, {})
    value = min(gating_mean.values())
    ok = value >= min_cosine
    return Check("cosine_quant", ok, value, min_cosine,
                 f"mean cosine {value:.6f} {'>=' if ok else '<'} {min_cosine:g} on {', '.join(gating)} "
                 f"(min {min(gating.values()):.6f})"
                 + (f"; vs weight-only fake quant, report only: mean {min(wo_mean.values()):.6f}, "
                    f"min {min(wo.values()):.6f}" if wo else "")
                 + (f"; random tokens, report only: {min(extra.values()):.6f}" if extra else ""),
                 {"per_input": gating, "mean_per_input": gating_mean, "random_tokens": extra,
                  "weight_only_per_input": wo, "weight_only_mean_per_input": wo_mean,
                  "int8_pair_saturation": int8_pairs_saturate()})


Metric = Callable[[Callable[[Tensor, Tensor], Tensor]], float]


PAIRED_ALPHA = 0.05  # an accuracy gap beyond the tolerance passes only if the item flips could be chance at this level


def paired_p_value(only_first: int, only_second: int) -> float:
    """Exact two-sided McNemar p-value of items right for one model only (``only_first``, ``only_second``).

    Under "same accuracy", each of the ``d = only_first + only_second`` discordant items is
    equally likely to go either way: ``p = min(1, 2·P(Binomial(d, 1/2) ≤ min(only_first, only_second)))``.
    """
    if only_first < 0 or only_second < 0:
        raise ValueError(f"paired_p_value: counts must be >= 0, got {only_first}, {only_second}")
    d = only_first + only_second
    if d == 0:
        return 1.0
    tail = sum(math.comb(d, i) for i in range(min(only_first, only_second) + 1))
    return min(1.0, 2 * tail / 2**d)


def check_metric(metric: Metric, name: str, model: torch.nn.Module, sess, *, tolerance_points: float = 1.0) -> Check:
    """``metric`` (in points) of the quantized ONNX within ``tolerance_points`` of the PyTorch subnet's.

    For an accuracy that tells which items each model gets right (a
    :class:`nas.tasks.metric.ItemAccuracy`), a larger gap also passes when it is
    indistinguishable from item flips by chance (exact McNemar test,
    p ≥ :data:`PAIRED_ALPHA`): int8 activations computed in another order flip
    near-tied items both ways, and on 200 items one item is half a point. A
    systematic loss moves the flips one way and still fails.
    """
    correct = getattr(metric, "correct", None)
    with torch.no_grad():
        if correct is None:
            ref = float(metric(lambda ids, mask: model(ids, mask)))
            got = float(metric(lambda ids, mask: torch.from_numpy(run(sess, ids, mask))))
        else:
            ref_items = correct(lambda ids, mask: model(ids, mask))
            got_items = correct(lambda ids, mask: torch.from_numpy(run(sess, ids, mask)))
            ref, got = (100.0 * float(x.double().mean()) for x in (ref_items, got_items))
    diff = got - ref
    ok = abs(diff) <= tolerance_points
    detail = (f"{name}: PyTorch {ref:.3f}, quantized ONNX {got:.3f} "
              f"(|diff| {abs(diff):.3f} {'<=' if ok else '>'} {tolerance_points:g} points")
    data: dict[str, Any] = {"metric": name, "pytorch": ref, "onnx_quant": got}
    if correct is not None:
        only_ref, only_got = int((ref_items & ~got_items).sum()), int((~ref_items & got_items).sum())
        p = paired_p_value(only_ref, only_got)
        chance = not ok and p >= PAIRED_ALPHA
        ok = ok or chance
        detail += (f"; {only_ref} items right only in PyTorch, {only_got} only in ONNX of {len(ref_items)}, "
                   f"exact McNemar p {p:.3g}" + (f" >= {PAIRED_ALPHA:g}: within chance" if chance else ""))
        data.update(items=len(ref_items), only_pytorch=only_ref, only_onnx=only_got, p_value=p,
                    alpha=PAIRED_ALPHA, within_chance=chance)
    return Check("metric_quant", ok, diff, tolerance_points, detail + ")", data)


def check_latency(path: str | Path, table: Any, predicted_ms: float, space: Any, *,
                  tolerance: float | None = None, inputs: Mapping[str, Tensor] | None = None,
                  references: int = 0) -> Check:
    """Re-measure ``path`` with ``table``'s backend and protocol and compare with ``predicted_ms``.

    The same runner and protocol as :func:`nas.latency.validate.validate_table`:
    the table's runtime, threads, batch and sequence, warm-up, rounds × repeats
    (median, IQR); noisy results are re-measured but never refused.
    ``inputs``: the graph's feeds (default: ``input_ids``/``attention_mask`` of the table's shape).

    With ``references`` > 0, that many of the table's calibration models are measured in the same
    interleaved rounds (:mod:`nas.latency.reference`): the check's value is the reference-normalised
    error ``(predicted·r − measured)/measured`` with ``r`` their measured/recorded ratio (how much
    slower this machine runs now than when the table was built), the raw error ``(predicted −
    measured)/measured`` beside it; without, the raw error. ``tolerance`` (relative, 0.10 = ±10 %)
    gates that value; without it the check only reports.
    """
    from nas.latency.builder import backend_for, model_inputs
    from nas.latency.protocol import Protocol, measure
    from nas.latency.reference import normalised_error, reference_report, reference_runners

    backend = backend_for(table)
    if not hasattr(backend, "runner_for"):
        from nas.errors import LatencyTableError

        raise LatencyTableError(f"runtime: table {table.id} is for {backend.name}, which cannot run an ONNX file")
    known = set(Protocol.__dataclass_fields__)
    proto = Protocol(**{**{k: v for k, v in (table.protocol or {}).items() if k in known}, "max_noisy_fraction": 1.0})
    runners = {"model": backend.runner_for(path, inputs if inputs is not None else
                                           model_inputs(space, table.batch, table.seq))}
    rows: list[dict[str, Any]] = []
    recorded = (table.calibration or {}).get("models") or []
    if references and recorded:  # a table without whole-model measurements has nothing to normalise by
        refs, rows = reference_runners(table, count=references, backend=backend)
        runners.update(refs)
    stats = measure(runners, proto)
    m = stats["model"]
    raw = normalised_error(predicted_ms, m["median_ms"])
    ref = reference_report(rows, stats) if rows else None
    err = normalised_error(predicted_ms, m["median_ms"], ref["ratio"]) if ref else raw
    ok = None if tolerance is None else abs(err) <= tolerance
    how = (f"reference-normalised (r = {ref['ratio']:.3f} from {len(rows)} of the table's models measured alongside), "
           f"raw {raw:+.1%}" if ref else "raw" + ("; the table records no whole models to normalise by"
                                                  if references and not recorded else ""))
    detail = (f"measured {m['median_ms']:.3f} ms (IQR {m['iqr_ms']:.3f}) vs predicted {predicted_ms:.3f} ms: error "
              f"{err:+.1%} {how}" + (f", tolerance ±{tolerance:.0%}" if tolerance is not None else ", report only"))
    return Check("latency", ok, err, tolerance, detail, {
        **m, "predicted_ms": predicted_ms, "relative_error": raw,
        **({"normalised_error": err, "reference_ratio": ref["ratio"], "references": ref["models"]} if ref else {}),
        "table": table.id, "protocol": proto.to_dict(), "runtime": backend.info(), "threads": table.threads,
        "batch": table.batch, "seq": table.seq, "context": table.context,
    })


def failures(checks: Sequence[Check]) -> list[Check]:
    return [c for c in checks if c.ok is False]

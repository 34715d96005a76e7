"""The checks an export must pass, each a pure comparison returning a :class:`Check`.

* ``onnx_checker`` – ``onnx.checker.check_model`` on both graphs;
* ``parity_fp32`` – max |ONNX fp32 − PyTorch subnet| over every shape in
  ``shapes`` (≥ 3 batch/sequence shapes, padding in the last row) ≤ ``tolerance``;
* ``cosine_quant`` – the smallest cosine between the mean-pooled outputs of
  ``model.quant.onnx`` and of the fake-quantized PyTorch subnet, over every
  sequence of the metric's evaluation examples (real text), ≥ ``min_cosine``;
  the same on random-token inputs of every shape is recorded, not gated
  (dynamic int8 activations are least faithful on such off-distribution input);
* ``metric_quant`` – the task metric of ``model.quant.onnx`` within
  ``metric_tolerance`` points of the PyTorch subnet's, on the evaluation inputs;
* ``latency`` – ``model.quant.onnx`` re-measured with the latency table's
  backend and protocol (:mod:`nas.latency.protocol`: threads, batch, sequence,
  warm-up, interleaved rounds × repeats; median and IQR) next to the table's
  prediction; it fails only when a tolerance is given.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nas.models.transformer import mean_pool
from nas.supernet.quant import quantize_dequantize

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


def session(path: str | Path, *, threads: int = 1):
    """An onnxruntime CPU session with ``threads`` intra-op threads and sequential execution."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run(sess, ids: Tensor, mask: Tensor) -> np.ndarray:
    return sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]


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


def fake_quantized(subnet: Any) -> Any:
    """A copy of ``subnet`` with every chosen weight put on its bit grid (idempotent for derived subnets)."""
    q = copy.deepcopy(subnet).eval()
    with torch.no_grad():
        w = q.model.embed.word.weight
        w.copy_(quantize_dequantize(w, q.space.value(q.arch, "embed.bits")))
        for ld, block in zip(q.model.layer_dims, q.model.layers):
            for group, module in (("attn", block.attn), ("ffn", block.ffn)):
                bits = q.space.value(q.arch, f"layer{ld.index}.{group}.bits")
                for lin in module.children():
                    if isinstance(lin, torch.nn.Linear):
                        lin.weight.copy_(quantize_dequantize(lin.weight, bits))
    return q


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


@torch.no_grad()
def check_cosine(model: torch.nn.Module, sess, batches: Mapping[str, tuple[Tensor, Tensor]], *,
                 min_cosine: float = 0.999, report_only: Mapping[str, tuple[Tensor, Tensor]] | None = None) -> Check:
    """Smallest cosine of mean-pooled outputs (quantized ONNX vs fake-quantized PyTorch) over every sequence.

    Args:
        batches: the gating inputs by name (real text: the metric's evaluation examples).
        report_only: further inputs whose cosines are recorded but do not gate (random tokens).
    """
    def cosines(sets: Mapping[str, tuple[Tensor, Tensor]]) -> tuple[dict[str, float], dict[str, float]]:
        low, mean = {}, {}
        for name, (ids, mask) in sets.items():
            ref = mean_pool(model(ids, mask), mask).numpy()
            got = mean_pool(torch.from_numpy(run(sess, ids, mask)), mask).numpy()
            c = _cos(ref, got)
            low[name], mean[name] = float(c.min()), float(c.mean())
        return low, mean

    gating, gating_mean = cosines(batches)
    extra, _ = cosines(report_only or {})
    worst = min(gating.values())
    ok = worst >= min_cosine
    return Check("cosine_quant", ok, worst, min_cosine,
                 f"min cosine {worst:.6f} {'>=' if ok else '<'} {min_cosine:g} on {', '.join(gating)} "
                 f"(mean {min(gating_mean.values()):.6f})"
                 + (f" (random tokens, report only: {min(extra.values()):.6f})" if extra else ""),
                 {"per_input": gating, "mean_per_input": gating_mean, "random_tokens": extra})


Metric = Callable[[Callable[[Tensor, Tensor], Tensor]], float]


def check_metric(metric: Metric, name: str, model: torch.nn.Module, sess, *, tolerance_points: float = 1.0) -> Check:
    """``metric`` (in points) of the quantized ONNX within ``tolerance_points`` of the PyTorch subnet's."""
    with torch.no_grad():
        ref = float(metric(lambda ids, mask: model(ids, mask)))
    got = float(metric(lambda ids, mask: torch.from_numpy(run(sess, ids, mask))))
    diff = got - ref
    ok = abs(diff) <= tolerance_points
    return Check("metric_quant", ok, diff, tolerance_points,
                 f"{name}: PyTorch {ref:.3f}, quantized ONNX {got:.3f} "
                 f"(|diff| {abs(diff):.3f} {'<=' if ok else '>'} {tolerance_points:g} points)",
                 {"metric": name, "pytorch": ref, "onnx_quant": got})


def check_latency(path: str | Path, table: Any, predicted_ms: float, space: Any, *,
                  tolerance: float | None = None) -> Check:
    """Re-measure ``path`` with ``table``'s backend and protocol and compare with ``predicted_ms``.

    The same runner and protocol as :func:`nas.latency.validate.validate_table`:
    the table's runtime, threads, batch and sequence, warm-up, rounds × repeats
    (median, IQR); noisy results are re-measured but never refused.
    ``tolerance`` is relative (0.10 = ±10 %); without it the check only reports.
    """
    from nas.latency.backends import get_backend
    from nas.latency.builder import model_inputs
    from nas.latency.protocol import Protocol, measure

    backend = get_backend(table.runtime.get("name", "onnxruntime-cpu"), threads=table.threads)
    if not hasattr(backend, "runner_for"):
        from nas.errors import LatencyTableError

        raise LatencyTableError(f"runtime: table {table.id} is for {backend.name}, which cannot run an ONNX file")
    known = set(Protocol.__dataclass_fields__)
    proto = Protocol(**{**{k: v for k, v in (table.protocol or {}).items() if k in known}, "max_noisy_fraction": 1.0})
    runner = backend.runner_for(path, model_inputs(space, table.batch, table.seq))
    m = measure({"model": runner}, proto)["model"]
    rel = (m["median_ms"] - predicted_ms) / predicted_ms
    ok = None if tolerance is None else abs(rel) <= tolerance
    detail = (f"measured {m['median_ms']:.3f} ms (IQR {m['iqr_ms']:.3f}) vs predicted {predicted_ms:.3f} ms "
              f"({rel:+.1%}" + (f", tolerance ±{tolerance:.0%})" if tolerance is not None else ", report only)"))
    return Check("latency", ok, rel, tolerance, detail, {
        **m, "predicted_ms": predicted_ms, "relative_error": rel, "table": table.id, "protocol": proto.to_dict(),
        "runtime": backend.info(), "threads": table.threads, "batch": table.batch, "seq": table.seq,
    })


def failures(checks: Sequence[Check]) -> list[Check]:
    return [c for c in checks if c.ok is False]

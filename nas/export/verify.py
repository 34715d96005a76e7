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
  ``metric_tolerance`` points of the PyTorch subnet's, on the evaluation inputs;
* ``latency`` – ``model.quant.onnx`` re-measured with the latency table's
  backend and protocol (:mod:`nas.latency.protocol`: threads, batch, sequence,
  warm-up, interleaved rounds × repeats; median and IQR) next to the table's
  prediction; it fails only when a tolerance is given.
"""

from __future__ import annotations

import copy
import functools
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


def dynamic_uint8_codes(x: Tensor) -> tuple[Tensor, float, float]:
    """onnxruntime's ``DynamicQuantizeLinear``: ``(codes, scale, zero_point)`` of ``x``.

    One scale for the whole tensor: range ``[min(x, 0), max(x, 0)]`` over 255
    steps, zero point ``round(−min/scale)``, codes ``round(x/scale) + zp``
    saturated to 0..255 (rounding half to even, as onnxruntime does).
    """
    lo = min(float(x.min()), 0.0)
    hi = max(float(x.max()), 0.0)
    scale = float(torch.tensor((hi - lo) / 255.0, dtype=torch.float32))
    if scale == 0.0:
        return torch.zeros_like(x), 1.0, 0.0
    zp = float(min(max(round(-lo / scale), 0), 255))
    return torch.clamp(torch.round(x / scale) + zp, 0, 255), scale, zp


def dynamic_uint8(x: Tensor) -> Tensor:
    """``x`` through ``DynamicQuantizeLinear`` and back (what ``MatMulInteger`` multiplies)."""
    codes, scale, zp = dynamic_uint8_codes(x)
    return (codes - zp) * scale


@functools.lru_cache(maxsize=1)
def int8_pairs_saturate() -> bool:
    """Whether this machine's onnxruntime ``MatMulInteger`` (uint8 × int8) saturates pair sums in int16.

    x86 CPUs without VNNI multiply with ``vpmaddubsw``, which adds the products of
    two neighbouring inputs into a saturating int16 (the reason for
    ``quantize_dynamic``'s ``reduce_range``); VNNI and ARM kernels do not. Probed,
    not guessed: 255·127 + 255·127 = 64770 comes back as 32767·K/2 where it saturates.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    k = 64
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "probe",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [4, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [4, 8])],
        initializer=[numpy_helper.from_array(np.full((k, 8), 127, np.int8), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"a": np.full((4, k), 255, np.uint8)})[0]
    return bool(int(y.max()) < 255 * 127 * k)


_PAIR_CHUNK = 1 << 22  # elements of one (rows × candidate pairs) block


def int8_matmul(a: Tensor, codes: Tensor, zero_point: float, *, saturate: bool) -> Tensor:
    """``Σ_k (a_k − zp)·codes[n, k]`` for uint8 codes ``a`` (R × K) and int8 ``codes`` (N × K), in int64.

    With ``saturate`` each neighbouring pair ``P = a_{2j}·b_{2j} + a_{2j+1}·b_{2j+1}``
    (raw uint8 ``a``) is clamped to int16 before the sum, as the AVX2 kernel does.
    The exact product comes from one float64 matmul (exact for these integers);
    the saturation is a correction over the only pairs that can reach it,
    ``255·(|b_{2j}| + |b_{2j+1}|) > 32767``.
    """
    a64, b64 = a.to(torch.float64), codes.to(torch.float64)
    out = torch.round(a64 @ b64.T).to(torch.int64) - int(zero_point) * codes.to(torch.int64).sum(1)
    if not saturate:
        return out
    if a.shape[1] % 2:
        a64, b64 = torch.nn.functional.pad(a64, (0, 1)), torch.nn.functional.pad(b64, (0, 1))
    b_pairs = b64.view(len(b64), -1, 2)
    n_idx, j_idx = torch.nonzero(255 * b_pairs.abs().sum(-1) > 32767, as_tuple=True)
    if len(n_idx) == 0:
        return out
    b0, b1 = b_pairs[n_idx, j_idx, 0], b_pairs[n_idx, j_idx, 1]
    step = max(1, _PAIR_CHUNK // len(n_idx))
    for r in range(0, len(a64), step):
        rows = a64[r:r + step]
        p = rows[:, 2 * j_idx] * b0 + rows[:, 2 * j_idx + 1] * b1
        corr = (p.clamp(-32768, 32767) - p).to(torch.int64)
        out[r:r + step].index_add_(1, n_idx, corr)
    return out


def int8_linear(x: Tensor, lin: torch.nn.Linear, *, saturate: bool, cache: dict[int, tuple[Tensor, Tensor]]) -> Tensor:
    """``lin(x)`` as ``quantize_dynamic``'s graph computes it (``DynamicQuantizeLinear`` + ``MatMulInteger``).

    The weight's int8 codes and per-channel scales are the ones the export writes
    (:func:`nas.export.quantize.grid_scales`); ``cache`` keeps them per linear.
    """
    from nas.export.quantize import grid_scales

    if id(lin) not in cache:
        w = lin.weight.detach().double()
        scale = torch.from_numpy(grid_scales(w.numpy(), 127))
        cache[id(lin)] = (torch.clamp(torch.round(w / scale[:, None]), -127, 127), scale.float())
    codes, w_scale = cache[id(lin)]
    flat = x.reshape(-1, x.shape[-1])
    a, a_scale, zp = dynamic_uint8_codes(flat)
    acc = int8_matmul(a, codes, zp, saturate=saturate)
    y = acc.to(torch.float32) * (torch.tensor(a_scale, dtype=torch.float32) * w_scale)
    if lin.bias is not None:
        y = y + lin.bias
    return y.reshape(*x.shape[:-1], -1)


def fake_quantized(subnet: Any, *, activations: bool = True, saturate: bool | None = None) -> Any:
    """A copy of ``subnet`` at the precision ``model.quant.onnx`` runs it.

    Every chosen weight is put on its bit grid (idempotent for derived subnets).
    With ``activations`` every 8-bit linear also runs as onnxruntime's dynamic
    int8 does (:func:`int8_linear`: per-tensor uint8 activations, integer
    accumulation, and the int16 pair saturation of kernels without VNNI when
    :func:`int8_pairs_saturate` finds it on this machine, or as ``saturate``
    says). int4 ``MatMulNBits`` and the int8 embedding Gather are weight-only;
    fp16 weights are cast back to fp32 before the MatMul.
    """
    q = copy.deepcopy(subnet).eval()
    if saturate is None:
        saturate = activations and int8_pairs_saturate()
    with torch.no_grad():
        w = q.model.embed.word.weight
        w.copy_(quantize_dequantize(w, q.space.value(q.arch, "embed.bits")))
        for ld, block in zip(q.model.layer_dims, q.model.layers):
            for group, module in (("attn", block.attn), ("ffn", block.ffn)):
                bits = q.space.value(q.arch, f"layer{ld.index}.{group}.bits")
                for lin in module.children():
                    if isinstance(lin, torch.nn.Linear):
                        lin.weight.copy_(quantize_dequantize(lin.weight, bits))
                if activations and bits == 8:
                    cache: dict[int, tuple[Tensor, Tensor]] = {}
                    module.linear = lambda x, lin, _fn=None, _c=cache: int8_linear(x, lin, saturate=saturate, cache=_c)
    return q


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

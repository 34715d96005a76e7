"""Weight fake-quantization with a straight-through estimator.

Bits mean (the same in the supernet, the derived subnet and the export):

* 32 – fp32, unchanged;
* 16 – fp16 (round to half precision);
* 8  – symmetric int8, one scale per output channel (row), levels −127..127;
* 4  – symmetric int4, one scale per output channel per block of
  :data:`INT4_BLOCK` input features (the layout of onnxruntime's 4-bit
  ``MatMulNBits`` kernel), levels −7..7.

For embedding tables "output channel" is a row (one token's vector).

This module is the one place of the quantization numerics: the supernet's
fake quantization (:func:`fake_quant`, :func:`mixed_weight`), storage sizes
(:func:`weight_bytes`), the grid an exported weight is written on
(:func:`grid_scales`), int4 scales clipped for a layer's output error on calibration text
(:func:`clip_int4`), and onnxruntime's dynamic int8 arithmetic emulated in
PyTorch (:func:`dynamic_uint8`, :func:`int8_matmul`, :func:`int8_linear`,
:func:`fake_quantized`) that export's checks compare the quantized graph with.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import numpy as np
import torch
from torch import Tensor

INT4_BLOCK = 32


def quantize_dequantize(w: Tensor, bits: int) -> Tensor:
    """``w`` rounded onto the ``bits`` grid (no gradient trick; see :func:`fake_quant`)."""
    if bits >= 32:
        return w
    if bits == 16:
        return w.to(torch.float16).to(w.dtype)
    qmax = 2 ** (bits - 1) - 1
    if bits == 4 and w.dim() == 2 and w.shape[1] % INT4_BLOCK == 0:
        rows, cols = w.shape
        blocks = w.reshape(rows, cols // INT4_BLOCK, INT4_BLOCK)
        scale = blocks.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / qmax
        return (torch.clamp(torch.round(blocks / scale), -qmax, qmax) * scale).reshape(rows, cols)
    scale = w.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / qmax
    return torch.clamp(torch.round(w / scale), -qmax, qmax) * scale


CLIP_ALPHAS = tuple(round(0.5 + 0.025 * i, 3) for i in range(21))
"""Scale factors :func:`clip_int4` tries per block: ``absmax·α/7`` for α = 0.500, 0.525, …, 1.000."""


_CLIP_CHUNK = 1 << 22  # elements of one (α × rows × inputs) slice of clip_int4's search


def clip_int4(w: Tensor, importance: Tensor, alphas: tuple[float, ...] = CLIP_ALPHAS) -> Tensor:
    """``w`` (out × in) on the int4 grid with each block's scale clipped for its layer's output error.

    Each block of :data:`INT4_BLOCK` input features (each row where the features are not a multiple of it,
    as in :func:`quantize_dequantize`) takes the scale ``absmax·α/7`` (α in ``alphas``) with the
    least squared error weighted by ``importance`` (in: each input feature's mean square on calibration text,
    so the error the block adds to the layer's output), ties to the larger α; AWQ's clipping search. The result
    stays on :func:`quantize_dequantize`'s grid: a clipped block's largest weight lands on code ±7, so
    ``quantize_dequantize(clip_int4(w, ·), 4)`` is ``clip_int4(w, ·)`` (to float rounding) and export recovers
    every scale. With
    ``alphas=(1.0,)`` it is ``quantize_dequantize(w, 4)``. Measured on SmolLM2 (all layers int4, 8 k tokens of
    training glosses): perplexity −15 %, multiple choice +6.3 pt over absmax scales
    (``experiments/reports/generation_latency_int4_calibrated_d929245201f4.md``).
    """
    rows, cols = w.shape
    if importance.shape != (cols,):
        raise ValueError(f"clip_int4: weight {tuple(w.shape)} needs importance of shape ({cols},), "
                         f"got {tuple(importance.shape)}")
    block = INT4_BLOCK if cols % INT4_BLOCK == 0 else cols  # quantize_dequantize's per-row fallback
    blocks = w.detach().reshape(rows, cols // block, block)
    imp = importance.detach().to(blocks.dtype).reshape(1, cols // block, block)
    absmax = blocks.abs().amax(-1, keepdim=True).clamp(min=1e-12)
    a = torch.tensor(sorted(alphas, reverse=True), dtype=blocks.dtype, device=blocks.device).view(-1, 1, 1, 1)
    out = torch.empty_like(blocks)
    step = max(1, _CLIP_CHUNK // (len(alphas) * cols))  # every α at once, a slice of rows at a time
    for r in range(0, rows, step):
        b, m = blocks[r:r + step], absmax[r:r + step]
        scale = m * a / 7  # (α, rows, blocks, 1); α = 1: quantize_dequantize's own arithmetic
        q = torch.clamp(torch.round(b / scale), -7, 7) * scale
        best = ((q - b) ** 2 * imp).sum(-1).argmin(0)  # the first minimum: the larger α on ties
        out[r:r + step] = q.gather(0, best[None, ..., None].expand(1, *b.shape))[0]
    return out.reshape(rows, cols)


def fake_quant(w: Tensor, bits: int) -> Tensor:
    """Quantize-dequantize ``w`` in the forward pass, identity gradient in the backward pass."""
    if bits >= 32:
        return w
    return w + (quantize_dequantize(w, bits) - w).detach()


def mixed_weight(w: Tensor, bits_options: tuple[int, ...], probs: Tensor) -> Tensor:
    """``Σ_b probs[b] · fake_quant(w, b)``: the bit-width mixture of one weight."""
    out = None
    for b, p in zip(bits_options, probs):
        term = p * fake_quant(w, b)
        out = term if out is None else out + term
    assert out is not None
    return out


def weight_bytes(shape: tuple[int, ...], bits: int) -> int:
    """Storage of one weight matrix at ``bits``, scales (fp32) included."""
    numel = 1
    for s in shape:
        numel *= s
    rows = shape[0]
    if bits >= 32:
        return 4 * numel
    if bits == 16:
        return 2 * numel
    scales = rows * (-(-shape[-1] // INT4_BLOCK) if bits == 4 else 1)
    return (numel * bits + 7) // 8 + 4 * scales


def grid_scales(groups: Any, qmax: int, *, tol: float = 1e-3) -> Any:
    """One scale per row of ``groups`` (G × L) that puts every value on an integer code in ``−qmax..qmax``.

    A derived subnet's weights already lie on a symmetric grid, but its scale may
    come from the *unsliced* pretrained row or block (``derive`` quantizes, then
    slices), so ``absmax/qmax`` of the kept values is not always it. The scale is
    ``absmax/j`` for the largest ``j ≤ qmax`` that makes every ``value·j/absmax``
    an integer (within ``tol``); rows off any grid (e.g. fine-tuned without fake
    quantization) get the plain ``absmax/qmax``.
    """
    g = np.asarray(groups, dtype=np.float64)
    absmax = np.abs(g).max(-1)
    safe = np.maximum(absmax, 1e-12)
    unit = g / safe[:, None]
    levels = np.full(len(g), qmax, dtype=np.float64)
    todo = np.arange(len(g))  # rows without a level yet: only these are tried at the next j
    for j in range(qmax, 0, -1):
        if not len(todo):
            break
        x = unit[todo] * j
        ok = np.abs(x - np.round(x)).max(-1) < tol
        levels[todo[ok]] = j
        todo = todo[~ok]
    return safe / levels


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
    (:func:`grid_scales`); ``cache`` keeps them per linear.
    """
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

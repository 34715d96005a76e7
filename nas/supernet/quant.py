"""Weight fake-quantization with a straight-through estimator.

Bits mean (the same in the supernet, the derived subnet and the export):

* 32 – fp32, unchanged;
* 16 – fp16 (round to half precision);
* 8  – symmetric int8, one scale per output channel (row), levels −127..127;
* 4  – symmetric int4, one scale per output channel per block of
  :data:`INT4_BLOCK` input features (the layout of onnxruntime's 4-bit
  ``MatMulNBits`` kernel), levels −7..7.

For embedding tables "output channel" is a row (one token's vector).
"""

from __future__ import annotations

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

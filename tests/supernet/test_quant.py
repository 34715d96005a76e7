import torch

from nas.quant import INT4_BLOCK, fake_quant, quantize_dequantize, weight_bytes


def test_int8_per_row_grid():
    w = torch.tensor([[1.0, -0.5, 0.25], [10.0, 3.0, -7.0]])
    q = quantize_dequantize(w, 8)
    scale = w.abs().amax(1, keepdim=True) / 127
    assert torch.allclose(q, torch.round(w / scale) * scale)
    assert torch.equal(quantize_dequantize(q, 8), q)  # idempotent


def test_int4_blocks_and_fp16():
    w = torch.randn(4, 2 * INT4_BLOCK)
    q = quantize_dequantize(w, 4)
    for blk in q.reshape(4, 2, INT4_BLOCK).unbind(1):
        assert blk.unique().numel() <= 15 * 4
    assert torch.equal(quantize_dequantize(w, 16), w.half().float())
    assert torch.equal(quantize_dequantize(w, 32), w)


def test_straight_through_gradient():
    w = torch.randn(3, 32, requires_grad=True)
    fake_quant(w, 4).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def test_weight_bytes():
    assert weight_bytes((10, 64), 32) == 2560
    assert weight_bytes((10, 64), 16) == 1280
    assert weight_bytes((10, 64), 8) == 640 + 40
    assert weight_bytes((10, 64), 4) == 320 + 10 * 2 * 4

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


def test_clip_int4_stays_on_the_int4_grid_and_never_errs_more_than_absmax_scales():
    from nas.quant import clip_int4

    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 4 * INT4_BLOCK, generator=g)
    importance = torch.rand(4 * INT4_BLOCK, generator=g) ** 4  # a few input features dominate
    got = clip_int4(w, importance)
    assert torch.equal(quantize_dequantize(got, 4), got)  # on the grid: export recovers every scale
    assert torch.equal(clip_int4(w, importance, (1.0,)), quantize_dequantize(w, 4))
    plain = quantize_dequantize(w, 4)
    err = lambda q: ((q - w) ** 2 * importance).reshape(16, 4, INT4_BLOCK).sum(-1)  # noqa: E731
    assert bool((err(got) <= err(plain) + 1e-9).all())
    assert float(err(got).sum()) < 0.9 * float(err(plain).sum())


def test_clip_int4_follows_the_heavy_input_features():
    from nas.quant import clip_int4

    w = torch.randn(16, 2 * INT4_BLOCK, generator=torch.Generator().manual_seed(1))
    heavy = torch.ones(2 * INT4_BLOCK)
    heavy[::INT4_BLOCK] = 1e6  # the first feature of each block carries the output
    even = clip_int4(w, torch.ones(2 * INT4_BLOCK))
    got = clip_int4(w, heavy)
    first = lambda q: (q - w)[:, ::INT4_BLOCK].abs().sum()  # noqa: E731
    assert float(first(got)) <= float(first(even))
    assert not torch.equal(got, even)


def test_clip_int4_names_a_bad_shape():
    import pytest

    from nas.quant import clip_int4

    with pytest.raises(ValueError, match="importance of shape"):
        clip_int4(torch.randn(4, 64), torch.ones(32))


def test_clip_int4_clips_whole_rows_where_quantize_dequantize_scales_per_row():
    from nas.quant import clip_int4

    w = torch.randn(8, 16, generator=torch.Generator().manual_seed(2))  # 16 features: no block of 32
    got = clip_int4(w, torch.rand(16, generator=torch.Generator().manual_seed(3)))
    assert torch.equal(quantize_dequantize(got, 4), got)
    assert torch.equal(clip_int4(w, torch.ones(16), (1.0,)), quantize_dequantize(w, 4))

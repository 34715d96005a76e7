"""nas.supernet.calibrate on tiny-llama: what each linear sees, and derive's calibrated int4 scales."""

import numpy as np
import pytest
import torch

import nas
from nas.quant import quantize_dequantize
from nas.supernet.calibrate import linear_inputs, linear_nodes


@pytest.fixture(scope="module")
def net():
    return nas.Supernet.build(nas.load_space("tiny-llama"))


def _ids(n=6, t=12, seed=0):
    return torch.randint(1, 128, (n, t), generator=torch.Generator().manual_seed(seed))


def test_linear_inputs_average_each_linears_input_over_unmasked_tokens(net):
    model = net.model
    ids = _ids()
    mask = torch.ones_like(ids)
    mask[0, 8:] = 0  # padding is not calibration text
    ms = linear_inputs(model, ids, mask, batch=4)
    xx = linear_inputs(model, ids, mask, outer=True, batch=4)
    n_layers = len(model.layers)
    assert set(ms) == set(linear_nodes(model)) and len(ms) == 7 * n_layers
    for k in range(n_layers):
        assert torch.equal(ms[f"layers.{k}.attn.q"], ms[f"layers.{k}.attn.v"])  # one input tensor
        assert torch.equal(ms[f"layers.{k}.ffn.gate"], ms[f"layers.{k}.ffn.up"])
        for node in (f"layers.{k}.attn.o", f"layers.{k}.ffn.down"):
            assert torch.allclose(torch.diagonal(xx[node]), ms[node])
            assert xx[node].shape == (linear_nodes(model)[node].in_features,) * 2
    # the first layer's q reads the normed embeddings: recompute its mean square by hand
    with torch.no_grad():
        x = model.layers[0].attn_norm(model.embed(ids))
    want = x.reshape(-1, x.shape[-1])[mask.reshape(-1).bool()].double().pow(2).mean(0)
    assert torch.allclose(ms["layers.0.attn.q"], want, rtol=1e-5)
    assert "linear" not in vars(model.layers[0].attn) and not model.training  # hooks gone, mode kept


def test_linear_inputs_keep_an_instances_own_linear(net):
    block = net.model.layers[0].attn
    calls = []
    cls_linear = type(block).linear

    def own(x, lin, weight_fn=None):
        calls.append(1)
        return cls_linear(block, x, lin, weight_fn)

    block.linear = own
    try:
        linear_inputs(net.model, _ids(2, 8))
        assert calls and vars(block)["linear"] is own
    finally:
        del block.linear


def test_derive_with_int4_importance_clips_only_the_int4_linears_and_stays_on_the_grid(net):
    space = net.space
    arch = dict(space.full())
    for label in arch:
        if label.endswith(".bits") and label != "embed.bits":
            arch[label] = 4 if "attn" in label else 8
    arch = space.validate(arch)
    stats = linear_inputs(net.model, _ids(16, 16))
    plain = nas.derive(net, arch)
    cal = nas.derive(net, arch, int4_importance=stats)
    changed = 0
    for node, lin in linear_nodes(cal.model).items():
        ref = linear_nodes(plain.model)[node].weight
        if ".attn." in node:
            assert torch.equal(quantize_dequantize(lin.weight, 4), lin.weight)  # the int4 grid: export recovers it
            changed += not torch.equal(lin.weight, ref)
        else:
            assert torch.equal(lin.weight, ref)  # int8 layers keep their grid
    assert changed >= len(cal.model.layers)  # most int4 linears found a better scale
    # closer to the full-precision layer's output on the calibration text, by the measure it optimises
    full = nas.derive(net, space.full())
    ids = _ids(4, 16, seed=3)
    with torch.no_grad():
        x = full.model.layers[0].attn_norm(full.model.embed(ids))
        out = {k: torch.nn.functional.linear(x, m.model.layers[0].attn.q.weight)
               for k, m in (("full", full), ("plain", plain), ("cal", cal))}
    assert float((out["cal"] - out["full"]).pow(2).sum()) < float((out["plain"] - out["full"]).pow(2).sum())


def test_derive_with_int4_importance_exports_with_the_same_weights(net, tmp_path):
    from nas.runtime.decoder_onnx import decoder_bits_by_node, export_decoder_onnx
    from nas.runtime.decoder_session import DecoderSession
    from nas.runtime.quantize import quantize_onnx

    space = net.space
    arch = dict(space.full())
    for label in arch:
        if label.endswith(".bits"):
            arch[label] = 8 if label == "embed.bits" else 4
    cal = nas.derive(net, space.validate(arch), int4_importance=linear_inputs(net.model, _ids(16, 16)))
    fp32 = export_decoder_onnx(cal.model, tmp_path / "fp32.onnx")
    bits = {n: b for n, b in decoder_bits_by_node(cal).items() if n.startswith("layers.")}
    quant = quantize_onnx(fp32, tmp_path / "q.onnx", bits, accuracy_level=1)  # fp32 compute: weights alone
    ids = _ids(1, 10, seed=5).numpy()
    mask = np.ones_like(ids)
    ref, _ = DecoderSession(fp32).step(ids, mask, DecoderSession(fp32).empty_past(1))
    sess = DecoderSession(quant)
    got, _ = sess.step(ids, mask, sess.empty_past(1))
    assert np.abs(got - ref).max() < 1e-4 * np.abs(ref).max()  # the graph holds exactly the clipped weights

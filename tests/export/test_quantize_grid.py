"""The quantized graph computes with exactly the derived subnet's weights (int4 and int8 codes on its grid)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import numpy_helper

import nas
from nas.runtime.onnx import export_onnx
from nas.quant import grid_scales
from nas.runtime.quantize import bits_by_node, quantize_onnx
from nas.runtime.session import cpu_session as session, run
from tests.conftest import batch


def test_grid_scales_by_hand():
    # absmax 1: j=7 gives 3.5, j=6 gives 1.5, j=5 gives 2.5/1.25 — j=4 makes 2, -4, 1 integers: scale 1/4
    # second row is off every grid with j <= 7 (0.3·j never an integer together with 1·j): absmax/7
    s = grid_scales(np.array([[0.5, -1.0, 0.25], [0.3, 1.0, 0.0]]), 7)
    assert s == pytest.approx([0.25, 1 / 7])
    assert grid_scales(np.array([[0.0, 0.0]]), 7)[0] > 0  # an all-zero group gets a usable scale


@pytest.mark.parametrize("family", ["tiny-bert", "tiny-llama"])
def test_int4_graph_equals_the_subnet(family, tmp_path):
    """Sliced layers (FFN 16 of 64, 1 head) keep the unsliced rows' grid; the graph must match it exactly."""
    space = nas.load_space(family)
    arch = space.full()
    arch.update({label: 4 for label in arch if label.endswith(".bits") and label != "embed.bits"})
    arch["layer1.ffn"], arch["layer1.heads"] = space.options("layer1.ffn")[-1], space.options("layer1.heads")[-1]
    sub = nas.derive(nas.Supernet.build(space), arch)
    fp32 = export_onnx(sub, tmp_path / "f.onnx")
    quant = quantize_onnx(fp32, tmp_path / "q.onnx", bits_by_node(sub))
    ids, mask = batch(128, b=3, t=11)
    with torch.no_grad():
        ref = sub(ids, mask).numpy()
    assert np.abs(run(session(quant), ids, mask) - ref).max() < 1e-5


def test_int8_weights_equal_the_subnet(tmp_path):
    """Dynamic int8 quantizes activations too (not exact); its weight codes × scales are the subnet's weights."""
    import onnx

    space = nas.load_space("tiny-bert")
    arch = space.full()
    arch.update({label: 8 for label in arch if label.endswith(".bits") and label != "embed.bits"})
    arch["layer0.ffn"] = space.options("layer0.ffn")[-1]  # ffn.down keeps 16 of 64 inputs of each row
    sub = nas.derive(nas.Supernet.build(space), arch)
    quant = quantize_onnx(export_onnx(sub, tmp_path / "f.onnx"), tmp_path / "q.onnx", bits_by_node(sub))
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(quant)).graph.initializer}
    state = sub.model.state_dict()
    names = [k[: -len(".weight_t_quantized")] for k in inits if k.endswith(".weight_t_quantized")]
    assert len(names) == 12
    for n in names:
        w = inits[f"{n}.weight_t_quantized"].astype(np.float64) * inits[f"{n}.weight_t_scale"][None, :]
        assert np.abs(w.T - state[f"{n}.weight"].numpy()).max() < 1e-6, n


def test_int8_nbits_weights_equal_the_subnet_and_the_graph_stays_close(tmp_path):
    """8-bit MatMulNBits (a decoder's int8 layers): every block of a row carries the row's scale, so codes ×
    scales are the subnet's per-channel int8 weights, sliced rows and a padded last block included."""
    import onnx

    from nas.runtime.decoder_onnx import int8_nbits_nodes

    space = nas.load_space("tiny-llama")
    arch = space.full()
    arch.update({label: 8 for label in arch if label.endswith(".bits") and label != "embed.bits"})
    arch["layer0.ffn"], arch["layer1.heads"] = space.options("layer0.ffn")[-1], space.options("layer1.heads")[-1]
    sub = nas.derive(nas.Supernet.build(space), arch)
    bits = bits_by_node(sub)
    quant = quantize_onnx(export_onnx(sub, tmp_path / "f.onnx"), tmp_path / "q.onnx", bits,
                          int8_nbits=int8_nbits_nodes(bits))
    proto = onnx.load(str(quant))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    nodes = [n for n in proto.graph.node if n.op_type == "MatMulNBits"]
    assert len(nodes) == 7 * len(sub.model.layer_dims) and not any(n.op_type == "MatMulInteger" for n in proto.graph.node)
    state = sub.model.state_dict()
    for node in nodes:
        attrs = {a.name: a.i for a in node.attribute}
        assert (attrs["bits"], attrs["block_size"], attrs["accuracy_level"]) == (8, 32, 4)
        codes = inits[node.input[1]].astype(np.float64) - 128  # (N, blocks, 32), implied zero point 128
        scales = inits[node.input[2]].reshape(codes.shape[:2])
        assert np.abs(codes).max() <= 127
        w = (codes * scales[..., None]).reshape(attrs["N"], -1)[:, : attrs["K"]]
        assert np.abs(w - state[f"{node.name[:-3]}.weight"].numpy()).max() < 1e-6, node.name
    ids, mask = batch(128, b=3, t=11)
    with torch.no_grad():
        ref = sub(ids, mask).numpy()
    got = run(session(quant), ids, mask)  # level 4 rounds the activations per block of 32: close, not exact
    assert 0 < np.abs(got - ref).max() < 0.05 * np.abs(ref).max()


def test_int8_nbits_must_name_8_bit_matmuls(tmp_path):
    from nas.errors import ExportError

    space = nas.load_space("tiny-llama")
    sub = nas.derive(nas.Supernet.build(space), space.full())
    fp32 = export_onnx(sub, tmp_path / "f.onnx")
    for bits, names in (({"layers.0.attn.q": 4}, ["layers.0.attn.q"]), ({"embed.word": 8}, ["embed.word"])):
        with pytest.raises(ExportError, match=names[0]):
            quantize_onnx(fp32, tmp_path / "q.onnx", bits, int8_nbits=names)
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("family", ["tiny-bert", "tiny-llama"])
def test_int8_embedding_graph_equals_the_subnet(family, tmp_path):
    """quantize_dynamic's per-tensor Gather is put on the subnet's per-row grid: weight-only, so exact."""
    import onnx

    space = nas.load_space(family)
    arch = space.full()
    arch["embed.bits"] = 8
    sub = nas.derive(nas.Supernet.build(space), arch)
    quant = quantize_onnx(export_onnx(sub, tmp_path / "f.onnx"), tmp_path / "q.onnx", bits_by_node(sub))
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(quant)).graph.initializer}
    assert inits["embed.word.weight_quantized"].dtype == np.int8  # the file stores int8 codes
    table = inits["embed.word.weight_quantized"].astype(np.float64) * inits["embed.word.weight_row_scale"]
    assert np.abs(table - sub.model.embed.word.weight.detach().numpy()).max() < 1e-6
    ids, mask = batch(128, b=3, t=11)
    with torch.no_grad():
        ref = sub(ids, mask).numpy()
    assert np.abs(run(session(quant), ids, mask) - ref).max() < 1e-5

import numpy as np
import pytest
import torch

from nas.errors import ExportError
from nas.export.onnx import export_onnx, linear_names, matmul_nodes
from nas.export.quantize import bits_by_node, node_kinds, quantize_onnx
from nas.spaces import load_space
from nas.supernet import Supernet, derive

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def tiny():
    space = load_space("tiny-bert")
    return space, Supernet.build(space)


def _arch(space, **over):
    arch = space.full()
    arch.update(over)
    return arch


def _run(path, ids, mask):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})


def _inputs(space, b, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, space.dims.vocab_size, (b, t), generator=g)
    mask = torch.ones_like(ids)
    if b > 1:
        mask[-1, t // 2:] = 0
    return ids, mask


def test_export_names_every_linear_and_matches_torch_on_several_shapes(tiny, tmp_path):
    space, net = tiny
    sub = derive(net, _arch(space, **{"layer0.keep": 0, "layer1.heads": 2, "layer1.ffn": 32}))
    path = export_onnx(sub, tmp_path / "m.onnx", pooled=True)
    nodes = matmul_nodes(path)
    assert linear_names(sub.model) == ["layers.0.attn.q", "layers.0.attn.k", "layers.0.attn.v", "layers.0.attn.o",
                                       "layers.0.ffn.up", "layers.0.ffn.down"]
    assert all(nodes[n] == "MatMul" for n in linear_names(sub.model))
    assert nodes["embed.word"] == "Gather"
    for b, t in ((1, 5), (2, 17), (3, 30)):  # dynamic batch and sequence axes
        ids, mask = _inputs(space, b, t)
        hidden, pooled = _run(path, ids, mask)
        ref = sub(ids, mask).detach()
        m = mask.bool().numpy()
        assert np.abs(hidden - ref.numpy())[m].max() < 1e-5
        from nas.models.transformer import mean_pool

        assert np.abs(pooled - mean_pool(ref, mask).numpy()).max() < 1e-5


def test_export_llama_names_gate_up_down(tmp_path):
    space = load_space("tiny-llama")
    sub = derive(Supernet.build(space), space.full())
    nodes = matmul_nodes(export_onnx(sub, tmp_path / "l.onnx"))
    assert {"layers.1.ffn.gate", "layers.1.ffn.up", "layers.1.ffn.down", "layers.1.attn.k"} <= set(nodes)


def test_bits_by_node_maps_kept_layers_to_their_original_labels(tiny):
    space, net = tiny
    arch = _arch(space, **{"layer0.keep": 0, "layer1.attn.bits": 4, "layer1.ffn.bits": 16, "embed.bits": 8})
    assert bits_by_node(derive(net, arch)) == {
        "embed.word": 8,
        "layers.0.attn.q": 4, "layers.0.attn.k": 4, "layers.0.attn.v": 4, "layers.0.attn.o": 4,
        "layers.0.ffn.up": 16, "layers.0.ffn.down": 16,
    }


def test_quantize_uses_ort_kernels_on_exactly_the_chosen_nodes(tiny, tmp_path):
    space, net = tiny
    arch = _arch(space, **{"layer0.attn.bits": 8, "layer0.ffn.bits": 4, "layer1.attn.bits": 16, "embed.bits": 8})
    sub = derive(net, arch)
    fp32 = export_onnx(sub, tmp_path / "m.onnx")
    q = quantize_onnx(fp32, tmp_path / "q.onnx", bits_by_node(sub))
    kinds = node_kinds(q)
    assert kinds["MatMulInteger"] == 4  # layer 0 q/k/v/o int8
    assert kinds["MatMulNBits"] == 2  # layer 0 up/down int4
    nodes = matmul_nodes(q)
    assert [n for n in nodes if n.endswith(".cast")] == [f"layers.1.attn.{x}.cast" for x in "qkvo"]
    assert nodes["layers.1.ffn.up"] == "MatMul" and nodes["layers.1.ffn.down"] == "MatMul"  # fp32 stays
    assert kinds.get("DequantizeLinear", 0) == 1  # the int8 embedding table
    assert q.stat().st_size < fp32.stat().st_size
    ids, mask = _inputs(space, 2, 12)
    out = _run(q, ids, mask)[0]
    ref = sub(ids, mask).detach().numpy()
    m = mask.bool().numpy()
    # int8 activations are quantized at run time: close to the fake-quantized subnet, not equal
    assert np.abs(out - ref)[m].max() < 0.1 * np.abs(ref).max()


def test_quantize_bad_input_names_the_node(tiny, tmp_path):
    space, net = tiny
    fp32 = export_onnx(derive(net, space.full()), tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="layers.7.attn.q"):
        quantize_onnx(fp32, tmp_path / "q.onnx", {"layers.7.attn.q": 8})
    with pytest.raises(ExportError, match="layers.0.attn.q: unsupported bits 3"):
        quantize_onnx(fp32, tmp_path / "q.onnx", {"layers.0.attn.q": 3})
    assert not (tmp_path / "q.onnx").exists()

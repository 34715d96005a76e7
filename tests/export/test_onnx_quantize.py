import numpy as np
import pytest
import torch

from nas.errors import ExportError
from nas.runtime.onnx import export_onnx, linear_names, matmul_nodes
from nas.runtime.quantize import bits_by_node, node_kinds, quantize_onnx
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
    # the int8 embedding table: Gather on int8 codes, then one scale per row (no per-tensor DequantizeLinear)
    assert kinds.get("DequantizeLinear", 0) == 0 and {"embed.word", "embed.word.scale", "embed.word.dequant"} <= set(nodes)
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


@pytest.mark.parametrize("shift", [0.0, 3.0, -3.0])  # mixed signs, all positive, all negative
def test_dynamic_uint8_matches_onnxruntime_dynamic_quantize_linear(shift):
    from onnx import TensorProto, helper

    from nas.quant import dynamic_uint8

    x = (torch.randn(2, 7, 48, generator=torch.Generator().manual_seed(1)) + shift).float()
    graph = helper.make_graph(
        [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
        "dql", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x.numpy()})[0]
    got = dynamic_uint8(x).numpy()
    step = float(x.max().clamp(min=0) - x.min().clamp(max=0)) / 255
    assert np.abs(got - want).max() <= 1e-6 * max(1.0, float(x.abs().max()))
    assert np.abs(got - x.numpy()).max() > 0.1 * step  # it really rounds


def test_int8_matmul_matches_onnxruntime_matmul_integer_bit_for_bit():
    """Integer accumulation, zero point and (where this CPU's kernel has it) int16 pair saturation."""
    from onnx import TensorProto, helper, numpy_helper

    from nas.quant import int8_matmul, int8_pairs_saturate

    g = torch.Generator().manual_seed(0)
    m, k, n = 24, 96, 40
    a = torch.randint(0, 256, (m, k), generator=g)
    codes = torch.randint(-127, 128, (n, k), generator=g)
    zp = 131
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b", "za"], ["y"])], "mmi",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])],
        initializer=[numpy_helper.from_array(codes.T.numpy().astype(np.int8), "b"),
                     numpy_helper.from_array(np.array(zp, np.uint8), "za")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"a": a.numpy().astype(np.uint8)})[0]
    saturate = int8_pairs_saturate()
    got = int8_matmul(a, codes, zp, saturate=saturate).numpy()
    assert np.array_equal(got, want)
    other = int8_matmul(a, codes, zp, saturate=not saturate).numpy()
    assert not np.array_equal(other, want)  # uniform codes saturate many pairs: the mode matters


def test_fake_quantized_reference_computes_int8_linears_as_the_graph_does(tiny, tmp_path):
    """The deployed-precision reference matches the int8 graph far closer than weight-only fake quant."""
    from nas.quant import fake_quantized

    space, net = tiny
    arch = _arch(space, **{f"layer{i}.{g}.bits": 8 for i in range(2) for g in ("attn", "ffn")})
    sub = derive(net, arch)
    q = quantize_onnx(export_onnx(sub, tmp_path / "m.onnx"), tmp_path / "q.onnx", bits_by_node(sub))
    ids, mask = _inputs(space, 3, 20)
    got = _run(q, ids, mask)[0]
    with torch.no_grad():
        deployed = fake_quantized(sub)(ids, mask).numpy()
        weight_only = fake_quantized(sub, activations=False)(ids, mask).numpy()
    err_deployed, err_weight_only = np.abs(got - deployed).max(), np.abs(got - weight_only).max()
    assert err_deployed < 1e-4
    assert err_deployed < 0.05 * err_weight_only


EXPORT_TWICE = """
import sys, nas
from nas.runtime.onnx import export_onnx
from nas.runtime.quantize import bits_by_node, quantize_onnx
space = nas.load_space("tiny-bert")
arch = space.full()
arch.update({"embed.bits": 8, "layer0.attn.bits": 8, "layer0.ffn.bits": 4, "layer1.heads": 2,
             "layer1.attn.bits": 16, "layer1.ffn": 32, "layer1.ffn.bits": 8})
sub = nas.derive(nas.Supernet.build(space), arch)
for k in range(2):
    fp32 = export_onnx(sub, f"{sys.argv[1]}/{k}/model.onnx", pooled=True)
    quantize_onnx(fp32, f"{sys.argv[1]}/{k}/model.quant.onnx", bits_by_node(sub))
"""


def test_onnx_export_and_quantization_are_byte_identical_across_processes(tmp_path):
    """One subnet exported twice in each of two processes (other hash seeds): the same model.onnx and model.quant.onnx."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"}
        subprocess.run([sys.executable, "-c", EXPORT_TWICE, str(tmp_path / seed)], check=True, env=env)
    dirs = [tmp_path / s / str(k) for s in ("1", "2") for k in range(2)]
    assert node_kinds(dirs[0] / "model.quant.onnx").keys() >= {"MatMulNBits", "MatMulInteger", "Cast"}
    for name in ("model.onnx", "model.quant.onnx"):
        blobs = {(d / name).read_bytes() for d in dirs}
        assert len(blobs) == 1, f"{name}: {len(blobs)} different byte strings from 4 exports"

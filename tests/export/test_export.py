"""End to end: export trials of the tiny smoke study through every output and check."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

import nas
from nas.export import export_trial
from nas.files import sha256_file
from tests.conftest import batch
from tests.export.conftest import LATENCY, MIXED

CHECKS = {"onnx_checker", "parity_fp32", "cosine_quant", "metric_quant", "latency"}


@pytest.fixture(scope="module")
def mixed_export(smoke_study, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "mixed"
    manifest = export_trial(study=smoke_study.name, storage=smoke_study.url, trial=smoke_study.numbers["mixed"], out=out)
    return out, manifest


def test_outputs_and_manifest(mixed_export, smoke_study):
    out, m = mixed_export
    assert sorted(p.name for p in out.iterdir()) == [
        "arch.json", "manifest.json", "model.onnx", "model.quant.onnx", "model.safetensors", "subnet.json"]
    assert json.loads((out / "manifest.json").read_text()) == json.loads(json.dumps(m, default=str))
    assert m["ok"] and m["trial"] == smoke_study.numbers["mixed"] and m["study"] == "smoke"
    assert m["rule"] == {"trial": smoke_study.numbers["mixed"]}
    assert set(m["checks"]) == CHECKS
    assert all(c["ok"] in (True, None) for c in m["checks"].values())
    assert m["checks"]["parity_fp32"]["value"] <= 1e-4 and len(m["checks"]["parity_fp32"]["per_shape"]) >= 3
    assert m["checks"]["cosine_quant"]["value"] >= 0.999
    # the table's prediction is the hand-computed one; the measurement sits next to it
    lat = m["checks"]["latency"]
    assert lat["predicted_ms"] == pytest.approx(LATENCY["mixed"]) and lat["median_ms"] > 0 and lat["n"] == 6
    assert m["checks"]["metric_quant"]["metric"].startswith("teacher_fidelity on ")  # WordNet test split if installed
    assert m["arch"] == MIXED and m["arch_summary"] == "L0,1 H4,2 F64,32 A8,16 M4,8 E8"
    assert m["hf"]["expressible"] is False and "layer1" in m["hf"]["reason"]
    for name, digest in m["files"].items():
        assert sha256_file(out / name) == digest
    assert set(m["versions"]) >= {"nas", "torch", "onnx", "onnxruntime", "transformers", "optuna"}
    assert "password" not in json.dumps(m)


def test_subnet_round_trips(mixed_export, smoke_study):
    out, _ = mixed_export
    exported = nas.load_subnet(out)
    original = nas.load_subnet(smoke_study.root / "smoke" / "mixed")
    ids, mask = batch(128, b=2, t=9)
    assert exported.arch == MIXED
    assert torch.equal(exported(ids, mask), original(ids, mask))


def test_quantized_graph_has_the_searched_bits_on_exactly_the_chosen_nodes(mixed_export):
    out, m = mixed_export
    # MIXED: embed 8, layer0 attention 8 / FFN 4, layer1 attention 16 / FFN 8 (node layers.k counts kept layers)
    expected = {"embed.word": "int8"}
    expected.update({f"layers.0.attn.{w}": "int8" for w in "qkvo"})
    expected.update({"layers.0.ffn.up": "int4", "layers.0.ffn.down": "int4"})
    expected.update({f"layers.1.attn.{w}": "fp16" for w in "qkvo"})
    expected.update({"layers.1.ffn.up": "int8", "layers.1.ffn.down": "int8"})
    assert {n: v["applied"] for n, v in m["nodes"].items()} == expected
    assert m["nodes"]["layers.1.attn.q"]["label"] == "layer1.attn.bits" and m["nodes"]["layers.1.attn.q"]["bits"] == 16
    graph = onnx.load(str(out / "model.quant.onnx")).graph
    ops = {n.name: n.op_type for n in graph.node}
    assert ops["layers.0.ffn.up_Q4"] == "MatMulNBits" and ops["layers.0.ffn.down_Q4"] == "MatMulNBits"
    assert sum(op == "MatMulNBits" for op in ops.values()) == 2
    assert {ops[f"layers.0.attn.{w}_quant"] for w in "qkvo"} == {"MatMulInteger"}
    assert {ops[f"layers.1.ffn.{w}_quant"] for w in ("up", "down")} == {"MatMulInteger"}
    assert sum(op == "MatMulInteger" for op in ops.values()) == 6
    fp16 = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    assert len(fp16) == 4 and all(name.startswith("layers.1.attn.") for name in fp16)
    assert {ops[f"layers.1.attn.{w}"] for w in "qkvo"} == {"MatMul"}
    fp32 = {n.name: n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node if n.name.startswith("layers.")}
    assert len(fp32) == 12 and set(fp32.values()) == {"MatMul"}


def test_hf_export_where_expressible(smoke_study, tmp_path):
    from transformers import BertModel

    out = tmp_path / "best"
    m = export_trial(study="smoke", storage=smoke_study.url, best_quality=True, out=out, measure_latency=False)
    assert m["trial"] == smoke_study.numbers["full_uniform"] and m["rule"] == {"best_quality": True}
    assert m["hf"] == {"expressible": True, "reason": "expressible", "dir": "hf"}
    assert m["checks"]["parity_hf"]["ok"] and "latency" not in m["checks"]
    hf = BertModel.from_pretrained(out / "hf", add_pooling_layer=False, attn_implementation="eager").eval()
    assert hf.config.num_hidden_layers == 2 and hf.config.intermediate_size == 32
    ids, mask = batch(128, b=2, t=9)
    sub = nas.load_subnet(out)
    with torch.no_grad():
        diff = (hf(input_ids=ids, attention_mask=mask).last_hidden_state - sub(ids, mask)).abs().max()
    assert diff <= 1e-4


@pytest.mark.parametrize(("bound", "expected"), [(0.2, "small"), (0.3, "small"), (0.32, "mixed"), (0.9, "mixed"), (5.0, "full_uniform")])
def test_max_latency_takes_the_best_quality_that_fits(smoke_study, bound, expected):
    from nas.export.select import choose_trial

    # qualities: full_uniform > mixed > small (teacher fidelity); latencies 0.964, 0.316, 0.129 ms
    ref = choose_trial(study="smoke", storage=smoke_study.url, max_latency_ms=bound)
    assert ref.number == smoke_study.numbers[expected] and ref.on_front


def test_existing_out_needs_force(smoke_study, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(nas.errors.ConfigError, match="out: .* exists; pass --force"):
        export_trial(study="smoke", storage=smoke_study.url, trial=smoke_study.numbers["small"], out=out)
    assert (out / "keep.txt").read_text() == "x"
    m = export_trial(study="smoke", storage=smoke_study.url, trial=smoke_study.numbers["small"], out=out, force=True,
                     measure_latency=False)
    assert m["ok"] and not (out / "keep.txt").exists() and (out / "model.quant.onnx").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["o"]  # no temporary folder left behind

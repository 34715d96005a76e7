"""A decoder's export folder (tiny-llama, mixed 8/4 bits): generation graphs, generation.json, and the decoder checks."""

import json
import random
import shutil

import onnx
import pytest
import torch

import nas
from nas.errors import ModelError
from nas.export.artifacts import write_artifacts
from nas.export.export import verify_export
from nas.export.generation import ExportedDecoder, read_generation
from nas.export.verify import inputs
from nas.files import atomic_dir

MIXED = {"embed.bits": 8, "layer0.keep": 1, "layer0.heads": 4, "layer0.attn.bits": 8, "layer0.ffn": 48,
         "layer0.ffn.bits": 4, "layer1.keep": 1, "layer1.heads": 2, "layer1.attn.bits": 4, "layer1.ffn": 64,
         "layer1.ffn.bits": 8}
CHECKS = ["onnx_checker", "parity_fp32", "greedy_fp32", "metric_quant", "generation_latency"]


def agreement_metric(subnet):
    """A stand-in task metric on logits: % of positions whose argmax agrees with the fp32 subnet's."""
    ids, mask = inputs(subnet.space.dims.vocab_size, 8, 16)
    with torch.no_grad():
        ref = subnet.model.logits(subnet.model(ids, mask)).argmax(-1)

    def metric(forward):
        with torch.no_grad():
            return float(100 * (forward(ids, mask).argmax(-1) == ref).float().mean())

    return "argmax agreement", metric


def export_folder(subnet, out, **verify):
    """write_artifacts + verify_export into ``out``, as export_trial does (without a study)."""
    with atomic_dir(out) as tmp:
        written = write_artifacts(subnet, tmp)
        checks = verify_export(tmp, task_metric=agreement_metric(subnet), **verify)
    return written, checks


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    space = nas.load_space("tiny-llama")
    sub = nas.derive(nas.Supernet.build(space), MIXED)
    out = tmp_path_factory.mktemp("decoder") / "mixed"
    written, checks = export_folder(sub, out)
    return sub, out, written, checks


def test_folder_holds_generation_graphs_and_generation_json(mixed):
    sub, out, _, _ = mixed
    assert sorted(p.name for p in out.iterdir()) == [
        "arch.json", "generation.json", "model.onnx", "model.quant.onnx", "model.safetensors", "subnet.json"]
    meta = read_generation(out)
    assert meta["num_layers"] == 2 and meta["kv_heads"] == [2, 1] and meta["head_dim"] == 8
    assert meta["graph"]["inputs"][:4] == ["input_ids", "attention_mask", "past_k_0", "past_v_0"]
    assert meta["graph"]["outputs"][:2] == ["logits", "present_k_0"] and meta["graph"]["merged"]
    assert meta["max_positions"] == 64 and meta["quant"]["matmulnbits_accuracy_level"] == 1
    assert meta["quant"]["int8_matmulnbits_accuracy_level"] == 4  # the layers' int8 MatMulNBits
    assert meta["tokenizer"] is None and meta["eos_token_id"] is None  # tiny-llama ships no tokenizer


def test_nodes_record_the_searched_bits_the_lm_head_and_accuracy_level(mixed):
    _, out, written, _ = mixed
    nodes = written["nodes"]
    assert nodes["lm_head"] == {"label": "embed.bits", "bits": 8, "applied": "int8", "ops": ["MatMulInteger", "Mul"]}
    assert nodes["embed.word"]["applied"] == "int8"
    assert {nodes[f"layers.0.attn.{w}"]["applied"] for w in "qkvo"} == {"int8"}
    assert {nodes[f"layers.1.attn.{w}"]["applied"] for w in "qkvo"} == {"int4"}
    assert {nodes[f"layers.0.ffn.{w}"]["applied"] for w in ("gate", "up", "down")} == {"int4"}
    assert {nodes[f"layers.1.ffn.{w}"]["applied"] for w in ("gate", "up", "down")} == {"int8"}
    assert {n["accuracy_level"] for n in nodes.values() if n["applied"] == "int4"} == {1}
    # the layers' int8 runs 8-bit MatMulNBits at level 4 (nas.runtime.quantize.INT8_NBITS_LEVEL); the head MatMulInteger
    assert {nodes[f"layers.0.attn.{w}"]["accuracy_level"] for w in "qkvo"} == {4}
    assert {nodes[f"layers.1.ffn.{w}"]["ops"][0] for w in ("gate", "up", "down")} == {"MatMulNBits"}
    assert all("accuracy_level" not in n for n in nodes.values() if n["applied"] not in ("int4", "int8"))
    ops = [n.op_type for n in onnx.load(str(out / "model.quant.onnx")).graph.node]
    assert ops.count("MatMulNBits") == 14 and ops.count("MatMulInteger") == 1


def test_every_decoder_check_passes(mixed):
    _, _, _, checks = mixed
    assert [c.name for c in checks] == CHECKS
    by = {c.name: c for c in checks}
    assert all(c.ok for c in checks if c.name != "generation_latency") and by["generation_latency"].ok is None
    parity = by["parity_fp32"]
    assert parity.value <= 1e-4 and set(parity.data["per_shape"]) == {"1x8", "2x17", "4x32"}
    assert parity.data["per_shape"]["2x17"]["decode_after_17"] <= 1e-4  # a decode step with a 17-token cache
    greedy = by["greedy_fp32"].data["prompts"]
    assert len(greedy) == 2 and all(p["identical"] and p["tokens"] == 32 for p in greedy.values())
    assert by["metric_quant"].data["metric"] == "argmax agreement"
    assert by["generation_latency"].data["tpot_ms_median"] > 0


def test_a_folder_with_matmulinteger_layers_is_checked_against_their_emulation(mixed, tmp_path):
    """A folder exported before the layers' int8 became 8-bit MatMulNBits: metric_quant's reference runs them
    as MatMulInteger too (nas.quant.int8_linear), so re-checking it compares like with like."""
    from nas.export.verify_decoder import FakeQuantLogits, integer_layers
    from nas.runtime.decoder_onnx import decoder_bits_by_node
    from nas.runtime.quantize import quantize_onnx

    sub, out, _, checks = mixed
    assert not integer_layers(out, sub) and checks[3].data["integer_layers"] is False
    old = tmp_path / "old"
    shutil.copytree(out, old)
    bits = {n: b for n, b in decoder_bits_by_node(sub).items() if b < 32}
    quantize_onnx(old / "model.onnx", old / "model.quant.onnx", bits, accuracy_level=1)  # no int8_nbits
    assert integer_layers(old, sub)
    c = {c.name: c for c in verify_export(old, task_metric=agreement_metric(sub))}["metric_quant"]
    assert c.ok and c.data["integer_layers"] is True and "run MatMulInteger" in c.detail
    assert c.data["onnx_quant"] == pytest.approx(c.data["pytorch"], abs=1.0)
    # the reference runs layer 0's 8-bit attention through nas.quant.int8_linear only for such a graph (on this
    # tiny random model the activations' per-tensor rounding moves no argmax, so the metric alone cannot tell)
    assert "linear" in vars(FakeQuantLogits(sub, integer_layers=True).fq.model.layers[0].attn)
    assert "linear" not in vars(FakeQuantLogits(sub).fq.model.layers[0].attn)


@pytest.mark.slow
def test_a_matmulinteger_folder_is_measured_but_not_gated_against_tables_pricing_8bit_matmulnbits(mixed, tmp_path):
    from nas.export.verify_decoder import check_phase_latency
    from nas.latency.table import load_table
    from nas.runtime.decoder_onnx import decoder_bits_by_node
    from nas.runtime.quantize import quantize_onnx

    sub, out, _, _ = mixed
    table = load_table("tiny-llama.onnxruntime-cpu.t1.b1.c32.decode")
    old = tmp_path / "old"
    shutil.copytree(out, old)
    bits = {n: b for n, b in decoder_bits_by_node(sub).items() if b < 32}
    quantize_onnx(old / "model.onnx", old / "model.quant.onnx", bits, accuracy_level=1)  # no int8_nbits
    tight = 1e-12  # no measurement lands this close: a gated check fails
    now, then = (check_phase_latency(d, sub, table, tolerance=tight) for d in (out, old))
    assert now.ok is False and "comparable" not in now.data and "not compared" not in now.detail
    assert then.ok is None and then.data["comparable"] is False and then.data["median_ms"] > 0
    assert "not compared: the graph's 8-bit layers run MatMulInteger" in then.detail


def test_default_task_metric_scores_the_graphs_logits(mixed):
    """Without a plug-in's metric the decoder's own (nas.tasks.metric.task_metric) scores logits of both sides."""
    _, out, _, _ = mixed
    c = {c.name: c for c in verify_export(out)}["metric_quant"]
    assert c.ok and c.data["metric"].startswith(("definition-to-word accuracy", "next-token agreement"))
    assert 0 <= c.data["onnx_quant"] <= 100 and "pytorch_weight_only" in c.data


def test_latency_table_re_measures_a_prefill(mixed, tmp_path):
    from tests.export.conftest import tiny_table

    sub, out, _, _ = mixed
    table = tiny_table(sub.space, tmp_path / "table.json")  # the hand-made table of the encoder tests
    checks = {c.name: c for c in verify_export(out, task_metric=agreement_metric(sub), latency_table=table)}
    lat = checks["latency"]
    assert lat.ok is None and lat.data["phase"] == "prefill" and lat.data["median_ms"] > 0
    assert (lat.data["batch"], lat.data["seq"]) == (1, 16)
    # MIXED: layer0 0.1·4·8/32 + 0.001·48·4/32 = 0.106; layer1 0.1·2·4/32 + 0.001·64·8/32 = 0.041;
    # embed .05 + rest .02 + overhead .03 = 0.1: 0.247 ms
    assert lat.data["predicted_ms"] == pytest.approx(0.247)


def test_a_decode_table_re_measures_one_token_after_its_context(mixed, tmp_path):
    import dataclasses

    from tests.export.conftest import tiny_table

    sub, out, _, _ = mixed
    table = dataclasses.replace(tiny_table(sub.space, tmp_path / "table.json"), phase="decode", seq=1, context=24)
    lat = {c.name: c for c in verify_export(out, task_metric=agreement_metric(sub), latency_table=table)}["latency"]
    assert lat.data["phase"] == "decode" and lat.data["median_ms"] > 0 and "1 new tokens after 24" in lat.detail


def test_export_quantizes_int4_at_the_accuracy_level_its_table_priced(tmp_path):
    import dataclasses

    from nas.errors import LatencyTableMismatchError
    from nas.export.latency import accuracy_level
    from tests.export.conftest import tiny_table

    table = tiny_table(nas.load_space("tiny-llama"), tmp_path / "table.json")
    assert accuracy_level({}) is None and accuracy_level({"latency_ms": table}) is None  # none recorded
    priced = dataclasses.replace(table, accuracy_level=4)
    assert accuracy_level({"latency_ms": priced}) == 4
    assert accuracy_level({"ttft_ms": table, "tpot_ms": priced}) == 4  # one unrecorded, one priced
    with pytest.raises(LatencyTableMismatchError, match="accuracy_level: the trial's tables priced int4 at different "
                                                        "levels \\(ttft_ms 1, tpot_ms 4\\)"):
        accuracy_level({"ttft_ms": dataclasses.replace(table, accuracy_level=1), "tpot_ms": priced})
    sub = nas.derive(nas.Supernet.build(nas.load_space("tiny-llama")), MIXED)
    with atomic_dir(tmp_path / "l4") as tmp:
        nodes = write_artifacts(sub, tmp, accuracy_level=accuracy_level({"latency_ms": priced}))["nodes"]
    assert {n["accuracy_level"] for n in nodes.values() if n["applied"] == "int4"} == {4}
    assert json.loads((tmp_path / "l4" / "generation.json").read_text())["quant"]["matmulnbits_accuracy_level"] == 4


def test_a_wrong_graph_fails_parity(mixed, tmp_path):
    sub, out, _, _ = mixed
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    other = nas.derive(nas.Supernet.build(sub.space), {**MIXED, "embed.bits": 32})  # other embedding weights
    from nas.runtime.decoder_onnx import export_decoder_onnx

    export_decoder_onnx(other, broken / "model.onnx")
    checks = {c.name: c for c in verify_export(broken, task_metric=agreement_metric(sub))}
    assert checks["parity_fp32"].ok is False


def test_exported_decoder_refuses_what_it_cannot_do(mixed, tmp_path):
    _, out, _, _ = mixed
    d = ExportedDecoder(out)
    with pytest.raises(ModelError, match="tokenizer"):
        d.encode("hello")
    with pytest.raises(ModelError, match="not a decoder export"):
        ExportedDecoder(tmp_path)
    assert json.loads((out / "generation.json").read_text())["vocab_size"] == 128


def test_random_architectures_export_and_verify(tmp_path):
    """Subnets of random architectures (layers dropped, per-layer heads) pass every check."""
    space = nas.load_space("tiny-llama")
    net = nas.Supernet.build(space)
    for seed in (1, 4):
        sub = nas.derive(net, space.sample(random.Random(seed)))
        _, checks = export_folder(sub, tmp_path / f"s{seed}")
        assert all(c.ok is not False for c in checks), [c.detail for c in checks if c.ok is False]

"""The generation graph of tiny-llama subnets (random architectures): parity with a KV cache, greedy identity, quantized kinds."""

import random

import numpy as np
import onnx
import pytest
import torch

import nas
from nas.errors import ConfigError, ModelError
from nas.models import greedy_generate
from nas.runtime.decoder_onnx import (DecoderGraph, decoder_bits_by_node, export_decoder_onnx, int8_nbits_nodes,
                                      past_names, present_names)
from nas.runtime.decoder_session import DecoderSession
from nas.runtime.quantize import quantize_onnx

TOL = 1e-4


@pytest.fixture(scope="module")
def space():
    return nas.load_space("tiny-llama")


@pytest.fixture(scope="module")
def supernet(space):
    return nas.Supernet.build(space)


def random_subnet(space, supernet, seed):
    return nas.derive(supernet, space.sample(random.Random(seed)))


@pytest.fixture(scope="module")
def exported(space, supernet, tmp_path_factory):
    """Three subnets of random architectures (seeds 0, 3, 5: 1-2 kept layers, 2 or 4 heads), exported fp32."""
    out = []
    for seed in (0, 3, 5):
        sub = random_subnet(space, supernet, seed)
        path = export_decoder_onnx(sub, tmp_path_factory.mktemp("dec") / "model.onnx")
        out.append((sub, path))
    return out


def flat(cache):
    return [t for kv in zip(cache.keys, cache.values) for t in kv]


def test_graph_inputs_and_outputs_name_every_layer(exported, space):
    for sub, path in exported:
        n = len(sub.model.layers)
        graph = onnx.load(str(path)).graph
        assert [i.name for i in graph.input] == ["input_ids", "attention_mask", *past_names(n)]
        assert [o.name for o in graph.output] == ["logits", *present_names(n)]
        kv = [ld.num_kv_heads(space.dims) for ld in sub.model.layer_dims]
        dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
        for k in range(n):
            assert dims[f"past_k_{k}"] == ["batch", kv[k], "past_sequence", space.dims.head_dim]
        names = {node.name: node.op_type for node in graph.node}
        assert names["lm_head"] == "MatMul" and names["embed.word"] == "Gather"
        assert all(names[f"layers.{k}.{w}"] == "MatMul" for k in range(n)
                   for w in ("attn.q", "attn.k", "attn.v", "attn.o", "ffn.gate", "ffn.up", "ffn.down"))


@torch.no_grad()
def test_prefill_and_decode_steps_match_extend_at_several_past_lengths(exported):
    """The rotary offset comes from the graph's past length: decode after 3, 17 and 40 cached tokens (traced at 5)."""
    for sub, path in exported:
        m, sess = sub.model, DecoderSession(path)
        g = torch.Generator().manual_seed(1)
        for b, past, new in ((1, 0, 7), (2, 3, 1), (3, 17, 1), (2, 17, 4), (1, 40, 1)):
            ids = torch.randint(1, 128, (b, past + new), generator=g)
            mask = torch.ones_like(ids)
            if b > 1:
                mask[-1, (past + new) // 2:] = 0  # padding in the last row
            if past:
                _, cache = m.extend(ids[:, :past], mask[:, :past])
                pasts = [t.numpy() for t in flat(cache)]
                hidden, full = m.extend(ids[:, past:], mask[:, past:], cache=cache)
            else:
                pasts = sess.empty_past(b)
                hidden, full = m.extend(ids, mask)
            logits, presents = sess.step(ids[:, past:].numpy(), mask.numpy(), pasts)
            assert np.abs(logits - m.logits(hidden).numpy()).max() <= TOL, (b, past, new)
            for got, ref in zip(presents, flat(full)):
                assert got.shape == tuple(ref.shape) and np.abs(got - ref.numpy()).max() <= TOL


@torch.no_grad()
def test_greedy_generation_is_token_identical(exported):
    for sub, path in exported:
        sess = DecoderSession(path, max_positions=64)
        ids = torch.randint(1, 128, (2, 6), generator=torch.Generator().manual_seed(2))
        g = sess.generate(ids, 32)
        assert torch.equal(g.ids, greedy_generate(sub.model, ids, 32))
        assert g.prompt_tokens == 6 and len(g.step_ms) == 31 and g.ttft_ms > 0 and g.tpot_ms_median > 0
        # an end-of-sequence id stops a row as greedy_generate does
        eos = int(g.ids[0, 9])
        assert torch.equal(sess.generate(ids, 32, eos_token_id=eos).ids, greedy_generate(sub.model, ids, 32, eos_token_id=eos))


def test_session_refuses_too_long_requests_and_encoder_graphs(exported, tmp_path, space, supernet):
    sub, path = exported[0]
    sess = DecoderSession(path, max_positions=64)
    with pytest.raises(ConfigError, match="max_positions"):
        sess.generate(torch.ones(1, 60, dtype=torch.long), 5)
    from nas.runtime.onnx import export_onnx

    enc = export_onnx(sub, tmp_path / "encoder.onnx")
    with pytest.raises(ModelError, match="not a generation graph"):
        DecoderSession(enc)
    bert = nas.load_space("tiny-bert")
    with pytest.raises(ModelError, match="llama"):
        DecoderGraph(nas.derive(nas.Supernet.build(bert), bert.full()).model)


def test_quantized_graph_has_the_searched_kinds_and_runs(space, supernet, tmp_path):
    arch = dict(space.sample(random.Random(5)))
    arch.update({"embed.bits": 8, "layer0.keep": 1, "layer1.keep": 1, "layer0.attn.bits": 8, "layer0.ffn.bits": 4,
                 "layer1.attn.bits": 4, "layer1.ffn.bits": 8})
    sub = nas.derive(supernet, arch)
    fp32 = export_decoder_onnx(sub, tmp_path / "model.onnx")
    bits = decoder_bits_by_node(sub)
    assert bits["lm_head"] == bits["embed.word"] == 8  # the tied head takes embed.bits
    chosen = {n: b for n, b in bits.items() if b < 32}
    assert int8_nbits_nodes(chosen) == sorted([f"layers.0.attn.{w}" for w in "qkvo"] +
                                              [f"layers.1.ffn.{w}" for w in ("gate", "up", "down")])
    quant = quantize_onnx(fp32, tmp_path / "model.quant.onnx", chosen, accuracy_level=1,
                          int8_nbits=int8_nbits_nodes(chosen))
    ops = {n.name: n for n in onnx.load(str(quant)).graph.node}
    attrs = {n: {a.name: a.i for a in node.attribute} for n, node in ops.items() if node.op_type == "MatMulNBits"}
    for w in ("q", "k", "v", "o"):
        assert attrs[f"layers.0.attn.{w}_Q8"]["bits"] == 8 and attrs[f"layers.0.attn.{w}_Q8"]["accuracy_level"] == 4
        assert attrs[f"layers.1.attn.{w}_Q4"]["bits"] == 4 and attrs[f"layers.1.attn.{w}_Q4"]["accuracy_level"] == 1
    for w in ("gate", "up", "down"):
        assert attrs[f"layers.0.ffn.{w}_Q4"]["bits"] == 4
        assert attrs[f"layers.1.ffn.{w}_Q8"]["bits"] == 8
    assert ops["lm_head_quant"].op_type == "MatMulInteger"  # the head shares the Gather's int8 codes
    assert len(attrs) == 14
    assert [n for n, node in ops.items() if node.op_type == "MatMulInteger"] == ["lm_head_quant"]
    sess = DecoderSession(quant, max_positions=64)
    ids = torch.randint(1, 128, (1, 5), generator=torch.Generator().manual_seed(0))
    g = sess.generate(ids, 8)
    assert g.ids.shape == (1, 13) and int(g.new_ids.max()) < 128
    # a decode step with a cache runs on the quantized graph too, and stays near the fp32 graph's logits
    ref, _ = DecoderSession(fp32).step(g.ids.numpy(), np.ones_like(g.ids.numpy()), sess.empty_past(1))
    got, _ = sess.step(g.ids.numpy(), np.ones_like(g.ids.numpy()), sess.empty_past(1))
    assert np.abs(got - ref).max() < 0.5 * np.abs(ref).max()

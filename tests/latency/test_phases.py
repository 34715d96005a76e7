"""Prefill and decode tables by hand: the LM head entry, the phase fields, the mismatch errors, old tables."""

import dataclasses
import json

import pytest
import torch

from nas.errors import ConfigError, LatencyTableError, LatencyTableMismatchError
from nas.latency.predictor import Predictor, expected_latency, latency_ms, raw_by_bits, raw_latency_ms
from nas.latency.table import (
    LatencyTable, check_accuracy_level, check_lengths, check_phase, head_key, load_table, required_keys,
    table_accuracy_level, table_filename, table_sha256,
)
from nas.spaces.choice import Choice
from nas.spaces.space import SearchSpace
from tests.latency.conftest import DIMS, ENTRIES, make_table

BOTH = {"layer0.attn.bits": 8, "layer1.keep": 1, "layer1.attn.bits": 32}
ONE = {"layer0.attn.bits": 32, "layer1.keep": 0, "layer1.attn.bits": 8}
PREFILL = {**ENTRIES, "head:bits=32": 4.0}  # the conftest's six rows and a head
DECODE = {"overhead": 0.2, "rest": 0.05, "embed:bits=32": 0.01, "head:bits=32": 1.0,
          "attn:heads=2:bits=32": 0.3, "attn:heads=2:bits=8": 0.1, "ffn:width=8:bits=32": 0.2}


@pytest.fixture
def prefill(hand_space) -> LatencyTable:
    return make_table(hand_space, entries=PREFILL, accuracy_level=4)  # calibration: 2·raw + 0.1/layer + 0.3


@pytest.fixture
def decode(hand_space) -> LatencyTable:
    return make_table(hand_space, entries=DECODE, calibration={}, phase="decode", seq=1, context=32, accuracy_level=4)


def probs():
    return {"layer0.attn.bits": torch.tensor([0.5, 0.5]), "layer1.keep": torch.tensor([0.25, 0.75]),
            "layer1.attn.bits": torch.tensor([1.0, 0.0])}


def test_the_head_is_priced_in_both_phases_by_hand(hand_space, prefill, decode):
    assert required_keys(hand_space, head=True) == sorted(PREFILL)
    # prefill: raw = 11.25 without the head (test_predictor) + 4 = 15.25; 2 * 15.25 + 0.1 * 2 + 0.3
    assert raw_latency_ms(prefill, hand_space, BOTH) == pytest.approx(15.25)
    assert latency_ms(prefill, hand_space, BOTH) == pytest.approx(31.0)
    assert latency_ms(prefill, hand_space, ONE) == pytest.approx(2 * 10.75 + 0.1 + 0.3)
    # decode, plain sum: .2 + .05 + .01 + 1 (head) + (.1 + .2) + (.3 + .2) = 2.06; one layer: 1.26 + .3 + .2
    assert latency_ms(decode, hand_space, BOTH) == pytest.approx(2.06)
    assert Predictor(decode, hand_space).latency_ms(ONE) == pytest.approx(1.76)
    # the head is split with the embeddings' precision
    assert raw_by_bits(prefill, hand_space, BOTH) == pytest.approx({32: 1 + 4 + 2 + 3 + 3, 8: 1.5})


def test_expected_latency_adds_the_head_by_hand(hand_space, prefill, decode):
    # prefill: the six-row table's 15.925 (test_predictor) + 2 * 4
    assert float(expected_latency(prefill, hand_space, probs())) == pytest.approx(23.925)
    # decode: 1.26 fixed + layer 0 (.5 * .3 + .5 * .1 + .2) + 1/4 of layer 1 (.3 + .2) = 1.785
    assert float(expected_latency(decode, hand_space, probs())) == pytest.approx(1.785)
    pred = Predictor(decode, hand_space)
    for arch in (BOTH, ONE):
        one_hot = {c.label: torch.tensor([1.0 if o == arch[c.label] else 0.0 for o in c.options]) for c in hand_space}
        assert float(pred.expected_latency(one_hot)) == pytest.approx(pred.latency_ms(arch))


def test_a_table_without_head_entries_prices_no_head(hand_space, hand_table):
    assert not hand_table.has_head
    assert latency_ms(hand_table, hand_space, BOTH) == pytest.approx(23.0)  # as test_predictor


def test_a_table_with_head_entries_needs_one_per_embedding_precision():
    space = SearchSpace(name="hand", model="tiny-bert", dims=DIMS, choices=(Choice("embed.bits", (32, 8)),))
    entries = {k: 1.0 for k in required_keys(space, head=True) if k != head_key(8)}
    with pytest.raises(LatencyTableError, match=r"^head:bits=8: no such entry in latency table .* \(1 missing\)"):
        Predictor(make_table(space, entries=entries, calibration={}), space)
    headless = {k: v for k, v in entries.items() if not k.startswith("head:")}
    Predictor(make_table(space, entries=headless, calibration={}), space)  # no head at all: fine


def test_phase_fields_round_trip_and_name_the_file(tmp_path, prefill, decode):
    d = decode.to_dict()
    assert (d["schema"], d["phase"], d["seq"], d["context"], d["accuracy_level"]) == (2, "decode", 1, 32, 4)
    back = load_table(decode.save(tmp_path / "d.json"))
    assert back.to_dict() == d and back.phase == "decode" and back.context == 32
    assert decode.id == "hand/onnxruntime-cpu/t1/b1/c32.decode" and prefill.id == "hand/onnxruntime-cpu/t1/b1/s8"
    assert table_filename("hand", "onnxruntime-cpu", 1, 1, 1, phase="decode", context=32) == \
        "hand.onnxruntime-cpu.t1.b1.c32.decode.json"
    assert table_filename("hand", "onnxruntime-cpu", 1, 1, 8) == "hand.onnxruntime-cpu.t1.b1.s8.json"


def test_old_tables_load_as_prefill_and_keep_their_hash(tmp_path, hand_table):
    old = {k: v for k, v in hand_table.to_dict().items() if k not in ("phase", "context", "accuracy_level")}
    old["schema"] = 1
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    t = load_table(path)
    assert (t.schema, t.phase, t.seq, t.context, t.accuracy_level) == (1, "prefill", 8, 0, None)
    assert table_accuracy_level(t) == 0  # built with MatMulNBits' accuracy_level unset
    assert t.to_dict() == old  # written back as read: the sha256 a trial pinned still finds it
    from nas.files import sha256_json

    assert table_sha256(t) == sha256_json(old)
    check_phase(t, "prefill")
    shipped = load_table("minilm-l6.onnxruntime-cpu.t1.b1.s128")
    assert shipped.schema == 1 and shipped.phase == "prefill" and not shipped.has_head


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.update(phase="chunked"), r"phase: 'chunked' is not one of \['prefill', 'decode'\]"),
    (lambda d: d.update(seq=4), r"seq/context: a decode table times 1 new token .* got seq 4, context 32"),
    (lambda d: d.update(context=0), r"seq/context: .* got seq 1, context 0"),
    (lambda d: d.update(phase="prefill"), r"context: a prefill table has no cached tokens, got 32"),
    (lambda d: d.update(accuracy_level=7), r"accuracy_level: 7 is not one of \[0, 1, 2, 3, 4\]"),
    (lambda d: d.pop("phase"), r"malformed latency table: missing or bad field 'phase'"),
    (lambda d: d.update(schema=1), r"schema: a schema 1 table is a prefill table"),
])
def test_bad_phase_fields_name_the_file_and_field(tmp_path, decode, mutate, match):
    d = decode.to_dict()
    mutate(d)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(d))
    with pytest.raises(LatencyTableError, match=rf"^{path}: {match}"):
        load_table(path)


def test_check_phase_names_both(prefill, decode):
    check_phase(prefill, "prefill")
    check_phase(decode, "decode")
    with pytest.raises(LatencyTableMismatchError, match=r"^phase: expected a prefill table, but "
                                                        r"hand/onnxruntime-cpu/t1/b1/c32\.decode is a decode table$"):
        check_phase(decode, "prefill")
    with pytest.raises(LatencyTableMismatchError, match="expected a decode table, but .*/s8 is a prefill table"):
        check_phase(prefill, "decode")
    with pytest.raises(LatencyTableError, match=r"phase: 'generate' is not one of"):
        check_phase(prefill, "generate")
    assert issubclass(LatencyTableMismatchError, LatencyTableError)


def test_check_lengths(prefill, decode):
    check_lengths(prefill, prompt=8)
    check_lengths(decode, context=32)
    check_lengths(decode)  # nothing asked
    with pytest.raises(LatencyTableMismatchError, match=r"^prompt: 16 tokens requested, but .*/s8 was measured at 8 "
                                                        r"\(build one: nas lut build hand --phase prefill --seq 16\)"):
        check_lengths(prefill, prompt=16)
    with pytest.raises(LatencyTableMismatchError, match=r"^context: 256 tokens requested, but .*/c32\.decode was "
                                                        r"measured at 32 \(build one: .* --phase decode --context 256\)"):
        check_lengths(decode, context=256)
    with pytest.raises(LatencyTableMismatchError, match=r"^context: a 32-token context is priced by a decode table, "
                                                        r"but .*/s8 is a prefill table"):
        check_lengths(prefill, context=32)
    with pytest.raises(LatencyTableMismatchError, match=r"^prompt: .* but .*c32\.decode is a decode table"):
        check_lengths(decode, prompt=1)


def test_check_accuracy_level(hand_space, decode):
    int4 = make_table(hand_space, entries={**DECODE, "ffn:width=8:bits=4": 0.1}, calibration={}, phase="decode", seq=1,
                      context=32, accuracy_level=4)
    check_accuracy_level(int4, 4)
    with pytest.raises(LatencyTableMismatchError, match=r"^accuracy_level: int4 runs with MatMulNBits accuracy_level 1, "
                                                        r"but .*/c32\.decode measured its int4 entries at accuracy_level 4"):
        check_accuracy_level(int4, 1)
    check_accuracy_level(decode, 1)  # no int4 entry: the level prices nothing
    unset = dataclasses.replace(int4, accuracy_level=None)
    assert table_accuracy_level(unset) == 0 and table_accuracy_level(int4) == 4
    check_accuracy_level(unset, None)
    check_accuracy_level(unset, 0)
    with pytest.raises(LatencyTableMismatchError, match="accuracy_level 4, but .* at accuracy_level 0"):
        check_accuracy_level(unset, 4)


@pytest.mark.parametrize("space, kwargs, match", [
    ("tiny-bert", {"phase": "decode", "context": 8}, r"phase: decode needs a decoder, but space 'tiny-bert' is a bert "
                                                     r"encoder \(it has only the prefill phase\)"),
    ("tiny-llama", {"phase": "decode"}, r"context: a decode table needs the cached tokens"),
    ("tiny-llama", {"phase": "decode", "context": 8, "seq": 4}, r"seq: a decode table times one new token, got seq 4"),
    ("tiny-llama", {"phase": "decode", "context": 0}, r"context: must be an integer >= 1, got 0"),
    ("tiny-llama", {"context": 8}, r"context: a prefill has no cached tokens, got 8 \(use --phase decode\)"),
    ("tiny-llama", {"phase": "generate"}, r"phase: 'generate' is not one of"),
    ("tiny-llama", {"phase": "decode", "context": 4096}, r"context: 4096 cached \+ 1 new tokens exceed the model's"),
    ("tiny-llama", {"seq": 128}, r"seq: 128 tokens exceed the model's 64 positions"),
    ("tiny-llama", {"seq": 16, "backend": "torch-cpu", "accuracy_level": 4}, r"accuracy_level: torch-cpu has no MatMulNBits kernel"),
    ("tiny-llama", {"seq": 16, "accuracy_level": 9}, r"accuracy_level: onnxruntime-cpu takes \[0, 1, 2, 3, 4\], got 9"),
])
def test_bad_build_requests_fail_before_measuring(space, kwargs, match):
    from nas.latency.builder import build_table
    from nas.spaces import load_space

    with pytest.raises(ConfigError, match=rf"^{match}"):
        build_table(load_space(space), **kwargs)

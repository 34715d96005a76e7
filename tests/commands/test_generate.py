"""``nas generate`` run as users run it (a subprocess) on an exported tiny-llama folder."""

import json
import subprocess
import sys

import pytest
import torch

import nas
from nas.models import greedy_generate
from tests.export.test_decoder_export import MIXED, export_folder


def run(*args):
    return subprocess.run([sys.executable, "-m", "nas.cli", "generate", *args], capture_output=True, text=True)


def one_line_error(r, *words):
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas: error:"), r.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    space = nas.load_space("tiny-llama")
    sub = nas.derive(nas.Supernet.build(space), MIXED)
    out = tmp_path_factory.mktemp("gen") / "tiny"
    export_folder(sub, out)
    return sub, out


def test_ids_json_fp32_equals_pytorch_greedy(folder):
    sub, out = folder
    r = run(str(out), "--ids", "5,6,7,8", "--max-new-tokens", "12", "--fp32", "-f", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert set(d) == {"text", "tokens", "prompt_tokens", "ttft_ms", "tpot_ms", "tpot_ms_median", "tpot_ms_iqr",
                      "export_latency"}
    assert d["tpot_ms"] == d["tpot_ms_median"] and d["export_latency"] == {}  # this folder has no manifest
    assert d["text"] is None and d["prompt_tokens"] == 4 and len(d["tokens"]) == 12
    assert d["ttft_ms"] > 0 and d["tpot_ms_median"] > 0 and d["tpot_ms_iqr"] >= 0
    ref = greedy_generate(sub.model, torch.tensor([[5, 6, 7, 8]]), 12)[0, 4:].tolist()
    assert d["tokens"] == ref


def test_table_prints_tokens_and_each_phase(folder):
    _, out = folder
    r = run(str(out), "--ids", "9, 10, 11", "--max-new-tokens", "5")  # the quantized graph by default
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines[0].split()) == 5  # no tokenizer: the generated ids
    assert "prefill: 3 prompt tokens, time to first token" in lines[1]
    assert lines[2].startswith("decode: 4 tokens,") and "ms/token (median; IQR" in lines[2]


def test_user_errors_are_typed_one_line(folder, tmp_path):
    _, out = folder
    one_line_error(run(str(out), "--prompt", "hello"), "tokenizer", "--ids")  # tiny-llama ships no tokenizer
    one_line_error(run(str(out), "--ids", ",".join(["3"] * 60), "--max-new-tokens", "8"),
                   "60 tokens", "context of 64")
    one_line_error(run(str(out), "--ids", "1,500"), "500", "vocabulary")
    one_line_error(run(str(out), "--ids", "1,x"), "ids")
    one_line_error(run(str(out), "--ids", "1", "--chat"), "chat")
    one_line_error(run(str(out), "--ids", "1", "--max-new-tokens", "0"), "max_new_tokens")
    one_line_error(run(str(tmp_path), "--ids", "1"), "not a decoder export")
    one_line_error(run(str(tmp_path / "nope"), "--ids", "1"), "not a folder")


def test_prints_what_export_measured_per_phase(folder, tmp_path):
    """A manifest's ``latency`` (export's per-budget measurements) is printed beside the generation's own times."""
    import shutil

    from nas.export.manifest import MANIFEST_SCHEMA

    _, out = folder
    copy = tmp_path / "with_manifest"
    shutil.copytree(out, copy)
    latency = {"ttft_ms": {"predicted_ms": 12.5, "measured_ms": 13.0, "iqr_ms": 0.25, "phase": "prefill", "seq": 32,
                           "context": 0, "threads": 1},
               "tpot_ms": {"predicted_ms": 2.0, "measured_ms": 1.9, "iqr_ms": 0.05, "phase": "decode", "seq": 1,
                           "context": 32, "threads": 1},
               "request_ms": {"output_tokens": 8, "predicted_ms": 28.5, "measured_ms": 28.2}}
    (copy / "manifest.json").write_text(json.dumps({"schema": MANIFEST_SCHEMA, "latency": latency}))
    r = run(str(copy), "--ids", "9,10,11", "--max-new-tokens", "3")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()[-3:]
    assert lines == ["at export, ttft_ms (32 prompt tokens, 1 thread(s)): measured 13.00 ms (IQR 0.25), predicted 12.50 ms",
                     "at export, tpot_ms (1 token after 32 cached, 1 thread(s)): measured 1.90 ms (IQR 0.05), "
                     "predicted 2.00 ms",
                     "at export, request_ms (8 output tokens, ? thread(s)): measured 28.20 ms, predicted 28.50 ms"]
    d = json.loads(run(str(copy), "--ids", "9,10,11", "--max-new-tokens", "3", "-f", "json").stdout)
    assert d["export_latency"] == latency

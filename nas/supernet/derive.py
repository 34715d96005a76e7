"""Cut a physically smaller subnet out of the supernet, size it, save and load it.

``derive(supernet, arch)`` slices every kept layer to its head prefix and FFN
prefix, drops skipped layers, and replaces each weight by its value on the
chosen bit grid (:func:`~nas.quant.quantize_dequantize`, applied to the
whole pretrained matrix before slicing, as in the supernet), so the subnet's
output equals the supernet's at that one-hot architecture. Given
``int4_importance`` (each linear's input mean squares on calibration text,
:func:`nas.supernet.calibrate.linear_inputs` of the supernet's model), int4
linears take calibrated scales instead (:func:`~nas.quant.clip_int4`): still
the int4 grid, so export, its checks and the latency tables are unchanged,
but no longer the supernet's absmax scales.

A saved subnet is a folder with ``model.safetensors`` (the weights),
``subnet.json`` (space, architecture, per-layer shapes) and, when a trial
fine-tuned one, ``head.safetensors`` (its task head, :mod:`nas.supernet.head`);
nothing is pickled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nas.errors import ArchError, ModelError
from nas.files import atomic_dir
from nas.models.dims import LayerDims
from nas.models.transformer import TransformerModel
from nas.spaces.choice import layer_label
from nas.spaces.space import Arch, SearchSpace
from nas.supernet.head import HEAD_FILE, TaskHead, load_head
from nas.quant import clip_int4, quantize_dequantize, weight_bytes

SUBNET_SCHEMA = 1
_ATTN = ("q", "k", "v", "o")


@dataclass(frozen=True)
class SizeReport:
    """Parameter count and storage of a subnet at its chosen bit-widths."""

    params: int
    bytes: int
    fp32_bytes: int

    @property
    def mb(self) -> float:
        return self.bytes / 1e6

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params, "bytes": self.bytes, "fp32_bytes": self.fp32_bytes, "mb": round(self.mb, 4)}


class Subnet(nn.Module):
    """A derived model plus the architecture it realises (and, optionally, its task head)."""

    def __init__(self, space: SearchSpace, arch: Arch, model: TransformerModel, head: TaskHead | None = None) -> None:
        super().__init__()
        self.head = head
        self.space = space
        self.arch = dict(arch)
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.model(input_ids, attention_mask)

    def bits(self, layer: int, group: str) -> int:
        return self.space.value(self.arch, layer_label(layer, f"{group}.bits"))

    def size(self) -> SizeReport:
        """Parameters, and bytes with every linear and the word embeddings at their chosen bits."""
        params = bytes_ = fp32 = 0
        quantized: dict[str, int] = {"embed.word.weight": self.space.value(self.arch, "embed.bits")}
        for k, ld in enumerate(self.model.layer_dims):
            for name in _ATTN:
                quantized[f"layers.{k}.attn.{name}.weight"] = self.bits(ld.index, "attn")
            for name in ("gate", "up", "down"):
                quantized[f"layers.{k}.ffn.{name}.weight"] = self.bits(ld.index, "ffn")
        for name, p in self.model.named_parameters():
            params += p.numel()
            fp32 += 4 * p.numel()
            bytes_ += weight_bytes(tuple(p.shape), quantized.get(name, 32))
        return SizeReport(params=params, bytes=bytes_, fp32_bytes=fp32)

    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` + ``subnet.json`` (+ ``head.safetensors``) atomically (temp folder, then rename)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        with atomic_dir(directory) as tmp:
            state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
            save_file(state, str(tmp / "model.safetensors"))
            meta = {
                "schema": SUBNET_SCHEMA,
                "space": self.space.to_dict(),
                "arch": self.arch,
                "layers": [[ld.index, ld.num_heads, ld.intermediate] for ld in self.model.layer_dims],
                "size": self.size().to_dict(),
            }
            (tmp / "subnet.json").write_text(json.dumps(meta, indent=1))
            if self.head is not None:
                self.head.save(tmp / HEAD_FILE)
        return directory


def load_subnet(directory: str | Path) -> Subnet:
    """Load a subnet saved by :meth:`Subnet.save` (safetensors + JSON only)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    meta_path, weights = directory / "subnet.json", directory / "model.safetensors"
    for p in (meta_path, weights):
        if not p.is_file():
            raise ModelError(f"subnet: {p} not found")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"subnet: {meta_path} is not valid JSON: {e}") from None
    if meta.get("schema") != SUBNET_SCHEMA:
        raise ModelError(f"subnet: {meta_path}: unknown schema {meta.get('schema')!r}")
    space = SearchSpace.from_dict(meta["space"])
    layers = [LayerDims(*map(int, t)) for t in meta["layers"]]
    model = TransformerModel(space.dims, layers)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise ModelError(f"subnet: {weights} is corrupt: {e}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ModelError(f"subnet: {weights} does not match subnet.json: {str(e).splitlines()[0]}") from None
    head = load_head(directory / HEAD_FILE) if (directory / HEAD_FILE).is_file() else None
    if head is not None and head.weight.shape[1] != space.dims.hidden:
        raise ModelError(f"head: {directory / HEAD_FILE} has hidden size {head.weight.shape[1]}, "
                         f"the subnet {space.dims.hidden}")
    return Subnet(space, space.validate(meta["arch"]), model.eval(), head)


def _slice_linear(src: nn.Linear, dst: nn.Linear, rows: slice | None, cols: slice | None, bits: int,
                  importance: Tensor | None = None) -> None:
    # Quantize the whole pretrained matrix, then slice: the grid (per-row scales) is the
    # one the supernet trained against, so the subnet equals the supernet exactly.
    if bits == 4 and importance is not None:
        w = clip_int4(src.weight.detach(), importance.to(src.weight.device))
    else:
        w = quantize_dequantize(src.weight.detach(), bits)
    if rows is not None:
        w = w[rows]
    if cols is not None:
        w = w[:, cols]
    dst.weight.data.copy_(w)
    if src.bias is not None:
        b = src.bias.detach()
        dst.bias.data.copy_(b[rows] if rows is not None else b)


@torch.no_grad()
def derive(supernet: "torch.nn.Module", arch: Mapping[str, int], *,
           int4_importance: Mapping[str, Tensor] | None = None) -> Subnet:
    """The physically smaller model that ``supernet`` computes at the one-hot ``arch``.

    ``int4_importance``: ``{node: input mean squares}`` of the supernet's model's linears (keys
    ``layers.{i}.attn.q`` …, ``i`` the supernet's layer; :func:`nas.supernet.calibrate.linear_inputs`);
    the int4 linears it names get scales clipped for their output error (:func:`~nas.quant.clip_int4`).

    Raises:
        ArchError: ``arch`` does not fit the supernet's space.
    """
    space: SearchSpace = supernet.space  # type: ignore[assignment]
    full: TransformerModel = supernet.model  # type: ignore[assignment]
    arch = space.validate(arch)
    dims = space.dims
    kept = space.kept_layers(arch)
    if not kept:
        raise ArchError("keep: the architecture skips every layer")
    layer_dims = [
        LayerDims(i, space.value(arch, layer_label(i, "heads")), space.value(arch, layer_label(i, "ffn"))) for i in kept
    ]
    sub = TransformerModel(dims, layer_dims)
    # Everything not sliced below (norms, position tables) is copied as is.
    sub_state = sub.state_dict()
    src_state = full.state_dict()
    for name in sub_state:
        if not name.startswith("layers.") and name in src_state:
            sub_state[name].copy_(src_state[name])
    sub.embed.word.weight.data.copy_(quantize_dequantize(full.embed.word.weight.detach(), space.value(arch, "embed.bits")))
    d = dims.head_dim
    for k, ld in enumerate(layer_dims):
        src, dst = full.layers[ld.index], sub.layers[k]
        a_bits = space.value(arch, layer_label(ld.index, "attn.bits"))
        f_bits = space.value(arch, layer_label(ld.index, "ffn.bits"))
        q_rows = slice(0, ld.num_heads * d)
        kv_rows = slice(0, ld.num_kv_heads(dims) * d)
        imp = {name: (int4_importance or {}).get(f"layers.{ld.index}.{name}") for name in (
            "attn.q", "attn.k", "attn.v", "attn.o", "ffn.gate", "ffn.up", "ffn.down")}
        _slice_linear(src.attn.q, dst.attn.q, q_rows, None, a_bits, imp["attn.q"])
        _slice_linear(src.attn.k, dst.attn.k, kv_rows, None, a_bits, imp["attn.k"])
        _slice_linear(src.attn.v, dst.attn.v, kv_rows, None, a_bits, imp["attn.v"])
        _slice_linear(src.attn.o, dst.attn.o, None, q_rows, a_bits, imp["attn.o"])
        n = slice(0, ld.intermediate)
        _slice_linear(src.ffn.up, dst.ffn.up, n, None, f_bits, imp["ffn.up"])
        if src.ffn.gated:
            _slice_linear(src.ffn.gate, dst.ffn.gate, n, None, f_bits, imp["ffn.gate"])
        _slice_linear(src.ffn.down, dst.ffn.down, None, n, f_bits, imp["ffn.down"])
        for norm in ("attn_norm", "ffn_norm"):
            getattr(dst, norm).load_state_dict(getattr(src, norm).state_dict())
    return Subnet(space, arch, sub.eval())

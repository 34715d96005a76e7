"""The task head a trial fine-tuned on top of its subnet, saved next to it.

A classification trial (``wordnet-nouns``) trains a linear head over the
mean-pooled sentence embedding. Keeping it with the subnet lets the export
recompute the task's real metric (test accuracy) for the PyTorch subnet and for
the quantized ONNX graph. Stored as ``head.safetensors``: the tensors
``weight`` (classes × hidden) and ``bias`` (classes), and the metadata (task,
metric, class labels, tokenization length, number of test examples the trial
scored) as safetensors string metadata; nothing is pickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nas.errors import ModelError

HEAD_FILE = "head.safetensors"


@dataclass(frozen=True)
class TaskHead:
    """A linear classification head over mean-pooled embeddings.

    Attributes:
        task: the task name (e.g. ``wordnet-nouns``).
        labels: the class names, in logit order.
        weight, bias: the linear layer (``len(labels)`` × hidden, ``len(labels)``).
        max_length: the token length the trial tokenized with.
        n_eval: how many test examples the trial scored (the export scores the same ones).
    """

    task: str
    labels: tuple[str, ...]
    weight: Tensor
    bias: Tensor
    max_length: int
    n_eval: int

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.weight.dim() != 2 or self.weight.shape[0] != n or tuple(self.bias.shape) != (n,):
            raise ModelError(f"head: weight {tuple(self.weight.shape)} / bias {tuple(self.bias.shape)} "
                             f"do not fit {n} labels")

    @property
    def metric(self) -> str:
        return "accuracy"

    def logits(self, pooled: Tensor) -> Tensor:
        return pooled.float() @ self.weight.T + self.bias

    def save(self, path: str | Path) -> None:
        """Write ``head.safetensors``; the same head gives the same bytes in every process."""
        from safetensors.torch import save

        meta = {"task": self.task, "labels": json.dumps(list(self.labels)),
                "max_length": str(self.max_length), "n_eval": str(self.n_eval)}
        blob = save({"weight": self.weight.detach().contiguous(), "bias": self.bias.detach().contiguous()},
                    metadata=meta)
        Path(path).write_bytes(_sorted_metadata(blob))


def _sorted_metadata(blob: bytes) -> bytes:
    """safetensors bytes with the header's ``__metadata__`` keys in sorted order.

    safetensors' writer keeps the metadata in a Rust ``HashMap`` seeded at random per
    call, so its key order (and the file's bytes) differ from save to save; the
    tensor entries are already in a fixed order. The header is padded with spaces to
    a multiple of 8 bytes, as the writer does; the data offsets are relative to its end.
    """
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", None)
    ordered = ({"__metadata__": dict(sorted(meta.items()))} if meta else {}) | header
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + blob[8 + n:]


def load_head(path: str | Path) -> TaskHead:
    """Read a ``head.safetensors`` written by :meth:`TaskHead.save`.

    Raises:
        ModelError: unreadable file, missing tensor or metadata key.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta: dict[str, Any] = f.metadata() or {}
            weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
    except (SafetensorError, OSError) as e:
        raise ModelError(f"head: {path} is corrupt: {e}") from None
    except KeyError as e:  # pragma: no cover - safetensors raises SafetensorError for missing keys
        raise ModelError(f"head: {path} lacks tensor {e}") from None
    try:
        return TaskHead(task=meta["task"], labels=tuple(json.loads(meta["labels"])), weight=weight.float(),
                        bias=bias.float(), max_length=int(meta["max_length"]), n_eval=int(meta["n_eval"]))
    except (KeyError, ValueError) as e:
        raise ModelError(f"head: {path} metadata lacks or garbles {e}") from None


def head_from_linear(linear: torch.nn.Linear, *, task: str, labels: tuple[str, ...], max_length: int,
                     n_eval: int) -> TaskHead:
    """A detached copy of a trained ``nn.Linear`` as a :class:`TaskHead`."""
    return TaskHead(task=task, labels=tuple(labels), weight=linear.weight.detach().clone().float(),
                    bias=linear.bias.detach().clone().float(), max_length=max_length, n_eval=n_eval)

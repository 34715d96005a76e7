"""Tokenization for models that ship a ``tokenizer.json`` (fast tokenizers, no hub access)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from nas.errors import ModelError


class Tokenizer:
    """Pads and truncates a batch of texts to ``(input_ids, attention_mask)`` tensors."""

    def __init__(self, model_dir: Path, max_length: int = 128) -> None:
        from tokenizers import Tokenizer as _Tok

        path = Path(model_dir) / "tokenizer.json"
        if not path.is_file():
            raise ModelError(f"tokenizer: {path} not found")
        self._tok = _Tok.from_file(str(path))
        self.max_length = max_length
        self._tok.enable_truncation(max_length)
        self._tok.no_padding()

    def __call__(self, texts: Sequence[str], *, pad_to: int | None = None) -> tuple[Tensor, Tensor]:
        """Token ids and attention mask, padded to the longest text (or to ``pad_to``)."""
        encs = self._tok.encode_batch(list(texts))
        width = pad_to or max(len(e.ids) for e in encs)
        ids = torch.zeros(len(encs), width, dtype=torch.long)
        mask = torch.zeros(len(encs), width, dtype=torch.long)
        for i, e in enumerate(encs):
            n = min(len(e.ids), width)
            ids[i, :n] = torch.tensor(e.ids[:n])
            mask[i, :n] = 1
        return ids, mask

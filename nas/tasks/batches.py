"""Texts as token tensors, and deterministic batches (resumable: a batch depends only on (seed, step)).

Models that ship a ``tokenizer.json`` use it; the tiny test models have none
and use :class:`HashTokenizer` (words hashed into the vocabulary), which is
enough to learn from in tests.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nas.models.sources import LoadedModel

TokenizeFn = Callable[[Sequence[str]], tuple[Tensor, Tensor]]


class HashTokenizer:
    """Lower-cased words → ``1 + sha1(word) mod (vocab−1)`` (0 is padding), truncated to ``max_length``."""

    def __init__(self, vocab_size: int, max_length: int) -> None:
        self.vocab_size, self.max_length = vocab_size, max_length

    def _ids(self, text: str) -> list[int]:
        words = re.findall(r"[a-z0-9]+", text.lower())[: self.max_length] or ["<empty>"]
        return [1 + int.from_bytes(hashlib.sha1(w.encode()).digest()[:4], "big") % (self.vocab_size - 1) for w in words]

    def __call__(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        rows = [self._ids(t) for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return ids, mask


def tokenizer_for(loaded: LoadedModel, max_length: int) -> TokenizeFn:
    """The model's own tokenizer when it ships one, else a :class:`HashTokenizer`."""
    if loaded.model_dir is not None and (loaded.model_dir / "tokenizer.json").is_file():
        from nas.models.tokenizer import Tokenizer

        return Tokenizer(loaded.model_dir, max_length)
    return HashTokenizer(loaded.dims.vocab_size, max_length)


@dataclass
class Encoded:
    """Token ids and masks of N texts (padded to the longest), labels, and teacher targets."""

    ids: Tensor
    mask: Tensor
    labels: Tensor
    teacher: Tensor | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def batch(self, idx: Tensor) -> dict[str, Tensor]:
        """Rows ``idx``, trimmed to their longest text."""
        mask = self.mask[idx]
        width = max(int(mask.sum(1).max()), 1)
        out = {"ids": self.ids[idx, :width], "mask": mask[:, :width], "labels": self.labels[idx]}
        if self.teacher is not None:
            out["teacher"] = self.teacher[idx]
        return out

    def subset(self, idx: Tensor) -> "Encoded":
        return Encoded(self.ids[idx], self.mask[idx], self.labels[idx], None if self.teacher is None else self.teacher[idx])


def encode(tokenize: TokenizeFn, texts: Sequence[str], labels: Sequence[int]) -> Encoded:
    ids, mask = tokenize(texts)
    return Encoded(ids, mask, torch.tensor(list(labels), dtype=torch.long))


def batch_indices(n: int, size: int, *, seed: int, step: int, salt: int = 0) -> Tensor:
    """``size`` distinct indices in ``range(n)`` drawn from a generator seeded by (seed, salt, step)."""
    g = torch.Generator().manual_seed(((seed * 1_000_003 + salt) * 1_000_033 + step) % (2**63))
    return torch.randperm(n, generator=g)[: min(size, n)]


def length_ordered_chunks(mask: Tensor, size: int) -> list[Tensor]:
    """Index chunks of ``size`` with similar lengths (less padding when only inference is needed)."""
    order = torch.argsort(mask.sum(1), stable=True)
    return [order[i : i + size] for i in range(0, len(order), size)]

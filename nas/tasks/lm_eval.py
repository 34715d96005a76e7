"""Scoring a decoder through its next-token logits: multiple choice and perplexity, batched.

**The forward contract** (:data:`LogitsForward`), shared by the trainer (a
PyTorch model, :func:`lm_forward`) and export (an onnxruntime session wrapped
in a function)::

    forward(ids, mask) -> logits

* ``ids``: int64 ``(B, T)`` token ids; ``mask``: int64 ``(B, T)``, 1 for a real
  token and 0 for padding. Padding is always on the right (row ``i``'s real
  tokens are columns ``0 … n_i − 1``; padded ids are 0), so a causal model
  computes every real token as it would unpadded.
* returns float logits ``(B, T, V)`` (a tensor on any device, or a NumPy array):
  ``logits[i, t]`` are the next-token logits after tokens ``0 … t`` of row
  ``i``, with rotary positions ``0 … T − 1`` (column indices, as
  :meth:`~nas.models.transformer.TransformerModel.forward`). Values at padded
  columns are never read.
* ``B`` and ``T`` change from call to call (``B ≤ batch_size``, ``T`` up to the
  longest prompt + candidate of a batch), so an exported graph needs dynamic
  batch and sequence axes. No KV cache, no BOS token added.

Scores (pure functions of ``forward`` and the encoded data):

* :func:`choice_scores` – the mean token log-likelihood of each candidate's
  tokens after its prompt; the prompt and `` {candidate}`` are tokenized
  separately and concatenated (:func:`encode_choices`), and every candidate
  of every item is one row, rows batched by length;
* :func:`choice_correct` / :func:`choice_accuracy` – per item, whether its
  true candidate scores highest (ties: the first candidate), and their share;
* :func:`perplexity` – ``exp`` of the mean next-token negative log-likelihood
  over the real tokens after each text's first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from nas.tasks.batches import TokenizeFn, length_ordered_chunks
from nas.tasks.definitions import ChoiceItem

LogitsForward = Callable[[Tensor, Tensor], Tensor]


def lm_forward(model: torch.nn.Module) -> LogitsForward:
    """The contract's forward of a llama-family :class:`~nas.models.transformer.TransformerModel`:
    its last hidden states through the tied LM head, on the model's device (the inputs are moved there)."""

    def forward(ids: Tensor, mask: Tensor) -> Tensor:
        device = model.embed.word.weight.device
        return model.logits(model(ids.to(device), mask.to(device)))

    return forward


def _token_rows(tokenize: TokenizeFn, texts: Sequence[str]) -> list[list[int]]:
    ids, mask = tokenize(texts)
    return [ids[i, : int(mask[i].sum())].tolist() for i in range(len(texts))]


@dataclass(frozen=True)
class EncodedChoices:
    """Every item's candidates as token rows (item-major: row ``i·C + c`` is candidate ``c`` of item ``i``).

    Attributes:
        rows: token ids of prompt + candidate, per row.
        starts: per row, the index of the candidate's first token.
        answers: per item, the true candidate's index.
        num_choices: candidates per item (C).
    """

    rows: tuple[tuple[int, ...], ...]
    starts: tuple[int, ...]
    answers: tuple[int, ...]
    num_choices: int

    def __len__(self) -> int:
        return len(self.answers)


def encode_choices(tokenize: TokenizeFn, items: Sequence[ChoiceItem], *, max_prompt: int = 128) -> EncodedChoices:
    """Tokenize prompts and `` {candidate}`` continuations separately; a prompt longer than ``max_prompt``
    tokens keeps its last ``max_prompt`` (the ``Word:`` cue stays next to the candidate).

    ``tokenize`` should not truncate below ``max_prompt`` (e.g. ``tokenizer_for(loaded, 256)``).
    """
    if not items:
        raise ValueError("encode_choices: no items")
    c = len(items[0].choices)
    if any(len(it.choices) != c for it in items):
        raise ValueError("encode_choices: items have different numbers of choices")
    prompts = _token_rows(tokenize, [it.prompt for it in items])
    conts = _token_rows(tokenize, [f" {w}" for it in items for w in it.choices])
    rows, starts = [], []
    for i in range(len(items)):
        p = prompts[i][-max_prompt:]
        for k in range(c):
            rows.append(tuple(p + conts[i * c + k]))
            starts.append(len(p))
    return EncodedChoices(tuple(rows), tuple(starts), tuple(it.answer for it in items), c)


def _logits(forward: LogitsForward, ids: Tensor, mask: Tensor) -> Tensor:
    with torch.no_grad():
        return torch.as_tensor(forward(ids, mask)).float()


def choice_scores(forward: LogitsForward, enc: EncodedChoices, *, batch_size: int = 32) -> Tensor:
    """``(items, C)`` mean token log-likelihoods of each candidate after its prompt (see the module docstring)."""
    lengths = torch.tensor([len(r) for r in enc.rows])
    scores = torch.empty(len(enc.rows))
    for chunk in torch.argsort(lengths, stable=True).split(batch_size):
        width = int(lengths[chunk].max())
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, r in enumerate(chunk.tolist()):
            ids[j, : lengths[r]] = torch.tensor(enc.rows[r])
            mask[j, : lengths[r]] = 1
        logits = _logits(forward, ids, mask)
        on = ids.to(logits.device)
        rows = []
        for j, r in enumerate(chunk.tolist()):
            s, n = enc.starts[r], int(lengths[r])
            logp = F.log_softmax(logits[j, s - 1 : n - 1], dim=-1)
            rows.append(logp.gather(-1, on[j, s:n, None]).mean())
        scores[chunk] = torch.stack(rows).cpu()
    return scores.view(len(enc), enc.num_choices)


def choice_correct(forward: LogitsForward, enc: EncodedChoices, *, batch_size: int = 32) -> Tensor:
    """``(items,)`` bool: whether each item's true candidate has the highest :func:`choice_scores`."""
    return choice_scores(forward, enc, batch_size=batch_size).argmax(-1) == torch.tensor(enc.answers)


def choice_accuracy(forward: LogitsForward, enc: EncodedChoices, *, batch_size: int = 32) -> float:
    """Share of items (0..1) whose true candidate has the highest :func:`choice_scores`."""
    return int(choice_correct(forward, enc, batch_size=batch_size).sum()) / len(enc)


def perplexity(forward: LogitsForward, ids: Tensor, mask: Tensor, *, batch_size: int = 16) -> float:
    """``exp`` of the mean next-token NLL over every real token after each row's first (right-padded rows)."""
    nll, count = 0.0, 0
    for idx in length_ordered_chunks(mask, batch_size):
        width = max(int(mask[idx].sum(1).max()), 1)
        b_ids, b_mask = ids[idx, :width], mask[idx, :width]
        logits = _logits(forward, b_ids, b_mask)
        b_ids, b_mask = b_ids.to(logits.device), b_mask.to(logits.device)
        real = b_mask[:, 1:].bool()
        if not bool(real.any()):
            continue
        nll += float(F.cross_entropy(logits[:, :-1][real], b_ids[:, 1:][real], reduction="sum"))
        count += int(real.sum())
    if count == 0:
        raise ValueError("perplexity: no text has two tokens")
    return math.exp(nll / count)

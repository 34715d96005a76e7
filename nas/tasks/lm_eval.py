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
* :func:`choice_scores_cached` – the same scores through a KV-cached decoder (an exported
  generation graph, or a PyTorch decoder through :class:`TorchCachedDecoder`): each prompt once,
  its candidates as one batch after it;
* :func:`choice_correct` / :func:`choice_accuracy` – per item, whether its
  true candidate scores highest (ties: the first candidate), and their share;
* :func:`perplexity` – ``exp`` of the mean next-token negative log-likelihood
  over the real tokens after each text's first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
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


class CachedDecoder(Protocol):
    """A decoder run with its KV cache (:class:`nas.runtime.decoder_session.DecoderSession`): ``step`` takes new ids
    ``(B, T)``, a mask over past and new tokens ``(B, P + T)`` and the pasts; returns logits ``(B, T, V)`` and the
    presents (NumPy arrays)."""

    def step(self, ids: np.ndarray, mask: np.ndarray, past: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]: ...

    def empty_past(self, batch: int) -> list[np.ndarray]: ...


class TorchCachedDecoder:
    """A PyTorch decoder (:class:`nas.models.transformer.TransformerModel`, llama family) as a :class:`CachedDecoder`:
    :meth:`~nas.models.transformer.TransformerModel.extend` with the pasts as NumPy arrays, keys and values
    of each kept layer in turn (about 4× fewer positions than :func:`choice_scores` on WordNet's items)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def empty_past(self, batch: int) -> list[np.ndarray]:
        return []

    @torch.no_grad()
    def step(self, ids: np.ndarray, mask: np.ndarray, past: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        from nas.models.kv_cache import KVCache

        device = next(self.model.parameters()).device
        n = past[0].shape[2] if past else 0
        t = [torch.as_tensor(p, device=device) for p in past]
        cache = KVCache(tuple(t[0::2]), tuple(t[1::2]), torch.as_tensor(mask[:, :n], device=device)) if past else None
        hidden, new = self.model.extend(torch.as_tensor(ids, device=device), torch.as_tensor(mask[:, n:], device=device),
                                        cache=cache)
        presents = [x.cpu().numpy() for kv in zip(new.keys, new.values) for x in kv]
        return self.model.logits(hidden).float().cpu().numpy(), presents


def choice_scores_cached(decoder: CachedDecoder, enc: EncodedChoices) -> Tensor:
    """:func:`choice_scores` through the KV cache: each item's prompt is run once, then its ``C`` candidates as one
    batch after the cached prompt (the same tokens and positions, so the same scores up to float rounding).

    A prompt of ``P`` tokens and candidates of ``n`` tokens cost ``P + C·n`` token positions instead of
    ``C·(P + n)``: about ``C``× fewer for WordNet's short candidates.
    """
    c = enc.num_choices
    scores = torch.empty(len(enc.rows))
    for i in range(len(enc)):
        rows, s = enc.rows[i * c : (i + 1) * c], enc.starts[i * c]
        prompt = np.asarray([rows[0][:s]], dtype=np.int64)
        logits, past = decoder.step(prompt, np.ones_like(prompt), decoder.empty_past(1))
        first = F.log_softmax(torch.as_tensor(logits[0, -1]).float(), dim=-1)
        conts = [r[s:] for r in rows]
        n = max(len(x) for x in conts)
        rest = None
        if n > 1:  # logits after candidate tokens 0 … n−2 predict tokens 1 … n−1
            ids = np.zeros((c, n - 1), dtype=np.int64)
            mask = np.zeros((c, s + n - 1), dtype=np.int64)
            mask[:, :s] = 1
            for j, x in enumerate(conts):
                ids[j, : len(x) - 1] = x[:-1]
                mask[j, s : s + len(x) - 1] = 1
            out, _ = decoder.step(ids, mask, [np.repeat(p, c, axis=0) for p in past])
            rest = F.log_softmax(torch.as_tensor(out).float(), dim=-1)
        for j, x in enumerate(conts):
            ll = [first[x[0]]] + ([rest[j, k - 1, x[k]] for k in range(1, len(x))] if rest is not None else [])
            scores[i * c + j] = torch.stack(ll).mean()
    return scores.view(len(enc), c)


def correct_of(scores: Tensor, enc: EncodedChoices) -> Tensor:
    """``(items,)`` bool: whether each item's true candidate has the highest of its ``scores`` (ties: the first)."""
    return scores.argmax(-1) == torch.tensor(enc.answers)


def choice_correct(forward: LogitsForward, enc: EncodedChoices, *, batch_size: int = 32) -> Tensor:
    """``(items,)`` bool: whether each item's true candidate has the highest :func:`choice_scores`."""
    return correct_of(choice_scores(forward, enc, batch_size=batch_size), enc)


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

"""The task metric the export compares between the PyTorch subnet and the quantized ONNX graph.

:func:`task_metric` picks, in points:

* **Test accuracy** when the subnet carries the task head its trial fine-tuned
  (``head.safetensors``, a ``wordnet-nouns`` trial): the head's argmax over the
  mean-pooled embedding on the same WordNet test examples the trial scored
  (the first ``head.n_eval`` of the test split, tokenized at
  ``head.max_length`` as the trainer does), so the PyTorch value equals the
  trial's recorded ``quality``.
* **Teacher fidelity** otherwise (``wordnet-embed`` trials, or a subnet without
  a head): 100 × the mean cosine between the model's mean-pooled embeddings and
  the full pretrained model's, on the first ``n`` glosses of the WordNet test
  split. Without WordNet installed, seeded random tokens stand in (the
  metric's name says so).
* **Definition → word accuracy** for a decoder (``space.dims.family ==
  "llama"``, the ``wordnet-definitions`` task): the share of the first
  ``items`` multiple-choice items of the WordNet definitions test split
  (:mod:`nas.tasks.definitions`) whose true word has the highest mean token
  log-likelihood, with the trainer's own scorer, so the PyTorch value equals
  the trial's recorded ``quality`` (× 100) when the trial scored as many items
  (``max_eval``). Without WordNet: next-token agreement with the full model on
  seeded random tokens (named so).

The forward a metric takes (CPU inputs, a result on any device): ``forward(ids, mask) -> hidden
(B, T, H)`` for an encoder; for a decoder ``forward(ids, mask) -> logits (B, T, V)``, the contract
written in :mod:`nas.tasks.lm_eval` (right-padded int64 inputs, positions
``0 … T−1``, dynamic batch and sequence axes; :func:`nas.tasks.lm_eval.lm_forward`
makes one of a PyTorch model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from nas.models.transformer import TransformerModel, mean_pool

Forward = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class ItemAccuracy:
    """An accuracy metric that also tells which items a model gets right (for a paired comparison).

    ``metric(forward)`` is the accuracy in points, as every metric here;
    ``correct(forward)`` the ``(items,)`` bool tensor it is the mean of.
    """

    correct: Callable[[Forward], Tensor]

    def __call__(self, forward: Forward) -> float:
        return 100.0 * float(self.correct(forward).double().mean())
DEFINITION_ITEMS = 200  # multiple-choice items a decoder is scored on by default
CHOICE_MAX_TOKENS = 256  # tokenizer limit for prompts (a longer prompt keeps its last 128 tokens)


def eval_inputs(space, loaded=None, *, n: int = 64, max_length: int = 32) -> tuple[str, Tensor, Tensor]:
    """``(source, input_ids, attention_mask)`` of the evaluation examples."""
    from nas.errors import DataError
    from nas.models.sources import load_model

    loaded = loaded or load_model(space.model)
    max_length = min(max_length, space.dims.max_positions)
    try:
        from nas.tasks.batches import tokenizer_for
        from nas.tasks.wordnet import load_wordnet_nouns

        test = load_wordnet_nouns().test[:n]
        ids, mask = tokenizer_for(loaded, max_length)([e.text for e in test])
        return f"wordnet test[:{len(test)}]", ids, mask
    except (DataError, ImportError):
        g = torch.Generator().manual_seed(1234)
        ids = torch.randint(1, space.dims.vocab_size, (n, max_length), generator=g)
        mask = torch.ones_like(ids)
        mask[n // 2:, max_length // 2:] = 0
        return f"random tokens[{n}] (WordNet not installed)", ids, mask


def task_metric(subnet, *, n: int = 64, max_length: int = 32,
                items: int = DEFINITION_ITEMS) -> tuple[str, Callable[[Forward], float]]:
    """``(name, metric)`` for ``subnet``: a decoder's definition → word accuracy (``metric`` takes a forward
    returning logits), else test accuracy with its task head, else teacher fidelity (see the module docstring)."""
    from nas.errors import DataError

    if subnet.space.dims.family == "llama":
        try:
            return definition_accuracy(subnet.space, n=items)
        except (DataError, ImportError):
            return next_token_agreement(subnet.space, n=n, max_length=max_length)
    if subnet.head is not None:
        try:
            return head_accuracy(subnet)
        except (DataError, ImportError):
            pass  # no WordNet here: fall back to fidelity on random tokens (named so)
    return teacher_fidelity(subnet.space, n=n, max_length=max_length)


def head_accuracy(subnet, *, batch_size: int = 128) -> tuple[str, Callable[[Forward], float]]:
    """``(name, metric)``: accuracy (points) of ``subnet.head`` on the WordNet test examples its trial scored.

    Raises:
        DataError: WordNet is not installed.
        ModelError: the head's labels are not the task's classes.
    """
    from nas.errors import ModelError
    from nas.models.sources import load_model
    from nas.tasks.batches import encode, length_ordered_chunks, tokenizer_for
    from nas.tasks.wordnet import CLASSES, load_wordnet_nouns

    head = subnet.head
    if tuple(head.labels) != tuple(CLASSES):
        raise ModelError(f"head: labels of task {head.task!r} are not the {len(CLASSES)} WordNet noun classes")
    test = load_wordnet_nouns().test[: head.n_eval]
    data = encode(tokenizer_for(load_model(subnet.space.model), head.max_length),
                  [e.text for e in test], [e.label for e in test])
    order = length_ordered_chunks(data.mask, batch_size)
    chunks = [data.batch(idx) for idx in order]

    def correct(forward: Forward) -> Tensor:
        out = torch.zeros(len(data), dtype=torch.bool)
        with torch.no_grad():
            for idx, b in zip(order, chunks):
                pooled = mean_pool(forward(b["ids"], b["mask"]).float().cpu(), b["mask"])
                out[idx] = head.logits(pooled).argmax(-1) == b["labels"]
        return out

    return f"{head.task} test accuracy on wordnet test[:{len(data)}]", ItemAccuracy(correct)


@torch.no_grad()
def teacher_fidelity(space, *, n: int = 64, max_length: int = 32) -> tuple[str, Callable[[Forward], float]]:
    """``(name, metric)``: ``metric(forward)`` scores a ``forward(ids, mask) -> hidden`` callable in points."""
    from nas.models.sources import load_model

    loaded = load_model(space.model)
    teacher = TransformerModel(space.dims)
    teacher.load_state_dict(loaded.state)
    source, ids, mask = eval_inputs(space, loaded, n=n, max_length=max_length)
    target = mean_pool(teacher.eval()(ids, mask), mask)

    def metric(forward: Forward) -> float:
        with torch.no_grad():
            emb = mean_pool(forward(ids, mask).float().cpu(), mask)
        return float(100 * torch.nn.functional.cosine_similarity(emb, target, dim=-1).mean())

    return f"teacher_fidelity on {source}", metric


def definition_accuracy(space, *, n: int = DEFINITION_ITEMS, loaded=None,
                        batch_size: int = 32) -> tuple[str, Callable[[Forward], float]]:
    """``(name, metric)``: definition → word accuracy (points) of a decoder on the first ``n`` test items.

    ``metric(forward)`` takes ``forward(ids, mask) -> logits (B, T, V)`` (:mod:`nas.tasks.lm_eval`) and
    calls it with at most ``batch_size`` rows at a time.

    Raises:
        DataError: WordNet is not installed.
    """
    from nas.models.sources import load_model
    from nas.tasks.batches import tokenizer_for
    from nas.tasks.definitions import load_definitions
    from nas.tasks.lm_eval import choice_correct, encode_choices

    loaded = loaded or load_model(space.model)
    chosen = load_definitions().choice_items("test", n)
    enc = encode_choices(tokenizer_for(loaded, CHOICE_MAX_TOKENS), chosen)
    return (f"definition-to-word accuracy on wordnet definitions test[:{len(chosen)}]",
            ItemAccuracy(lambda forward: choice_correct(forward, enc, batch_size=batch_size)))


@torch.no_grad()
def next_token_agreement(space, *, n: int = 64, max_length: int = 32) -> tuple[str, Callable[[Forward], float]]:
    """``(name, metric)``: 100 × the share of real tokens whose argmax next token agrees with the full
    decoder's; ``metric`` takes a forward returning logits (:mod:`nas.tasks.lm_eval`)."""
    from nas.models.sources import load_model

    loaded = load_model(space.model)
    teacher = TransformerModel(space.dims)
    teacher.load_state_dict(loaded.state)
    source, ids, mask = eval_inputs(space, loaded, n=n, max_length=max_length)
    target = teacher.eval().logits(teacher(ids, mask)).argmax(-1)
    real = mask.bool()

    def metric(forward: Forward) -> float:
        with torch.no_grad():
            pred = torch.as_tensor(forward(ids, mask)).argmax(-1).cpu()
        return float(100 * (pred == target)[real].float().mean())

    return f"next-token agreement with the full model on {source}", metric

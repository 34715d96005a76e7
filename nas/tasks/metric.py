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
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from nas.models.transformer import TransformerModel, mean_pool

Forward = Callable[[Tensor, Tensor], Tensor]


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


def task_metric(subnet, *, n: int = 64, max_length: int = 32) -> tuple[str, Callable[[Forward], float]]:
    """``(name, metric)`` for ``subnet``: test accuracy with its task head, else teacher fidelity."""
    from nas.errors import DataError

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
    chunks = [data.batch(idx) for idx in length_ordered_chunks(data.mask, batch_size)]

    def metric(forward: Forward) -> float:
        correct = 0
        with torch.no_grad():
            for b in chunks:
                pooled = mean_pool(forward(b["ids"], b["mask"]).float(), b["mask"])
                correct += int((head.logits(pooled).argmax(-1) == b["labels"]).sum())
        return 100.0 * correct / max(len(data), 1)

    return f"{head.task} test accuracy on wordnet test[:{len(data)}]", metric


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
            emb = mean_pool(forward(ids, mask).float(), mask)
        return float(100 * torch.nn.functional.cosine_similarity(emb, target, dim=-1).mean())

    return f"teacher_fidelity on {source}", metric

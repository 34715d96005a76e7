"""The task metric the export compares between the PyTorch subnet and the quantized ONNX graph.

**Teacher fidelity**: 100 × the mean cosine between the model's mean-pooled
embeddings and the full pretrained model's, on the first ``n`` glosses of the
WordNet test split (``trainers.data``), tokenized as the trainer does
(``trainers.batches.tokenizer_for``). This is the ``wordnet-embed`` task's
metric on the test split, in points. Without WordNet installed, seeded random
tokens stand in (the metric's name says so).

Gap: a ``wordnet-nouns`` trial fine-tunes a classification head that the
trainer does not save with the subnet, so its accuracy cannot be recomputed at
export; teacher fidelity is checked for every task.
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
        from trainers.batches import tokenizer_for
        from trainers.data import load_wordnet_nouns

        test = load_wordnet_nouns().test[:n]
        ids, mask = tokenizer_for(loaded, max_length)([e.text for e in test])
        return f"wordnet test[:{len(test)}]", ids, mask
    except (DataError, ImportError):
        g = torch.Generator().manual_seed(1234)
        ids = torch.randint(1, space.dims.vocab_size, (n, max_length), generator=g)
        mask = torch.ones_like(ids)
        mask[n // 2:, max_length // 2:] = 0
        return f"random tokens[{n}] (WordNet not installed)", ids, mask


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

"""The task metric the export compares between the PyTorch subnet and the quantized ONNX graph.

Interim metric (the ``trainer`` branch's task heads and WordNet test split are
not merged yet): **teacher fidelity**, 100 × the mean cosine between the
model's mean-pooled embeddings and the full pretrained model's, on fixed
evaluation inputs (the built-in calibration sentences tokenized, for models
with a tokenizer; seeded random tokens otherwise). It is the ``wordnet-embed``
task's metric on these inputs; in points, higher is better.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from nas.models.transformer import TransformerModel, mean_pool

TEACHER_FIDELITY = "teacher_fidelity"


def eval_inputs(space, loaded=None, *, n: int = 32, seq: int = 32) -> tuple[Tensor, Tensor]:
    """Evaluation token ids and mask: tokenized sentences where a tokenizer exists, else seeded random ids."""
    from nas.models.sources import load_model

    loaded = loaded or load_model(space.model)
    if loaded.model_dir is not None and (loaded.model_dir / "tokenizer.json").is_file():
        from nas.models.tokenizer import Tokenizer
        from nas.supernet.importance import CALIBRATION_TEXT

        return Tokenizer(loaded.model_dir, min(seq * 4, space.dims.max_positions))(list(CALIBRATION_TEXT))
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(1, space.dims.vocab_size, (n, min(seq, space.dims.max_positions)), generator=g)
    mask = torch.ones_like(ids)
    mask[n // 2:, seq // 2:] = 0
    return ids, mask


@torch.no_grad()
def teacher_fidelity(space) -> tuple[str, Callable[[Callable[[Tensor, Tensor], Tensor]], float]]:
    """``(name, metric)``: ``metric(forward)`` scores a ``forward(ids, mask) -> hidden`` callable."""
    from nas.models.sources import load_model

    loaded = load_model(space.model)
    teacher = TransformerModel(space.dims)
    teacher.load_state_dict(loaded.state)
    ids, mask = eval_inputs(space, loaded)
    target = mean_pool(teacher.eval()(ids, mask), mask)

    def metric(forward: Callable[[Tensor, Tensor], Tensor]) -> float:
        with torch.no_grad():
            emb = mean_pool(forward(ids, mask).float(), mask)
        return float(100 * torch.nn.functional.cosine_similarity(emb, target, dim=-1).mean())

    return TEACHER_FIDELITY, metric

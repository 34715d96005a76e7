"""Tasks: what a student is trained and scored on, given the teacher's targets.

A batch carries ``labels`` and ``teacher`` (the teacher's logits for
classification, its pooled embedding for ``wordnet-embed``). Both tasks take
mean-pooled sentence embeddings.

* :class:`ClassifyTask` (``wordnet-nouns``): a linear head over the pooled
  embedding; loss ``(1−w)·CE + w·KD`` (KL with temperature); metric accuracy.
* :class:`EmbedTask` (``wordnet-embed``): loss ``1 − cos`` to the teacher's
  embedding; metric mean cosine (fidelity).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.losses import cosine_loss, kd_kl


class ClassifyTask(nn.Module):
    """Classification head + distillation loss + accuracy."""

    metric = "accuracy"

    def __init__(self, hidden: int, num_classes: int, *, kd_weight: float = 0.5, temperature: float = 2.0) -> None:
        super().__init__()
        self.head = nn.Linear(hidden, num_classes)
        self.kd_weight, self.temperature = kd_weight, temperature

    def loss(self, pooled: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        logits = self.head(pooled)
        ce = F.cross_entropy(logits, batch["labels"])
        if self.kd_weight <= 0:
            return ce
        return (1 - self.kd_weight) * ce + self.kd_weight * kd_kl(logits, batch["teacher"], self.temperature)

    @torch.no_grad()
    def score(self, pooled: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        """Per-example score (1 if correct); the metric is its mean."""
        return (self.head(pooled).argmax(-1) == batch["labels"]).float()


class EmbedTask(nn.Module):
    """Cosine fidelity of the student's pooled embedding to the teacher's."""

    metric = "cosine"

    def loss(self, pooled: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        return cosine_loss(pooled, batch["teacher"])

    @torch.no_grad()
    def score(self, pooled: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        return F.cosine_similarity(pooled, batch["teacher"], dim=-1)


Task = ClassifyTask | EmbedTask

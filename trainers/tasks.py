"""Tasks: what a student is trained and scored on, given the teacher's targets.

One contract for every task: ``out(model, hidden, batch, control)`` turns the
model's last hidden states into the task's student output, ``loss(out, batch)``
is the training loss and ``score(out, batch)`` a per-example score; the search
loop and fine-tuning call nothing else, so encoders and decoders share them.
``uses_lm_head`` says whether ``out`` reads the whole word-embedding table (the
tied LM head), so the search fake-quantizes all of it, not just the rows a
batch looks up.

For the encoder tasks a batch carries ``labels`` and ``teacher`` (the teacher's
logits for classification, its pooled embedding for ``wordnet-embed``), and
``out`` is the mean-pooled sentence embedding:

* :class:`ClassifyTask` (``wordnet-nouns``): a linear head over the pooled
  embedding; loss ``(1−w)·CE + w·KD`` (KL with temperature); metric accuracy.
* :class:`EmbedTask` (``wordnet-embed``): loss ``1 − cos`` to the teacher's
  embedding; metric mean cosine (fidelity).

The decoder task computes its teacher's targets itself (the full model, frozen,
run on the batch: nothing cached):

* :class:`NextTokenTask` (``wordnet-definitions``): ``out`` is the next-token
  logits; loss the distillation KL at temperature τ to the full model's logits,
  averaged over real tokens; its quality is measured on whole items
  (definition → word multiple choice, :mod:`trainers.definitions`), not per batch.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.models.transformer import ModelControl, TransformerModel, mean_pool
from trainers.losses import cosine_loss, kd_kl


class _PooledTask(nn.Module):
    """A task over the mean-pooled sentence embedding."""

    uses_lm_head = False

    def out(self, model: TransformerModel, hidden: Tensor, batch: Mapping[str, Tensor],
            control: ModelControl | None = None) -> Tensor:
        return mean_pool(hidden, batch["mask"])


class ClassifyTask(_PooledTask):
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


class EmbedTask(_PooledTask):
    """Cosine fidelity of the student's pooled embedding to the teacher's."""

    metric = "cosine"

    def loss(self, pooled: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        return cosine_loss(pooled, batch["teacher"])

    @torch.no_grad()
    def score(self, pooled: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        return F.cosine_similarity(pooled, batch["teacher"], dim=-1)


class NextTokenTask(nn.Module):
    """Next-token distillation to a frozen teacher (the full pretrained decoder); no parameters of its own.

    Args:
        teacher: the full model, frozen; held by reference (not a submodule: it is
            not trained, checkpointed or copied with the task), but moved with it:
            ``task.to(device)`` moves the teacher too, as it runs on the task's batches.
        temperature: τ of the KL.
    """

    metric = "choice_accuracy"
    uses_lm_head = True

    def __init__(self, teacher: TransformerModel, *, temperature: float = 2.0) -> None:
        super().__init__()
        self._teacher = (teacher,)
        self.temperature = temperature

    @property
    def teacher(self) -> TransformerModel:
        return self._teacher[0]

    def __deepcopy__(self, memo: dict) -> "NextTokenTask":
        return NextTokenTask(self.teacher, temperature=self.temperature)

    def _apply(self, fn, recurse: bool = True):  # .to(), .cuda(), .cpu() reach the teacher
        self.teacher._apply(fn)
        return super()._apply(fn, recurse)

    def out(self, model: TransformerModel, hidden: Tensor, batch: Mapping[str, Tensor],
            control: ModelControl | None = None) -> Tensor:
        return model.logits(hidden, control)

    def loss(self, logits: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        real = batch["mask"].bool()
        with torch.no_grad():
            target = self.teacher.logits(self.teacher(batch["ids"], batch["mask"]))[real]
        return kd_kl(logits[real], target, self.temperature)

    @torch.no_grad()
    def score(self, logits: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        """Per-example share of real tokens whose argmax agrees with the teacher's."""
        target = self.teacher.logits(self.teacher(batch["ids"], batch["mask"]))
        m = batch["mask"].float()
        return ((logits.argmax(-1) == target.argmax(-1)).float() * m).sum(1) / m.sum(1).clamp(min=1.0)


Task = ClassifyTask | EmbedTask | NextTokenTask

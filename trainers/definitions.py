"""The ``wordnet-definitions`` recipe: a decoder distilled on WordNet text, scored by definition → word.

* **Data** (:mod:`nas.tasks.definitions`, all four parts of speech): the
  glosses of the first ``max_train`` train synsets (hash order), or with
  ``distill_text: items`` the same synsets as multiple-choice items answered
  (``Definition: … Word: <word>``), tokenized at ``max_length``, split into
  the search's weight and architecture parts by key;
  for evaluation the first ``max_eval`` multiple-choice items of the test split
  and the glosses of the first ``max_eval`` test synsets.
* **Teacher**: the full pretrained model, frozen; :class:`~trainers.tasks.NextTokenTask`
  runs it on every batch (no logits cached). Only its test scores are cached,
  as ``scores.json`` in ``$NAS_CACHE_DIR/teacher/<key>`` (``key`` hashes model,
  space, the four data files, item counts and ``max_length``).
* **Quality**: definition → word accuracy (0..1) computed by export's own metric
  (:func:`nas.tasks.metric.definition_accuracy`) on the model's logits
  (:func:`nas.tasks.lm_eval.lm_forward`); **metrics**: ``perplexity`` of the
  test glosses (:func:`nas.tasks.lm_eval.perplexity`).

``kd_weight``, ``teacher_max_train`` and ``teacher_steps`` do not apply (there
is no label and no head to train).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import torch
from torch import nn

from nas.files import atomic_dir
from nas.models.sources import LoadedModel
from nas.spaces.space import SearchSpace
from nas.tasks.batches import encode, tokenizer_for
from nas.tasks.definitions import POS_FILES, distill_texts, load_definitions
from nas.tasks.lm_eval import lm_forward, perplexity
from nas.tasks.metric import definition_accuracy
from nas.tasks.wordnet import file_fingerprint, is_arch_example
from trainers.config import SearchConfig
from trainers.recipes import BaseRecipe, Progress, cap
from trainers.search import make_task
from trainers.teacher import backbone, cache_root, teacher_key

SCORES_SCHEMA = 1


class DefinitionsRecipe(BaseRecipe):
    """See the module docstring; the contract is :class:`trainers.recipes.BaseRecipe`'s."""

    DATA_FILES = tuple(f"data.{p}" for p in POS_FILES)

    def __init__(self, config: SearchConfig, space: SearchSpace) -> None:
        super().__init__(config, space)
        self.data = data = load_definitions()
        self.train_defs = data.train[: cap(len(data.train), config.max_train)]
        self.n_eval = cap(len(data.test), config.max_eval)
        self.summary = (f"{len(self.train_defs)} train glosses / {self.n_eval} test items and glosses "
                        f"(4 parts of speech) from {data.source}")

    def prepare(self, loaded: LoadedModel, progress: Progress, device: str = "cpu") -> None:
        c, space = self.config, self.space
        tok = tokenizer_for(loaded, c.max_length)
        texts = distill_texts(self.train_defs, self.data.pools, c.distill_text)
        self.train = encode(tok, texts, [0] * len(texts))
        self.is_arch = torch.tensor([is_arch_example(d.key, c.arch_fraction) for d in self.train_defs])
        name, self.choice_metric = definition_accuracy(space, n=self.n_eval, loaded=loaded)
        self.ppl_ids, self.ppl_mask = tok([d.gloss for d in self.data.test[: self.n_eval]])
        self.teacher = backbone(loaded).to(device)  # scored here once, then the distillation target
        key = teacher_key({"model": space.model, "space": space.hash, "schema": SCORES_SCHEMA,
                           "data": [file_fingerprint(f"{self.data.source}/data.{p}") for p in POS_FILES],
                           "metric": name, "n_eval": self.n_eval, "max_length": c.max_length})
        path = cache_root() / "teacher" / key / "scores.json"
        if path.is_file():
            scores = json.loads(path.read_text())
            progress(f"teacher: reusing scores {path}")
        else:
            quality, metrics = self.evaluate(self.teacher, None)
            scores = {"quality": quality, "metrics": metrics}
            with atomic_dir(path.parent) as tmp:
                (tmp / path.name).write_text(json.dumps({**scores, "metric": name}, indent=1))
            progress(f"teacher: {name} {100 * quality:.1f}, perplexity {metrics['perplexity']:.2f}")
        self.teacher_quality = float(scores["quality"])
        self.teacher_metrics = {k: float(v) for k, v in scores["metrics"].items()}

    def task(self) -> nn.Module:
        return make_task(self.config, self.space.dims.hidden, 0, teacher=self.teacher)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, task: nn.Module | None) -> tuple[float, dict[str, float]]:
        was = model.training
        model.eval()
        forward: Callable = lm_forward(model)
        try:
            quality = self.choice_metric(forward) / 100.0
            ppl = perplexity(forward, self.ppl_ids, self.ppl_mask)
        finally:
            model.train(was)
        return quality, {"perplexity": ppl}

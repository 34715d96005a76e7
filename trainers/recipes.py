"""Task recipes: what a trial's task brings to :func:`trainers.search_once`.

The contract of a recipe (:class:`BaseRecipe`), in the order the pipeline calls it:

1. ``__init__(config, space)`` checks that the task fits the space
   (:class:`~nas.errors.ConfigError`) and reads the task's data
   (:class:`~nas.errors.DataError` when it is missing); no model is loaded
   yet; ``summary`` describes the examples for the setup line;
2. ``prepare(loaded, progress, device)`` tokenizes and builds the teacher (its forward passes on ``device``): sets
   ``train`` (the search's and fine-tuning's examples), ``is_arch`` (per train
   example, whether it belongs to the architecture part of the search),
   ``teacher_quality`` and ``teacher_metrics``;
3. ``task()`` the loss module (:mod:`trainers.tasks`), trained along with the
   weights when it has parameters;
4. ``evaluate(model, task)`` → ``(quality, metrics)``: the trial's quality on
   the test examples and further named floats (e.g. ``perplexity``);
5. ``attach(subnet, task)`` keeps with the subnet what export needs to
   recompute the quality (the classification head).

:func:`make_recipe` resolves ``config.task``: ``wordnet-nouns`` and
``wordnet-embed`` → :class:`NounsRecipe`, ``wordnet-definitions`` →
:class:`trainers.definitions.DefinitionsRecipe`; :func:`check_task` is its
compute-free check (the plug-in's ``check`` runs it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from nas.errors import ConfigError
from nas.models.sources import LoadedModel
from nas.spaces.space import SearchSpace
from nas.supernet.derive import Subnet
from nas.supernet.head import head_from_linear
from nas.tasks.batches import Encoded, encode, tokenizer_for
from nas.tasks.wordnet import CLASSES, file_fingerprint, find_data_file, is_arch_example, load_wordnet_nouns
from trainers.config import SearchConfig
from trainers.finetune import evaluate
from trainers.search import make_task
from trainers.teacher import cache_root, load_or_train_teacher

Progress = Callable[[str], None]
DECODER_TASKS = ("wordnet-definitions",)


def cap(n: int, limit: int | None) -> int:
    return n if limit is None else min(n, limit)


def check_task(config: SearchConfig, space: SearchSpace) -> None:
    """Raise :class:`ConfigError` when ``config.task`` cannot run on ``space`` (no compute)."""
    if config.task in DECODER_TASKS and space.dims.family != "llama":
        raise ConfigError(f"task: {config.task} distils a decoder's next-token logits; space {space.name!r} "
                          f"is a {space.dims.family} encoder (use wordnet-nouns or wordnet-embed)")


class BaseRecipe:
    """See the module docstring for the contract.

    ``DATA_FIELDS`` and ``DATA_FILES`` name what ``__init__`` and ``prepare`` read (the config's fields, the
    WordNet files): with the space and the caches' locations they are :meth:`data_key`, under which a trial
    process keeps a prepared recipe for its next trial (:mod:`trainers.warm`).
    """

    DATA_FIELDS: tuple[str, ...] = ("task", "max_train", "max_eval", "max_length", "arch_fraction")
    DATA_FILES: tuple[str, ...] = ()
    summary: str = ""
    prepared: bool = False  # set once ``prepare`` has run (by the pipeline)
    train: Encoded
    is_arch: Tensor
    teacher_quality: float = float("nan")
    teacher_metrics: dict[str, float]

    def __init__(self, config: SearchConfig, space: SearchSpace) -> None:
        check_task(config, space)
        self.config, self.space = config, space
        self.teacher_metrics = {}

    @classmethod
    def data_key(cls, config: SearchConfig, space: SearchSpace, device: str) -> dict[str, Any]:
        """Everything a prepared recipe is a function of: its config fields, the space, the device, and the identity
        (path, size, modification time) of each data file.

        Raises:
            DataError: a data file is missing (with the install hint).
        """
        files = {}
        for name in cls.DATA_FILES:
            st = (path := find_data_file(name)).stat()
            files[name] = [str(path), st.st_size, st.st_mtime_ns]
        return {"recipe": cls.__name__, "space": space.hash, "model": space.model, "device": device, "files": files,
                "config": {f: getattr(config, f) for f in cls.DATA_FIELDS}, "cache": str(cache_root())}

    def prepare(self, loaded: LoadedModel, progress: Progress, device: str = "cpu") -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def task(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def evaluate(self, model: nn.Module, task: nn.Module) -> tuple[float, dict[str, float]]:  # pragma: no cover
        raise NotImplementedError

    def attach(self, subnet: Subnet, task: nn.Module) -> None:
        """Nothing to keep by default."""


class NounsRecipe(BaseRecipe):
    """``wordnet-nouns`` (26-way lexicographer-file classification, cached teacher head) and
    ``wordnet-embed`` (cosine fidelity of pooled embeddings) on WordNet noun glosses."""

    DATA_FIELDS = (*BaseRecipe.DATA_FIELDS, "teacher_max_train", "teacher_steps")
    DATA_FILES = ("data.noun",)

    def __init__(self, config: SearchConfig, space: SearchSpace) -> None:
        super().__init__(config, space)
        self.splits = splits = load_wordnet_nouns()
        self.n_teacher = cap(len(splits.train), config.teacher_max_train)
        self.n_train = min(cap(len(splits.train), config.max_train), self.n_teacher)
        self.train_ex = splits.train[: self.n_teacher]
        self.test_ex = splits.test[: cap(len(splits.test), config.max_eval)]
        self.embed = config.task == "wordnet-embed"
        self.summary = f"{self.n_train} train / {len(self.test_ex)} test examples from {splits.source}"

    def prepare(self, loaded: LoadedModel, progress: Progress, device: str = "cpu") -> None:
        c, space = self.config, self.space
        tok = tokenizer_for(loaded, c.max_length)
        train_all = encode(tok, [e.text for e in self.train_ex], [e.label for e in self.train_ex])
        self.test = test = encode(tok, [e.text for e in self.test_ex], [e.label for e in self.test_ex])
        self.teacher = teacher = load_or_train_teacher(
            loaded=loaded, train=train_all, evals=test, num_classes=len(CLASSES), steps=c.teacher_steps,
            seed=0,  # one teacher serves every trial seed (its head fit is deterministic)
            inputs={"model": space.model, "space": space.hash, "data": file_fingerprint(self.splits.source),
                    "n_train": self.n_teacher, "n_eval": len(test), "max_length": c.max_length},
            progress=progress, device=device,
        )
        train_all.teacher = teacher.train_emb if self.embed else teacher.logits(teacher.train_emb)
        test.teacher = teacher.eval_emb if self.embed else teacher.logits(teacher.eval_emb)
        self.teacher_quality = 1.0 if self.embed else teacher.accuracy
        self.train = train_all.subset(torch.arange(self.n_train))
        self.is_arch = torch.tensor([is_arch_example(e.offset, c.arch_fraction) for e in self.train_ex[: self.n_train]])

    def task(self) -> nn.Module:
        task = make_task(self.config, self.space.dims.hidden, len(CLASSES))
        if not self.embed:
            with torch.no_grad():
                task.head.weight.copy_(self.teacher.head_weight)
                task.head.bias.copy_(self.teacher.head_bias)
        return task

    def evaluate(self, model: nn.Module, task: nn.Module) -> tuple[float, dict[str, float]]:
        return evaluate(model, task, self.test), {}

    def attach(self, subnet: Subnet, task: nn.Module) -> None:
        if not self.embed:  # kept with the subnet so the export can recompute the test accuracy
            subnet.head = head_from_linear(task.head, task=self.config.task, labels=CLASSES,
                                           max_length=self.config.max_length, n_eval=len(self.test))


def recipe_class(config: SearchConfig) -> type[BaseRecipe]:
    """The recipe class of ``config.task`` (no data read)."""
    if config.task in DECODER_TASKS:
        from trainers.definitions import DefinitionsRecipe

        return DefinitionsRecipe
    return NounsRecipe


def make_recipe(config: SearchConfig, space: SearchSpace) -> BaseRecipe:
    """The recipe of ``config.task`` (see the module docstring).

    Raises:
        ConfigError: the task does not fit the space.
        DataError: its data is not installed.
    """
    return recipe_class(config)(config, space)

"""What every method shares: space, table, WordNet splits, the cached teacher and the pretrained supernet.

The setup mirrors :func:`trainers.search_once`'s (same caps, same tokenizer, same
teacher cache key), so the DNAS trials and the methods run here train and
distil on the same examples against the same teacher.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nas.latency.predictor import Predictor
from nas.latency.table import load_table
from nas.models.sources import load_model
from nas.spaces.loader import load_space
from nas.supernet.derive import Subnet
from nas.supernet.supernet import Supernet
from nas.tasks.batches import Encoded, encode, tokenizer_for
from trainers.config import SearchConfig
from nas.tasks.wordnet import CLASSES, file_fingerprint, load_wordnet_nouns
from trainers.finetune import evaluate, finetune
from trainers.pipeline import calibrated_derive, int4_calibration
from trainers.search import make_task
from trainers.teacher import load_or_train_teacher


@dataclass
class Trained:
    """A fine-tuned subnet, its task head, and what it cost."""

    arch: dict[str, int]
    subnet: Subnet
    task: torch.nn.Module
    seconds: float


def first_k(space: Any, k: int, bits: int = 32) -> dict[str, int]:
    """The full-width architecture of ``space`` keeping layers ``0..k-1`` at ``bits`` (32 = fp32)."""
    arch = dict(space.full())
    for label in arch:
        if label.endswith(".keep"):
            arch[label] = 1 if int(label[len("layer"):].split(".")[0]) < k else 0
        elif label.endswith(".bits") and bits in space.options(label):
            arch[label] = bits
    return space.validate(arch)


def resolve_latency_cap(cap: str | float, table: str, space_name: str,
                        dnas_sample: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """``(cap in ms, DNAS's sampled fields with T capped)`` from the table's predictions; ``none``: ``(None, sample)``.

    ``teacher_int8``: every layer kept at full width, every weight at int8; a number: that fraction of
    the full model. Reads only the space and the table, so a bad cap fails before any compute.

    Raises:
        ConfigError: the cap is below the space's smallest architecture, or DNAS's T range lies above it.
    """
    from experiments.studies.benchmark_minilm_cpu.config import capped_target_fraction
    from nas.errors import ConfigError

    if cap == "none":
        return None, dict(dnas_sample)
    space = load_space(space_name)
    predictor = Predictor(load_table(table), space)
    full_ms = float(predictor.latency_ms(space.full()))
    cap_ms = (float(cap) * full_ms if not isinstance(cap, str)
              else float(predictor.latency_ms(first_k(space, space.dims.num_layers, bits=8))))
    if cap_ms < predictor.min_latency_ms():
        raise ConfigError(f"latency_cap: {cap_ms:.4g} ms is below the space's smallest architecture")
    return cap_ms, capped_target_fraction(dnas_sample, cap_ms / full_ms)


class Bench:
    """Shared state of one benchmark run (built once, before any method's clock starts)."""

    def __init__(self, config: SearchConfig, *, val_examples: int, progress: Callable[[str], None] | None = None):
        say = progress or (lambda _s: None)
        self.config = config
        self.space = load_space(config.space)
        self.table = load_table(config.latency_table)
        self.predictor = Predictor(self.table, self.space)
        splits = load_wordnet_nouns()
        self.loaded = load_model(self.space.model)
        self.tokenize = tokenizer_for(self.loaded, config.max_length)
        cap = lambda n, c: n if c is None else min(n, c)  # noqa: E731
        n_teacher = cap(len(splits.train), config.teacher_max_train)
        n_train = min(cap(len(splits.train), config.max_train), n_teacher)
        train_ex = splits.train[:n_teacher]
        test_ex = splits.test[: cap(len(splits.test), config.max_eval)]
        val_ex = splits.val[: min(len(splits.val), val_examples)]
        train_all = encode(self.tokenize, [e.text for e in train_ex], [e.label for e in train_ex])
        self.test = encode(self.tokenize, [e.text for e in test_ex], [e.label for e in test_ex])
        self.val = encode(self.tokenize, [e.text for e in val_ex], [e.label for e in val_ex])
        self._train_all = train_all
        self._teacher_inputs = {"model": self.space.model, "space": self.space.hash,
                                "data": file_fingerprint(splits.source), "n_train": n_teacher,
                                "n_eval": len(self.test), "max_length": config.max_length}
        self.teacher = self.cached_teacher(config.seed, progress=say)
        train_all.teacher = self.teacher.logits(self.teacher.train_emb)
        self.test.teacher = self.teacher.logits(self.teacher.eval_emb)
        self.train: Encoded = train_all.subset(torch.arange(n_train))
        self.net = Supernet.build(self.space, loaded=self.loaded)
        self.task = make_task(config, self.space.dims.hidden, len(CLASSES))
        with torch.no_grad():
            self.task.head.weight.copy_(self.teacher.head_weight)
            self.task.head.bias.copy_(self.teacher.head_bias)
        self.data_source = splits.source
        say(f"bench: {self.space.name}, table {self.table.id}, {len(self.train)} train / {len(self.val)} val / "
            f"{len(self.test)} test examples, teacher accuracy {self.teacher.accuracy:.4f}")

    def cached_teacher(self, seed: int, *, progress: Callable[[str], None] | None = None) -> Any:
        """The teacher ``search_once`` would load for ``seed`` (the seed is part of its cache key), built if missing.

        Building the caches for every seed a DNAS trial may sample before the clocks start
        keeps the shared teacher out of any method's budget.
        """
        return load_or_train_teacher(
            loaded=self.loaded, train=self._train_all, evals=self.test, num_classes=len(CLASSES),
            steps=self.config.teacher_steps, seed=seed, inputs=self._teacher_inputs, progress=progress,
        )

    def predicted_ms(self, arch: Mapping[str, int]) -> float:
        return float(self.predictor.latency_ms(arch))

    def latency_values(self, arch: Mapping[str, int]) -> list[float]:
        """The latencies a multi-objective black box minimises: the table's one prediction."""
        return [self.predicted_ms(arch)]

    def save(self, trained: Trained, folder: Path) -> dict[str, Any]:
        """Save a trained point (:func:`save_trained`); returns its candidate's file fields."""
        return save_trained(trained, folder, max_length=self.config.max_length, n_eval=len(self.test))

    def first_k(self, k: int, bits: int = 32) -> dict[str, int]:
        """The full-width architecture keeping layers ``0..k-1`` at ``bits`` (32 = fp32): :func:`first_k`."""
        return first_k(self.space, k, bits)

    def train_arch(self, arch: Mapping[str, int], *, seed: int | None = None) -> Trained:
        """Derive ``arch`` from the pretrained supernet and distil it with the shared fine-tuning budget."""
        t0 = time.perf_counter()
        c = self.config
        calibration = int4_calibration(c, self.train)
        subnet = calibrated_derive(self.net, self.space.validate(dict(arch)), calibration)
        task = copy.deepcopy(self.task)
        if c.finetune_steps > 0:
            finetune(subnet, task, self.train, steps=c.finetune_steps, lr=c.finetune_lr, batch_size=c.batch_size,
                     seed=c.seed if seed is None else seed, schedule=c.finetune_schedule,
                     autocast=c.autocast,  # the trials' training precision: equal cost per step
                     calibration=calibration)
        return Trained(dict(arch), subnet, task, time.perf_counter() - t0)

    def val_accuracy(self, trained: Trained) -> float:
        return evaluate(trained.subnet.model, trained.task, self.val)

    def test_accuracy(self, trained: Trained) -> float:
        return evaluate(trained.subnet.model, trained.task, self.test)


def save_trained(trained: Trained, folder: Path, *, max_length: int, n_eval: int) -> dict[str, Any]:
    """Save the subnet with its fine-tuned head (``Subnet.save``, as a search trial does)."""
    from nas.supernet.head import HEAD_FILE, head_from_linear
    from nas.tasks.wordnet import CLASSES

    trained.subnet.head = head_from_linear(trained.task.head, task="wordnet-nouns", labels=CLASSES,
                                           max_length=max_length, n_eval=n_eval)
    trained.subnet.save(folder)
    return {"subnet_dir": str(folder), "head": str(folder / HEAD_FILE)}


def load_head(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight, bias)`` of a saved :class:`nas.supernet.head.TaskHead`."""
    from nas.supernet.head import load_head as load_task_head

    head = load_task_head(path)
    return head.weight, head.bias

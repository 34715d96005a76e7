"""What every method of the decoder benchmark shares: space, the two tables, WordNet definitions, the supernet.

The setup mirrors a ``wordnet-definitions`` DNAS trial's (:class:`trainers.definitions.DefinitionsRecipe`:
same gloss slice, same tokenizer, same frozen full model as the distillation teacher), so the
black-box trials and the pruned baselines distil on the same text against the same teacher with the
same budget as the DNAS trials.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from experiments.studies.benchmark_minilm_cpu.context import Trained
from experiments.studies.benchmark_smollm2_cpu.config import PHASES, DecoderBenchConfig
from nas.latency.predictor import Predictor
from nas.latency.table import load_table
from nas.models.sources import load_model
from nas.spaces.loader import load_space
from nas.supernet.supernet import Supernet
from nas.tasks.batches import tokenizer_for
from nas.tasks.lm_eval import choice_accuracy, encode_choices, lm_forward
from nas.tasks.metric import CHOICE_MAX_TOKENS
from trainers.config import SearchConfig
from trainers.definitions import DefinitionsRecipe
from trainers.finetune import finetune
from trainers.pipeline import calibrated_derive, int4_calibration

TASK = "wordnet-definitions"
PPL_TOKENS = 64  # the perplexity's glosses are cut at 64 tokens (as the task's own perplexity)


def search_config(cfg: DecoderBenchConfig) -> SearchConfig:
    """The ``trainers.SearchConfig`` every method shares (the DNAS trials add their sampled fields)."""
    return SearchConfig(space=cfg.space, task=TASK, latency_tables=dict(cfg.latency_tables), **dict(cfg.trainer))


class DecoderBench:
    """Shared state of one decoder benchmark run (built once, before any method's clock starts).

    The duck type :mod:`experiments.studies.benchmark_minilm_cpu.methods` drives (``space``, ``config``,
    ``train_arch``, ``val_accuracy``, ``test_accuracy``, ``predicted_ms``, ``latency_values``, ``save``).
    """

    def __init__(self, cfg: DecoderBenchConfig, *, progress: Callable[[str], None] | None = None) -> None:
        say = progress or (lambda _s: None)
        self.bench_config = cfg
        self.config = search_config(cfg)
        self.space = load_space(cfg.space)
        self.tables = {b: load_table(cfg.latency_tables[b]) for b in PHASES}
        self.predictors = {b: Predictor(t, self.space) for b, t in self.tables.items()}
        self.loaded = load_model(self.space.model)
        self.recipe = DefinitionsRecipe(self.config, self.space)
        self.recipe.prepare(self.loaded, say)
        self.train = self.recipe.train
        data = self.recipe.data
        tok = tokenizer_for(self.loaded, CHOICE_MAX_TOKENS)
        self.val = encode_choices(tok, data.choice_items("val", cfg.val_items))
        self.test_items = data.choice_items("test", cfg.test_items)
        self.test = encode_choices(tok, self.test_items)
        self.ppl_ids, self.ppl_mask = tokenizer_for(self.loaded, PPL_TOKENS)([d.gloss for d in data.test[: cfg.ppl_glosses]])
        self.data_source = data.source
        self.net = Supernet.build(self.space, loaded=self.loaded)
        say(f"bench: {self.space.name}, tables {', '.join(t.id for t in self.tables.values())}; "
            f"{len(self.train)} train glosses, {len(self.val)} val / {len(self.test)} test items, "
            f"{len(self.ppl_ids)} perplexity glosses")

    def predicted(self, arch: Mapping[str, int]) -> dict[str, float]:
        """``{ttft_ms, tpot_ms}``: both tables' predictions for ``arch``."""
        return {b: float(p.latency_ms(arch)) for b, p in self.predictors.items()}

    def predicted_ms(self, arch: Mapping[str, int]) -> float:
        """The decode table's prediction (TPOT: the latency a chat user feels per token)."""
        return self.predicted(arch)[PHASES[1]]

    def latency_values(self, arch: Mapping[str, int]) -> list[float]:
        """The latencies a multi-objective black box minimises: TTFT and TPOT predicted."""
        p = self.predicted(arch)
        return [p[b] for b in PHASES]

    def train_arch(self, arch: Mapping[str, int], *, seed: int | None = None) -> Trained:
        """Derive ``arch`` from the pretrained supernet and distil it with the shared budget (the DNAS trials')."""
        t0 = time.perf_counter()
        c = self.config
        calibration = int4_calibration(c, self.train)
        subnet = calibrated_derive(self.net, self.space.validate(dict(arch)), calibration)
        task = self.recipe.task()
        if c.finetune_steps > 0:
            finetune(subnet, task, self.train, steps=c.finetune_steps, lr=c.finetune_lr, batch_size=c.batch_size,
                     seed=c.seed if seed is None else seed, schedule=c.finetune_schedule,
                     autocast=c.autocast,  # the trials' training precision: equal cost per step
                     calibration=calibration)
        return Trained(dict(arch), subnet, task, time.perf_counter() - t0)

    def val_accuracy(self, trained: Trained) -> float:
        model = trained.subnet.model
        model.eval()
        return choice_accuracy(lm_forward(model), self.val)

    def test_accuracy(self, trained: Trained) -> None:
        """None: a decoder point is scored on the held-out items only as its deployed ONNX graph (``measure``)."""
        return None

    def save(self, trained: Trained, folder: Path) -> dict[str, Any]:
        """Save the subnet (``Subnet.save``, as a trial does); returns its candidate's fields."""
        trained.subnet.save(folder)
        return {"subnet_dir": str(folder), "head": None, "predicted": self.predicted(trained.arch)}

"""The decoder benchmark's configuration: ``config.yaml`` parsed once into a frozen, validated object."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.studies.benchmark_minilm_cpu.config import check_max_trials, config_from_dict
from nas.errors import ConfigError
from nas.latency.budgets import TPOT, TTFT

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "config.yaml"
PHASES = (TTFT, TPOT)
DEPLOYS = ("fp32", "int8", "int8-dynamic", "int4")


@dataclass(frozen=True)
class Measure:
    """How every point's phases are timed, all points interleaved (:func:`nas.latency.protocol.measure`).

    ``prompt_tokens`` is the prefill timed as TTFT, ``context`` the cached tokens before the one decode
    step timed as TPOT (the shapes of the ``ttft_ms`` and ``tpot_ms`` tables). ``references``: each
    table's calibration models measured in the same rounds (:mod:`nas.latency.reference`).
    """

    prompt_tokens: int = 128
    context: int = 256
    warmup: int = 2
    rounds: int = 5
    repeats: int = 3
    references: int = 2


@dataclass(frozen=True)
class DecoderBenchConfig:
    """Everything one decoder benchmark run needs (see ``config.yaml`` for the meaning of each key).

    Attributes:
        space: the search space (``smollm2-135m``; ``tiny-llama`` in quick mode).
        latency_tables: ``{ttft_ms: prefill table, tpot_ms: decode table}`` every method searches with.
        budget_minutes: wall clock per search method.
        max_trials: black-box trials per method at most, even with budget left (None: the budget alone;
            quick runs of the tiny model, whose trials take milliseconds).
        trainer: shared ``trainers.SearchConfig`` fields (data caps, fine-tuning budget, DNAS steps).
        dnas: ``sample`` (sampled SearchConfig fields), ``sampler``, ``concurrency``, ``cpus_per_trial``.
        nsga2: ``population_size``.
        val_items: validation multiple-choice items the black-box methods rank trials on.
        test_items: held-out multiple-choice items every point is scored on (all four parts of speech).
        ppl_glosses: held-out glosses of the perplexity.
        calibration_items: training items (prompt + word) of the block importance.
        depth_drops: layer counts the depth-pruned baselines drop (least important first).
        width_fractions: the uniform width baselines' fraction of heads and FFN neurons in every layer.
        deploys: precisions every baseline is deployed at (``fp32``, ``int8``, ``int8-dynamic``: the full
            model only, ``int4``; :mod:`~experiments.studies.benchmark_smollm2_cpu.baselines`).
        threads: intra-op thread counts every point is measured at (1: the tables').
        measure: the measurement protocol.
        prompt, new_tokens: the fixed chat prompt every point answers (greedy) in the JSON.
        region: ``{accuracy_drop_points}``: the hypervolume region beating the best quantize-only full
            model: accuracy above the full model's minus that drop, latency below that model's.
        reference: the whole-range hypervolume reference ``{accuracy, latency_fraction}`` (of the full fp32).
        targets: the issue's goals.
    """

    space: str
    latency_tables: Mapping[str, str]
    budget_minutes: float
    seed: int = 0
    max_trials: int | None = None
    trainer: Mapping[str, Any] = field(default_factory=dict)
    dnas: Mapping[str, Any] = field(default_factory=dict)
    nsga2: Mapping[str, Any] = field(default_factory=dict)
    val_items: int = 200
    test_items: int = 1000
    ppl_glosses: int = 500
    calibration_items: int = 64
    depth_drops: tuple[int, ...] = (4, 8)
    width_fractions: tuple[float, ...] = (0.75, 0.5)
    deploys: tuple[str, ...] = DEPLOYS
    threads: tuple[int, ...] = (1, 2)
    measure: Measure = Measure()
    prompt: str = "What is a harbour?"
    new_tokens: int = 24
    region: Mapping[str, float] = field(default_factory=lambda: {"accuracy_drop_points": 1.0})
    reference: Mapping[str, float] = field(default_factory=lambda: {"accuracy": 0.25, "latency_fraction": 1.0})
    targets: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [b for b in PHASES if b not in self.latency_tables]
        if missing or set(self.latency_tables) - set(PHASES):
            raise ConfigError(f"latency_tables: expected exactly {', '.join(PHASES)}, got "
                              f"{', '.join(self.latency_tables) or 'none'}")
        check_max_trials(self.max_trials)
        if not self.budget_minutes > 0:
            raise ConfigError(f"budget_minutes: must be > 0, got {self.budget_minutes}")
        for name in ("val_items", "test_items", "ppl_glosses", "calibration_items", "new_tokens"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}: must be ≥ 1, got {getattr(self, name)}")
        if any(int(k) < 1 for k in self.depth_drops):
            raise ConfigError(f"depth_drops: expected positive layer counts, got {list(self.depth_drops)}")
        if any(not 0 < float(f) < 1 for f in self.width_fractions):
            raise ConfigError(f"width_fractions: expected fractions in (0, 1), got {list(self.width_fractions)}")
        bad = [d for d in self.deploys if d not in DEPLOYS]
        if bad or "fp32" not in self.deploys:
            raise ConfigError(f"deploys: a subset of {', '.join(DEPLOYS)} including fp32, got {list(self.deploys)}")
        if not self.threads or 1 not in self.threads or any(int(t) < 1 for t in self.threads):
            raise ConfigError(f"threads: positive thread counts including 1, got {list(self.threads)}")
        drop = self.region.get("accuracy_drop_points")
        if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not drop >= 0:
            raise ConfigError(f"region.accuracy_drop_points: a number of points ≥ 0 required, got {drop!r}")
        for k in ("accuracy", "latency_fraction"):
            if k not in self.reference:
                raise ConfigError(f"reference.{k}: required")

    @property
    def budget_s(self) -> float:
        return 60.0 * self.budget_minutes

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("depth_drops", "width_fractions", "deploys", "threads"):
            d[k] = list(d[k])
        d["latency_tables"] = dict(self.latency_tables)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DecoderBenchConfig":
        """Build from a dict, naming the first unknown key."""
        return config_from_dict(cls, d, measure=Measure, tuples={"depth_drops": int, "width_fractions": float,
                                                                 "deploys": str, "threads": int})

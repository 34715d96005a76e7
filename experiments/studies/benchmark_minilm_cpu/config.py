"""The benchmark's configuration: ``config.yaml`` parsed once into a frozen, validated object."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.errors import ConfigError

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "config.yaml"
RECALIBRATE = ("if_drifted", "always", "never")
LATENCY_CAPS = ("none", "teacher_int8")
CLOCKS_T1 = ("table", "wall", "thread-cpu")  # table: the latency table's own clock (prediction and measurement agree)


@dataclass(frozen=True)
class Measure:
    """How every point's latency is measured (:mod:`nas.latency.protocol`, interleaved over all points)."""

    batch: int = 1
    seq: int = 128
    warmup: int = 3
    rounds: int = 6
    repeats: int = 4
    remeasure: int = 1
    clock_t1: str = "table"


def check_max_trials(value: Any) -> None:
    """``max_trials``: None (the budget alone) or a positive trial count (both benchmarks' configs)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"max_trials: must be ≥ 1 or null, got {value!r}")


@dataclass(frozen=True)
class BenchConfig:
    """Everything one benchmark run needs (see ``config.yaml`` for the meaning of each key).

    Attributes:
        space, latency_table: the search space and the table every method searches with
            (``latency_table=None``: build a small one into the output folder, quick mode).
        budget_minutes: wall clock per search method.
        max_trials: black-box trials per method at most, even with budget left (None: the budget alone;
            quick runs of the tiny model, whose trials take milliseconds).
        trainer: shared ``trainers.SearchConfig`` fields (data caps, teacher, fine-tuning budget, DNAS steps).
        dnas: ``sample`` (Optuna-sampled SearchConfig fields), ``sampler``, ``concurrency``, ``cpus_per_trial``,
            ``trainer`` (overrides of ``trainer`` for its trials, e.g. ``autocast: none`` to train in fp32 as the
            per-trial design did when issue 31 was filed).
        dnas_shared: the ``dnas_shared`` method (ours with one weight-shared supernet per study,
            :mod:`nas.search.shared`): ``supernet`` (the experiment's ``supernet:`` section: sandwich
            training before the trials, inside the method's clock), ``trainer`` (overrides of ``trainer``
            for its trials, e.g. ``freeze_weights``), ``sample`` (its sampled fields; default ``dnas.sample``).
        nsga2: ``population_size``.
        val_examples: validation examples the black-box methods rank trials on.
        students_k: layer counts of the uniform students.
        threads: intra-op thread counts every point is measured at.
        measure: the measurement protocol.
        reference: hypervolume reference ``{accuracy, latency_fraction}`` (the whole range).
        region: the second hypervolume's reference, the region that beats what a user gets for free:
            ``{accuracy_drop_points}`` below the frozen teacher, and the teacher's ORT int8 latency (1 thread).
        recalibrate: ``if_drifted`` (re-measure the table's calibration models first and, if the machine
            drifted by more than ±5 %, search with the recalibrated table), ``always`` or ``never``.
        latency_cap: ``teacher_int8`` confines every search method to architectures the table predicts
            no slower than the full model with every weight at int8 (what onnxruntime gives a user for
            free): random search and NSGA-II reject slower proposals before training them (counted, not
            trained), DNAS samples its target T at most that latency. A number in (0, 1]: that fraction of
            the full model's table latency. ``none``: the whole space.
        targets: the issue's goals; ``max_accuracy_drop_points`` is measured from the ``full-finetuned``
            baseline (the uncompressed model fine-tuned with the students' recipe), the frozen teacher beside it.
    """

    space: str
    latency_table: str | None
    budget_minutes: float
    seed: int = 0
    max_trials: int | None = None
    trainer: Mapping[str, Any] = field(default_factory=dict)
    dnas: Mapping[str, Any] = field(default_factory=dict)
    dnas_shared: Mapping[str, Any] = field(default_factory=dict)
    nsga2: Mapping[str, Any] = field(default_factory=dict)
    val_examples: int = 400
    students_k: tuple[int, ...] = (4, 3, 2)
    threads: tuple[int, ...] = (1, 2)
    measure: Measure = Measure()
    reference: Mapping[str, float] = field(default_factory=lambda: {"accuracy": 0.0, "latency_fraction": 1.0})
    region: Mapping[str, float] = field(default_factory=lambda: {"accuracy_drop_points": 5.0})
    recalibrate: str = "if_drifted"
    latency_cap: str | float = "none"
    targets: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_max_trials(self.max_trials)
        if not self.budget_minutes > 0:
            raise ConfigError(f"budget_minutes: must be > 0, got {self.budget_minutes}")
        if not self.students_k or any(int(k) < 1 for k in self.students_k):
            raise ConfigError(f"students_k: expected positive layer counts, got {list(self.students_k)}")
        if not self.threads or any(int(t) < 1 for t in self.threads):
            raise ConfigError(f"threads: expected positive thread counts, got {list(self.threads)}")
        if 1 not in self.threads:
            raise ConfigError("threads: must include 1 (the latency table's thread count)")
        if self.measure.clock_t1 not in CLOCKS_T1:
            raise ConfigError(f"measure.clock_t1: one of {', '.join(CLOCKS_T1)}, got {self.measure.clock_t1!r}")
        for k in ("accuracy", "latency_fraction"):
            if k not in self.reference:
                raise ConfigError(f"reference.{k}: required")
        drop = self.region.get("accuracy_drop_points")
        if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not drop > 0:
            raise ConfigError(f"region.accuracy_drop_points: a positive number of points required, got "
                              f"{self.region.get('accuracy_drop_points')!r}")
        for arm, allowed in (("dnas", ("concurrency", "cpus_per_trial", "sample", "sampler", "trainer")),
                             ("dnas_shared", ("sample", "supernet", "trainer"))):
            section = getattr(self, arm)
            if bad := sorted(set(section) - set(allowed)):
                raise ConfigError(f"{arm}.{bad[0]}: unknown key; allowed: {', '.join(allowed)}")
            if (over := section.get("trainer")) is not None and not isinstance(over, Mapping):
                raise ConfigError(f"{arm}.trainer: a mapping of trainer fields to override, got {over!r}")
        if self.dnas_shared:
            if not isinstance(self.dnas_shared.get("supernet"), Mapping) or not self.dnas_shared["supernet"]:
                raise ConfigError("dnas_shared.supernet: the shared supernet's training settings (steps, ...) required")
        if self.recalibrate not in RECALIBRATE:
            raise ConfigError(f"recalibrate: one of {', '.join(RECALIBRATE)}, got {self.recalibrate!r}")
        cap = self.latency_cap
        if not (cap in LATENCY_CAPS or (isinstance(cap, (int, float)) and not isinstance(cap, bool) and 0 < cap <= 1)):
            raise ConfigError(f"latency_cap: one of {', '.join(LATENCY_CAPS)} or a fraction in (0, 1] of the full "
                              f"model's table latency, got {cap!r}")

    @property
    def budget_s(self) -> float:
        return 60.0 * self.budget_minutes

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["students_k"], d["threads"] = list(self.students_k), list(self.threads)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BenchConfig":
        """Build from a dict, naming the first unknown key."""
        return config_from_dict(cls, d, measure=Measure, tuples={"students_k": int, "threads": int})


def config_from_dict(cls: Any, d: Mapping[str, Any], *, measure: Any, tuples: Mapping[str, Any]) -> Any:
    """``cls(**d)`` for a benchmark config dataclass: the first unknown key (top level or under ``measure``) named
    in a :class:`ConfigError`, ``measure`` built as the ``measure`` dataclass, each ``tuples`` key a tuple of its
    converter's values."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown benchmark key; allowed: {', '.join(sorted(names))}")
    d = dict(d)
    if "measure" in d:
        mnames = {f.name for f in dataclasses.fields(measure)}
        bad = sorted(set(d["measure"]) - mnames)
        if bad:
            raise ConfigError(f"measure.{bad[0]}: unknown key; allowed: {', '.join(sorted(mnames))}")
        d["measure"] = measure(**d["measure"])
    for k, conv in tuples.items():
        if k in d:
            d[k] = tuple(conv(v) for v in d[k])
    return cls(**d)


def load_config(path: str | Path = DEFAULT_CONFIG, *, quick: bool = False,
                budget_minutes: float | None = None, cls: Any = BenchConfig) -> Any:
    """Read ``config.yaml`` into ``cls`` (``cls.from_dict``); ``quick`` applies its ``quick:`` overrides (whole keys
    replaced).

    Raises:
        ConfigError: missing file or a bad key.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: no such benchmark config")
    raw = yaml.safe_load(p.read_text()) or {}
    overrides = raw.pop("quick", {}) or {}
    if quick:
        raw.update(overrides)
    if budget_minutes is not None:
        raw["budget_minutes"] = budget_minutes
    return cls.from_dict(raw)


def capped_target_fraction(sample: Mapping[str, Any], cap_fraction: float) -> dict[str, Any]:
    """DNAS's sampled fields with ``target_fraction``'s upper end lowered to ``cap_fraction``.

    A fixed ``target_fraction`` above the cap becomes the cap; a ``{float: [lo, hi]}`` range
    becomes ``[lo, min(hi, cap)]``; a missing one samples ``[lo=0.5·cap, cap]``.

    Raises:
        ConfigError: the range lies wholly above the cap.
    """
    out = dict(sample)
    spec = out.get("target_fraction")
    if spec is None:
        out["target_fraction"] = {"float": [0.5 * cap_fraction, cap_fraction]}
    elif isinstance(spec, Mapping) and "float" in spec:
        lo, hi = (float(v) for v in spec["float"])
        if lo >= cap_fraction:
            raise ConfigError(f"dnas.sample.target_fraction: range [{lo:g}, {hi:g}] lies above the latency cap "
                              f"({cap_fraction:.3f} of the full model)")
        out["target_fraction"] = {**spec, "float": [lo, min(hi, cap_fraction)]}
    elif isinstance(spec, (int, float)) and not isinstance(spec, bool):
        out["target_fraction"] = min(float(spec), cap_fraction)
    else:
        raise ConfigError("dnas.sample.target_fraction: with latency_cap, a number or {float: [lo, hi]}, got "
                          f"{spec!r}")
    return out


def clock_t1(cfg: BenchConfig, table_clock: str) -> str:
    """The clock of the 1-thread measurements: ``measure.clock_t1``, with ``table`` resolved to ``table_clock``."""
    return table_clock if cfg.measure.clock_t1 == "table" else cfg.measure.clock_t1

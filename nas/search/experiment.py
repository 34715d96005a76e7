"""Experiment files: what a search runs, parsed once into frozen, validated objects.

An experiment is a YAML file (``experiments/*.yaml``)::

    name: minilm_cpu                 # default study name
    space: minilm-l6                 # shipped space name or YAML path (relative to this file)
    task: wordnet-nouns
    latency_table: minilm-l6.onnxruntime-cpu.t1.b1.s128   # shipped table name or JSON path
    objectives: [quality, latency_ms, size_mb]           # any of these, in study-value order
    trial: trainers:dnas             # the trial plug-in, module:attribute (default shown; nas.search.plugin)
    trainer:                         # fixed fields of the plug-in's config (trainers.SearchConfig)
      steps: 200
      finetune_steps: 100
    sample:                          # what Optuna samples per trial, one config field each
      target_fraction: {float: [0.3, 0.8], stratified: true}   # swept evenly over trials (below)
      loss: {choices: [hinge, fbnet]}
      lambda0: {float: [0.1, 10.0], log: true}
      tau0: {float: [1.0, 5.0]}
      weight_lr: {float: [1.0e-5, 1.0e-4], log: true}
      seed: {int: [0, 10000]}
    run:                             # orchestration
      trials: 4                      # default --trials
      concurrency: 1                 # default --concurrency
      cpus_per_trial: 2
      max_failures: 2                # retries of a trial that raises or is killed
      gpus_per_trial: 0              # GPUs Ray reserves per trial (0.5: two trials share one)
      device: auto                   # auto | cpu | cuda | cuda:N (nas.search.devices)
    sampler: {name: tpe, seed: 0}    # tpe | random | nsga2

Trials train on ``device``, resolved once per trial (:func:`nas.search.devices.resolve_device`):
``auto`` is the GPU Ray gave the trial when ``gpus_per_trial > 0`` and torch has CUDA, else
the CPU; the device is recorded as the trial's ``device`` attribute. Latency is never
measured on it: the latency table prices every architecture for the target device.

A ``stratified: true`` range is not left to the sampler: trial ``n`` takes the
``n``-th point of a shifted van der Corput sequence over the range (log-spaced with
``log``), so any run of trials covers the range evenly (:meth:`Param.stratified_value`).
Use it for the latency target: a front needs targets across the whole range, and a
model-based sampler otherwise tends to collapse onto the targets it scored first.

Every mistake raises :class:`~nas.errors.ConfigError` ``"<file>: <field>: <reason>"``.
A latency table built for another space raises :class:`~nas.errors.LatencyTableError`
(:meth:`Experiment.check`), before anything is started.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.errors import ConfigError, NASError
from nas.files import read_utf8
from nas.search.attrs import DIRECTIONS, OBJECTIVES
from nas.search.devices import check_device
from nas.search.plugin import DEFAULT_PLUGIN, FIXED_BY_EXPERIMENT, TrialPlugin, load_plugin

OBJECTIVE_DIRECTIONS = dict(zip(OBJECTIVES, DIRECTIONS))
SAMPLERS = ("tpe", "random", "nsga2")
DEFAULT_TRIAL = DEFAULT_PLUGIN
_TOP = ("name", "space", "task", "latency_table", "objectives", "trial", "trainer", "sample", "run", "sampler",
        "description")


@dataclass(frozen=True)
class Param:
    """One sampled hyperparameter: ``float``/``int`` range (``log`` scale optional) or ``choices``."""

    name: str
    kind: str  # "float" | "int" | "choices"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    stratified: bool = False

    def distribution(self):
        """The Optuna distribution (imports optuna)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "float":
            return FloatDistribution(float(self.low), float(self.high), log=self.log)
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return CategoricalDistribution(list(self.choices))

    def example(self) -> Any:
        """A representative value (used to validate the config before anything runs)."""
        if self.kind == "choices":
            return self.choices[0]
        mid = math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
        return int(round(mid)) if self.kind == "int" else float(mid)

    def stratified_value(self, index: int, shift: float = 0.0) -> float | int:
        """The value trial ``index`` takes when the range is ``stratified``.

        ``u = frac(vdc(index) + shift)`` with ``vdc`` the base-2 van der Corput sequence
        (0, 1/2, 1/4, 3/4, 1/8, ...): the first ``2^k`` trials put one value in each of
        ``2^k`` equal strata of ``[0, 1)``. ``u`` maps to ``[low, high)`` linearly, or
        geometrically with ``log``; ``int`` ranges round (``high`` included).
        """
        if self.kind == "choices":
            raise ValueError(f"{self.name}: choices cannot be stratified")
        u = (van_der_corput(index) + shift) % 1.0
        if self.kind == "int":
            lo, hi = float(self.low), float(self.high) + 1.0
            v = lo * (hi / lo) ** u if self.log else lo + u * (hi - lo)
            return min(int(math.floor(v)), int(self.high))
        lo, hi = float(self.low), float(self.high)
        return lo * (hi / lo) ** u if self.log else lo + u * (hi - lo)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "choices":
            return {"choices": list(self.choices)}
        d: dict[str, Any] = {self.kind: [self.low, self.high]}
        if self.log:
            d["log"] = True
        if self.stratified:
            d["stratified"] = True
        return d


def van_der_corput(index: int) -> float:
    """The ``index``-th point of the base-2 van der Corput sequence: ``index``'s bits mirrored after the point."""
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    u, denom = 0.0, 1.0
    while index:
        index, bit = divmod(index, 2)
        denom *= 2.0
        u += bit / denom
    return u


def stratum_shift(seed: int | None) -> float:
    """The sequence's shift for a sampler seed: ``frac((seed + 1)·φ)`` (golden ratio), 0 without a seed."""
    return 0.0 if seed is None else ((seed + 1) * 0.6180339887498949) % 1.0


@dataclass(frozen=True)
class RunSettings:
    """Orchestration settings (``run:``)."""

    trials: int = 4
    concurrency: int = 1
    cpus_per_trial: float = 1.0
    max_failures: int = 2
    gpus_per_trial: float = 0.0
    device: str = "auto"


@dataclass(frozen=True)
class Experiment:
    """A parsed experiment file (see module docstring).

    Attributes:
        name: the default study name.
        trial: the trial plug-in, ``module:attribute`` (:mod:`nas.search.plugin`).
        trainer: fixed fields of the plug-in's config.
        sample: sampled fields, by name.
        source: the file it came from (for messages).
    """

    name: str
    space: str
    task: str
    latency_table: str
    objectives: tuple[str, ...] = OBJECTIVES
    trial: str = DEFAULT_TRIAL
    trainer: Mapping[str, Any] = field(default_factory=dict)
    sample: Mapping[str, Param] = field(default_factory=dict)
    run: RunSettings = RunSettings()
    sampler: str = "tpe"
    sampler_seed: int | None = 0
    description: str = ""
    source: str = "<experiment>"

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(OBJECTIVE_DIRECTIONS[o] for o in self.objectives)

    @property
    def plugin(self) -> TrialPlugin:
        """The trial plug-in object ``trial`` names (imported on first use).

        Raises:
            ConfigError: ``"<file>: trial: <reason>"``.
        """
        try:
            return load_plugin(self.trial)
        except ConfigError as e:
            raise ConfigError(f"{self.source}: {e}") from None

    def search_config(self, params: Mapping[str, Any]):
        """The plug-in's config of one trial with sampled ``params``.

        Raises:
            ConfigError: ``"<file>: <field>: <reason>"``.
        """
        d: dict[str, Any] = {"space": self.space, "task": self.task, "latency_table": self.latency_table}
        d.update(self.trainer)
        d.update(params)
        plugin = self.plugin
        try:
            return plugin.make_config(d)
        except ConfigError as e:
            field_name = str(e).split(":", 1)[0]
            where = "sample" if field_name in self.sample else "trainer"
            raise ConfigError(f"{self.source}: {where}.{e}") from None

    def check(self) -> None:
        """Load the space and the latency table, check they belong together, and that every sampled value can run.

        The plug-in checks (``plugin.check``) the trial config at both ends of every
        sampled range and at every choice, the other fields at their representative
        values: a range that reaches what the space and table cannot (e.g. a
        ``target_fraction`` below the smallest architecture) is refused here, before
        Ray starts, instead of failing trials.

        Raises:
            SpaceError, LatencyTableError, ConfigError: naming the file, the field and what is wrong.
        """
        from nas.latency import load_table
        from nas.spaces import load_space

        space = load_space(self.space)
        table = load_table(self.latency_table)
        try:
            table.check_space(space)
        except NASError as e:
            raise type(e)(f"{self.source}: latency_table: {e}") from None
        plugin = self.plugin
        examples = {k: p.example() for k, p in self.sample.items()}
        corners: list[tuple[str, Any]] = [("", None)]
        for k, p in self.sample.items():
            values = p.choices if p.kind == "choices" else (p.low, p.high)
            corners += [(k, v) for v in values]
        for k, v in corners:
            params = dict(examples) if not k else {**examples, k: v}
            try:
                plugin.check(self.search_config(params))
            except ConfigError as e:
                msg = str(e)
                if msg.startswith(f"{self.source}: "):
                    raise
                where = f"sample.{k}" if k else "trainer"
                raise ConfigError(f"{self.source}: {where}: {v!r} cannot run: {msg}" if k else
                                  f"{self.source}: {where}: {msg}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "space": self.space, "task": self.task, "latency_table": self.latency_table,
            "objectives": list(self.objectives), "trial": self.trial, "trainer": dict(self.trainer),
            "sample": {k: p.to_dict() for k, p in self.sample.items()},
            "run": dataclasses.asdict(self.run), "sampler": {"name": self.sampler, "seed": self.sampler_seed},
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, d: Any, *, source: str = "<experiment>", base: Path | None = None) -> "Experiment":
        """Parse and validate; relative space/table paths resolve against ``base``."""
        def bad(where: str, why: str) -> ConfigError:
            return ConfigError(f"{source}: {where}: {why}")

        if not isinstance(d, dict):
            raise bad("(top)", f"expected a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - set(_TOP))
        if unknown:
            raise bad(unknown[0], f"unknown field; allowed: {', '.join(_TOP)}")
        for req in ("name", "space", "latency_table"):
            if not isinstance(d.get(req), str) or not d[req]:
                raise bad(req, "required (a non-empty string)")
        name = d["name"]
        if not all(c.isalnum() or c in "-_." for c in name):
            raise bad("name", f"{name!r}: use letters, digits, '-', '_', '.' only")

        objectives = d.get("objectives", list(OBJECTIVES))
        if not isinstance(objectives, list) or not objectives:
            raise bad("objectives", "expected a non-empty list")
        for o in objectives:
            if o not in OBJECTIVE_DIRECTIONS:
                raise bad("objectives", f"unknown objective {o!r}; known: {', '.join(OBJECTIVES)}")
        if len(set(objectives)) != len(objectives):
            raise bad("objectives", "listed twice")

        trial = d.get("trial", DEFAULT_TRIAL)
        try:
            plugin = load_plugin(trial)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None

        fields = plugin.config_fields()
        trainer = d.get("trainer") or {}
        if not isinstance(trainer, dict):
            raise bad("trainer", "expected a mapping of the plug-in's config fields")
        for k in trainer:
            if k in FIXED_BY_EXPERIMENT:
                raise bad(f"trainer.{k}", "set at the top level of the experiment")
            if k not in fields:
                raise bad(f"trainer.{k}", f"unknown field of {trial}'s config")

        sample_raw = d.get("sample") or {}
        if not isinstance(sample_raw, dict):
            raise bad("sample", "expected a mapping of config fields to ranges")
        if not sample_raw:
            raise bad("sample", "give at least one sampled field (e.g. seed: {int: [0, 9]})")
        sample = {}
        for k, spec in sample_raw.items():
            if k in FIXED_BY_EXPERIMENT or k not in fields:
                raise bad(f"sample.{k}", f"not a field of {trial}'s config that can be sampled")
            if k in trainer:
                raise bad(f"sample.{k}", "also fixed under trainer")
            sample[k] = _param(k, spec, lambda why, k=k: bad(f"sample.{k}", why))

        run_raw = d.get("run") or {}
        if not isinstance(run_raw, dict):
            raise bad("run", "expected a mapping")
        run_fields = {f.name: f for f in dataclasses.fields(RunSettings)}
        for k, v in run_raw.items():
            if k not in run_fields:
                raise bad(f"run.{k}", f"unknown field; allowed: {', '.join(run_fields)}")
            if k == "device":
                try:
                    check_device(v)
                except ConfigError as e:
                    raise bad("run.device", str(e).split(": ", 1)[1]) from None
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                raise bad(f"run.{k}", f"expected a number, got {v!r}")
        run = RunSettings(**{k: (v if k == "device" else float(v) if k in ("cpus_per_trial", "gpus_per_trial")
                                 else int(v)) for k, v in run_raw.items()})
        for k in ("trials", "concurrency"):
            if getattr(run, k) < 1:
                raise bad(f"run.{k}", f"must be >= 1, got {getattr(run, k)}")
        if not run.cpus_per_trial > 0:
            raise bad("run.cpus_per_trial", f"must be > 0, got {run.cpus_per_trial}")
        if run.max_failures < 0:
            raise bad("run.max_failures", f"must be >= 0, got {run.max_failures}")
        gpus = run.gpus_per_trial
        if gpus < 0 or (gpus > 1 and not gpus.is_integer()):
            raise bad("run.gpus_per_trial", f"must be 0, a fraction below 1 or a whole number, got {gpus:g}")
        if run.device.startswith("cuda") and gpus == 0:
            raise bad("run.device", f"{run.device} needs run.gpus_per_trial > 0 (a trial without one has no GPU)")
        if run.device == "cpu" and gpus > 0:
            raise bad("run.gpus_per_trial", f"{gpus:g} GPU(s) reserved per trial, but run.device is cpu")

        sampler_raw = d.get("sampler") or {}
        if isinstance(sampler_raw, str):
            sampler_raw = {"name": sampler_raw}
        if not isinstance(sampler_raw, dict) or set(sampler_raw) - {"name", "seed"}:
            raise bad("sampler", "expected {name: tpe|random|nsga2, seed: N}")
        sampler = sampler_raw.get("name", "tpe")
        if sampler not in SAMPLERS:
            raise bad("sampler.name", f"unknown sampler {sampler!r}; known: {', '.join(SAMPLERS)}")
        seed = sampler_raw.get("seed", 0)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise bad("sampler.seed", f"expected an integer or null, got {seed!r}")

        exp = cls(
            name=name, space=_resolve(d["space"], base), task=str(d.get("task", "wordnet-nouns")),
            latency_table=_resolve(d["latency_table"], base), objectives=tuple(objectives), trial=trial,
            trainer=dict(trainer), sample=sample, run=run, sampler=sampler, sampler_seed=seed,
            description=str(d.get("description", "")), source=source,
        )
        examples = {k: p.example() for k, p in sample.items()}
        exp.search_config(examples)  # field-level errors now, not per trial
        for k, p in sample.items():
            for c in p.choices[1:]:
                exp.search_config({**examples, k: c})
        return exp

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Experiment":
        """Read an experiment file.

        Raises:
            ConfigError: missing file, bad YAML, or a bad field (``"<file>: <field>: <reason>"``).
        """
        import yaml

        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{path}: no such experiment file")
        text = read_utf8(path, ConfigError, "the experiment file")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            why = str(getattr(e, "problem", None) or e).splitlines()[0]  # a ReaderError has no .problem
            raise ConfigError(f"{path}: (yaml): malformed YAML{at}: {why}") from None
        return cls.from_dict(data, source=str(path), base=p.resolve().parent)


def _resolve(value: str, base: Path | None) -> str:
    """A path-looking value (``/`` or a .yaml/.json suffix) made absolute against ``base``."""
    if base is None or not ("/" in value or value.endswith((".yaml", ".yml", ".json"))):
        return value
    p = Path(value)
    return str(p if p.is_absolute() else (base / p).resolve())


def _param(name: str, spec: Any, bad) -> Param:
    if not isinstance(spec, dict):
        raise bad(f"expected {{float: [lo, hi]}}, {{int: [lo, hi]}} or {{choices: [...]}}, got {spec!r}")
    kinds = [k for k in ("float", "int", "choices") if k in spec]
    extra = set(spec) - {"float", "int", "choices", "log", "stratified"}
    if len(kinds) != 1 or extra:
        raise bad("give exactly one of float, int, choices (and optionally log, stratified)")
    kind = kinds[0]
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise bad(f"log: expected true or false, got {log!r}")
    stratified = spec.get("stratified", False)
    if not isinstance(stratified, bool):
        raise bad(f"stratified: expected true or false, got {stratified!r}")
    if kind == "choices":
        ch = spec["choices"]
        if not isinstance(ch, list) or not ch or log or stratified:
            raise bad("choices: expected a non-empty list (and no log or stratified)")
        return Param(name, "choices", choices=tuple(ch))
    rng = spec[kind]
    if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                            for v in rng)):
        raise bad(f"{kind}: expected [low, high], got {rng!r}")
    lo, hi = rng
    if kind == "int" and not all(float(v).is_integer() for v in rng):
        raise bad(f"int: bounds must be integers, got {rng!r}")
    if not lo < hi:
        raise bad(f"{kind}: low {lo} must be < high {hi}")
    if log and lo <= 0:
        raise bad(f"log: needs low > 0, got {lo}")
    return Param(name, kind, low=lo, high=hi, log=log, stratified=stratified)

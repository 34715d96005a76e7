"""Experiment files: what a search runs, parsed once into frozen, validated objects.

An experiment is a YAML file (``experiments/*.yaml``)::

    name: minilm_cpu                 # default study name
    space: minilm-l6                 # shipped space name or YAML path (relative to this file)
    task: wordnet-nouns
    latency_table: minilm-l6.onnxruntime-cpu.t1.b1.s128   # shipped table name or JSON path
    objectives: [quality, latency_ms, size_mb]           # in study-value order (default shown)
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
      trials: 4                      # default --trials (unset: 4, or as many as fit under a timeout)
      timeout_s: 3600                # default --timeout: no trial starts after it (optional)
      concurrency: 1                 # default --concurrency
      cpus_per_trial: 2
      max_failures: 2                # retries of a trial that raises or is killed
      gpus_per_trial: 0              # GPUs Ray reserves per trial (0.5: two trials share one)
      device: auto                   # auto | cpu | cuda | cuda:N (nas.search.devices)
    sampler: {name: tpe, seed: 0}    # tpe | random | nsga2

**A decoder priced per phase** names one table per latency budget instead of ``latency_table``
(exactly one of the two; :mod:`nas.latency.budgets`)::

    latency_tables:                  # budget: table (name or path), each of the budget's phase
      ttft_ms: smollm2-135m.onnxruntime-cpu.t1.b1.s128           # prefill: time to first token
      tpot_ms: smollm2-135m.onnxruntime-cpu.t1.b1.c256.decode    # decode: time per output token
    objectives: [quality, ttft_ms, tpot_ms, size_mb]             # the default with latency_tables
    sample:
      target_fractions.ttft_ms: {float: [0.4, 0.9], stratified: true}
      target_fractions.tpot_ms: {float: [0.4, 0.9], stratified: true}

The plug-in's config then gets ``latency_tables`` and, as ``latency_table``, the ``ttft_ms`` table
(else the first budget's). Objectives are ``quality``, ``size_mb`` and the latencies the
experiment prices: ``latency_ms`` with ``latency_table``; ``ttft_ms`` / ``tpot_ms`` when
``latency_tables`` names them; ``request_ms`` (``ttft_ms + output_tokens·tpot_ms``) with both
and ``trainer.output_tokens > 0``. A sampled key ``F.K`` (``F`` a field of the plug-in's
config) samples entry ``K`` of the mapping ``F``: the trial's config gets ``{F: {K: value}}``
over ``trainer.F``; the Optuna parameter is named ``F.K``.

Trials train on ``device``, resolved once per trial (:func:`nas.search.devices.resolve_device`):
``auto`` is the GPU Ray gave the trial when ``gpus_per_trial > 0`` and torch has CUDA, else
the CPU; the device is recorded as the trial's ``device`` attribute. Latency is never
measured on it: the latency table prices every architecture for the target device.

A ``stratified: true`` range is not left to the sampler: trial ``n`` takes the
``n``-th point of a shifted low-discrepancy sequence over the range (log-spaced with
``log``), so any run of trials covers the range evenly (:meth:`Param.stratified_value`).
Use it for the latency target: a front needs targets across the whole range, and a
model-based sampler otherwise tends to collapse onto the targets it scored first.
The ``k``-th stratified field (in ``sample:`` order) takes the radical-inverse sequence
in the ``k``-th prime base (2, 3, 5, ...): together a Halton sequence, so two stratified
budgets cover their square, not its diagonal (:meth:`Experiment.stratified_values`); the
first field's base-2 (van der Corput) points are the ones single-target studies always took.

Every mistake raises :class:`~nas.errors.ConfigError` ``"<file>: <field>: <reason>"``.
A latency table built for another space raises :class:`~nas.errors.LatencyTableError`, and a
``latency_tables`` table of the other phase :class:`~nas.errors.LatencyTableMismatchError`
(``"<file>: latency_tables.<budget>: ..."``; :meth:`Experiment.check`), before anything is started.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.errors import ConfigError, NASError
from nas.files import read_utf8
from nas.latency.budgets import LATENCY, LATENCY_OBJECTIVES, REQUEST, TABLE_PHASES, TPOT, TTFT, check_table_budgets
from nas.search.attrs import OBJECTIVE_DIRECTIONS, OBJECTIVES
from nas.search.devices import check_device
from nas.search.plugin import DEFAULT_PLUGIN, FIXED_BY_EXPERIMENT, TrialPlugin, load_plugin

SAMPLERS = ("tpe", "random", "nsga2")
DEFAULT_TRIAL = DEFAULT_PLUGIN
_TOP = ("name", "space", "task", "latency_table", "latency_tables", "objectives", "trial", "trainer", "sample", "run",
        "sampler", "supernet", "description")


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

    def stratified_value(self, index: int, shift: float = 0.0, base: int = 2) -> float | int:
        """The value trial ``index`` takes when the range is ``stratified``.

        ``u = frac(φ_b(index) + shift)`` with ``φ_b`` the radical inverse in ``base`` (base 2, the
        van der Corput sequence: 0, 1/2, 1/4, 3/4, 1/8, ...): the first ``b^k`` trials put one
        value in each of ``b^k`` equal strata of ``[0, 1)``. ``u`` maps to ``[low, high)``
        linearly, or geometrically with ``log``; ``int`` ranges round (``high`` included).
        """
        if self.kind == "choices":
            raise ValueError(f"{self.name}: choices cannot be stratified")
        u = (radical_inverse(index, base) + shift) % 1.0
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


def radical_inverse(index: int, base: int) -> float:
    """``index``'s digits in ``base`` mirrored after the point (base 3: 0, 1/3, 2/3, 1/9, 4/9, ...).

    Example:
        >>> [radical_inverse(i, 3) for i in range(4)] == [0, 1 / 3, 2 / 3, 1 / 9]
        True
    """
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    if base < 2:
        raise ValueError(f"base must be >= 2, got {base}")
    u, denom = 0.0, 1.0
    while index:
        index, digit = divmod(index, base)
        denom *= base
        u += digit / denom
    return u


def van_der_corput(index: int) -> float:
    """The ``index``-th point of the base-2 van der Corput sequence: ``index``'s bits mirrored after the point."""
    return radical_inverse(index, 2)


def prime(k: int) -> int:
    """The ``k``-th prime, from 0: 2, 3, 5, 7, ... (the Halton base of the ``k``-th stratified field)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    found: list[int] = []
    n = 2
    while len(found) <= k:
        if all(n % p for p in found if p * p <= n):
            found.append(n)
        n += 1
    return found[k]


def stratum_shift(seed: int | None) -> float:
    """The sequence's shift for a sampler seed: ``frac((seed + 1)·φ)`` (golden ratio), 0 without a seed."""
    return 0.0 if seed is None else ((seed + 1) * 0.6180339887498949) % 1.0


DEFAULT_TRIALS = 4


def timeout_error(value: Any) -> str | None:
    """Why ``value`` cannot be a search's timeout (positive, finite seconds), or None.

    Example:
        >>> timeout_error(0.0), timeout_error(60)
        ('must be a positive number of seconds, got 0.0', None)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        return f"must be a positive number of seconds, got {value!r}"
    return None


@dataclass(frozen=True)
class RunSettings:
    """Orchestration settings (``run:``)."""

    trials: int | None = None  # None: DEFAULT_TRIALS, or no limit when a timeout is set (:meth:`trial_limit`)
    concurrency: int = 1
    cpus_per_trial: float = 1.0
    max_failures: int = 2
    gpus_per_trial: float = 0.0
    device: str = "auto"
    timeout_s: float | None = None

    def trial_limit(self, timeout_s: float | None = None) -> int | None:
        """Complete trials a search runs: ``trials``, else ``DEFAULT_TRIALS`` without a timeout (``timeout_s`` or this
        run's), else None (as many as the timeout allows)."""
        if self.trials is not None:
            return self.trials
        return DEFAULT_TRIALS if timeout_s is None and self.timeout_s is None else None


@dataclass(frozen=True)
class Experiment:
    """A parsed experiment file (see module docstring).

    Attributes:
        name: the default study name.
        latency_table: the one table (name or path) of a single-latency experiment; "" with ``latency_tables``.
        latency_tables: ``{budget: table}`` of a decoder priced per phase (:mod:`nas.latency.budgets`), else empty.
        objectives: the study's objectives, in value order.
        trial: the trial plug-in, ``module:attribute`` (:mod:`nas.search.plugin`).
        trainer: fixed fields of the plug-in's config.
        sample: sampled fields, by name.
        source: the file it came from (for messages).
    """

    name: str
    space: str
    task: str
    latency_table: str = ""
    latency_tables: Mapping[str, str] = field(default_factory=dict)
    objectives: tuple[str, ...] = OBJECTIVES
    trial: str = DEFAULT_TRIAL
    trainer: Mapping[str, Any] = field(default_factory=dict)
    sample: Mapping[str, Param] = field(default_factory=dict)
    run: RunSettings = RunSettings()
    sampler: str = "tpe"
    sampler_seed: int | None = 0
    supernet: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = "<experiment>"

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(OBJECTIVE_DIRECTIONS[o] for o in self.objectives)

    @property
    def tables(self) -> dict[str, str]:
        """``{latency objective: table}`` it prices with: ``{"latency_ms": latency_table}``, or ``latency_tables``."""
        return dict(self.latency_tables) if self.latency_tables else {LATENCY: self.latency_table}

    @property
    def config_table(self) -> str:
        """The ``latency_table`` the plug-in's config gets: the one table, else the ``ttft_ms`` one, else the first."""
        if not self.latency_tables:
            return self.latency_table
        return next(self.latency_tables[b] for b in (TTFT, *TABLE_PHASES) if b in self.latency_tables)

    @property
    def latency_objectives(self) -> tuple[str, ...]:
        """The objectives that are latencies, in objective order."""
        return tuple(o for o in self.objectives if o in LATENCY_OBJECTIVES)

    def stratified_values(self, index: int) -> dict[str, float | int]:
        """The values trial ``index`` takes for every ``stratified`` field (module docstring).

        The ``k``-th stratified field (in sample order) uses the ``k``-th prime base, shifted by
        :func:`stratum_shift` of the sampler seed plus ``k·(√2 − 1)`` (a shift per field, so that trial
        0 is not on the diagonal; any shift keeps the strata): the first ``2^a·3^b`` trials of two
        stratified fields put one point in each cell of the ``2^a × 3^b`` grid over their ranges.
        """
        shift = stratum_shift(self.sampler_seed)
        strat = [(k, p) for k, p in self.sample.items() if p.stratified]
        return {k: p.stratified_value(index, (shift + i * 0.41421356237309515) % 1.0, base=prime(i))
                for i, (k, p) in enumerate(strat)}

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
        d: dict[str, Any] = {"space": self.space, "task": self.task, "latency_table": self.config_table}
        if self.latency_tables:
            d["latency_tables"] = dict(self.latency_tables)
        d.update(self.trainer)
        for k, v in params.items():
            f, dot, sub = k.partition(".")
            if dot:  # F.K: entry K of the mapping F, over trainer.F
                d[f] = {**(d.get(f) or {}), sub: v}
            else:
                d[k] = v
        plugin = self.plugin
        try:
            return plugin.make_config(d)
        except ConfigError as e:
            msg = str(e)
            field_name = msg.partition(": ")[0]
            if field_name in FIXED_BY_EXPERIMENT:
                raise ConfigError(f"{self.source}: {msg}") from None
            key, why = self._sampled_entry(msg)
            if key is not None:
                raise ConfigError(f"{self.source}: sample.{key}: {why}") from None
            sampled = field_name in self.sample or any(k.startswith(field_name + ".") for k in self.sample)
            raise ConfigError(f"{self.source}: {'sample' if sampled else 'trainer'}.{msg}") from None

    def _sampled_entry(self, msg: str) -> tuple[str | None, str]:
        """``("F.K", why)`` when ``msg`` (``"F: K: why"`` or ``"F: 'K' why"``) is about a sampled entry ``F.K``."""
        field_name, _, rest = msg.partition(": ")
        named = [k for k in self.sample if k.startswith(field_name + ".")
                 and re.match(rf"'?{re.escape(k.partition('.')[2])}'?(: | )", rest)]
        if len(named) != 1:
            return None, msg
        sub = named[0].partition(".")[2]
        return named[0], (rest[len(sub) + 2:] if rest.startswith(f"{sub}: ") else rest)

    def check(self) -> None:
        """Load the space and every latency table, check they belong together, and that every sampled value can run.

        Each table must be built for the space, and a ``latency_tables`` budget's table must be of
        that budget's phase (``ttft_ms``: prefill, ``tpot_ms``: decode).

        The plug-in checks (``plugin.check``) the trial config at both ends of every
        sampled range and at every choice, the other fields at their representative
        values: a range that reaches what the space and table cannot (e.g. a
        ``target_fraction`` below the smallest architecture) is refused here, before
        Ray starts, instead of failing trials.

        Raises:
            SpaceError, LatencyTableError, ConfigError: naming the file, the field and what is wrong.
        """
        from nas.latency import check_phase, load_table
        from nas.spaces import load_space

        space = load_space(self.space)
        for budget, name in self.tables.items():
            where = f"latency_tables.{budget}" if self.latency_tables else "latency_table"
            table = load_table(name)
            try:
                table.check_space(space)
                if budget in TABLE_PHASES:
                    check_phase(table, TABLE_PHASES[budget])
            except NASError as e:
                raise type(e)(f"{self.source}: {where}: {e}") from None
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
                if not k:  # at the representative values: blame a sampled entry the message names
                    entry, why = self._sampled_entry(msg)
                    if entry is not None:
                        raise ConfigError(f"{self.source}: sample.{entry}: {examples[entry]!r} cannot run: "
                                          f"{why}") from None
                    raise ConfigError(f"{self.source}: trainer: {msg}") from None
                raise ConfigError(f"{self.source}: sample.{k}: {v!r} cannot run: {msg}") from None
        if self.supernet:  # every trial must start from the one shared supernet: no sampled field may change it
            key = plugin.shared_key(self.search_config(examples), self.supernet)
            for k, v in corners[1:]:
                if plugin.shared_key(self.search_config({**examples, k: v}), self.supernet) != key:
                    raise ConfigError(f"{self.source}: sample.{k}: changes the shared supernet (its space, task or "
                                      f"data); fix it under trainer when the experiment has supernet:")

    def to_dict(self) -> dict[str, Any]:
        tables: dict[str, Any] = ({"latency_tables": dict(self.latency_tables)} if self.latency_tables
                                  else {"latency_table": self.latency_table})
        return {
            "name": self.name, "space": self.space, "task": self.task, **tables,
            "objectives": list(self.objectives), "trial": self.trial, "trainer": dict(self.trainer),
            "sample": {k: p.to_dict() for k, p in self.sample.items()},
            "run": dataclasses.asdict(self.run), "sampler": {"name": self.sampler, "seed": self.sampler_seed},
            **({"supernet": dict(self.supernet)} if self.supernet else {}),
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
        for req in ("name", "space"):
            if not isinstance(d.get(req), str) or not d[req]:
                raise bad(req, "required (a non-empty string)")
        name = d["name"]
        if not all(c.isalnum() or c in "-_." for c in name):
            raise bad("name", f"{name!r}: use letters, digits, '-', '_', '.' only")
        latency_tables = _latency_tables(d, bad)
        if not latency_tables and (not isinstance(d.get("latency_table"), str) or not d["latency_table"]):
            raise bad("latency_table", "required (a non-empty string), or latency_tables: {ttft_ms: TABLE, "
                                       "tpot_ms: TABLE} for a decoder priced per phase")

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
            f, dot, sub = str(k).partition(".")
            if f in FIXED_BY_EXPERIMENT or f not in fields or (dot and not sub):
                raise bad(f"sample.{k}", f"not a field of {trial}'s config that can be sampled")
            if dot:  # F.K: entry K of the mapping F
                fixed = trainer.get(f)
                if f in sample_raw:
                    raise bad(f"sample.{k}", f"also sampled whole as sample.{f}")
                if fixed is not None and not isinstance(fixed, dict):
                    raise bad(f"sample.{k}", f"trainer.{f} is not a mapping, so {sub!r} cannot be sampled in it")
                if isinstance(fixed, dict) and sub in fixed:
                    raise bad(f"sample.{k}", f"also fixed under trainer.{f}")
            elif k in trainer:
                raise bad(f"sample.{k}", "also fixed under trainer")
            sample[k] = _param(k, spec, lambda why, k=k: bad(f"sample.{k}", why))
        objectives = _objectives(d, latency_tables, trainer, sample, bad)

        run_raw = d.get("run") or {}
        if not isinstance(run_raw, dict):
            raise bad("run", "expected a mapping")
        run_fields = {f.name: f for f in dataclasses.fields(RunSettings)}
        for k in run_raw:
            if k not in run_fields:
                raise bad(f"run.{k}", f"unknown field; allowed: {', '.join(run_fields)}")
        run_raw = {k: v for k, v in run_raw.items() if v is not None}  # null: the default (as to_dict writes it)
        for k, v in run_raw.items():
            if k == "device":
                try:
                    check_device(v)
                except ConfigError as e:
                    raise bad("run.device", str(e).split(": ", 1)[1]) from None
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                raise bad(f"run.{k}", f"expected a number, got {v!r}")
        run = RunSettings(**{k: (v if k == "device" else float(v) if k in ("cpus_per_trial", "gpus_per_trial",
                                                                          "timeout_s")
                                 else int(v)) for k, v in run_raw.items()})
        if run.timeout_s is not None and (why := timeout_error(run.timeout_s)):
            raise bad("run.timeout_s", why)
        for k in ("trials", "concurrency"):
            if getattr(run, k) is not None and getattr(run, k) < 1:
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

        supernet = d.get("supernet") or {}
        if not isinstance(supernet, dict):
            raise bad("supernet", "expected a mapping of the shared supernet's training settings (steps, ...)")
        if supernet:
            run_params = inspect.signature(plugin.run).parameters
            if not callable(getattr(plugin, "train_shared", None)) or not (
                    "shared_dir" in run_params or any(p.kind is p.VAR_KEYWORD for p in run_params.values())):
                raise bad("supernet", f"the trial plug-in {trial} cannot train a shared supernet or start trials "
                                      "from one (train_shared, run(shared_dir=); see nas.search.plugin)")
            try:
                plugin.shared_settings(supernet)
            except ConfigError as e:
                raise bad(f"supernet.{e}".split(": ", 1)[0], str(e).split(": ", 1)[-1]) from None

        exp = cls(
            name=name, space=_resolve(d["space"], base), task=str(d.get("task", "wordnet-nouns")),
            latency_table="" if latency_tables else _resolve(d["latency_table"], base),
            latency_tables={b: _resolve(t, base) for b, t in latency_tables.items()}, objectives=objectives,
            trial=trial,
            trainer=dict(trainer), sample=sample, run=run, sampler=sampler, sampler_seed=seed, supernet=dict(supernet),
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


def _latency_tables(d: Mapping[str, Any], bad) -> dict[str, str]:
    """``latency_tables:`` in budget order (TABLE_PHASES), or {} when the experiment names one ``latency_table``."""
    if "latency_tables" not in d:
        return {}
    if "latency_table" in d:
        raise bad("latency_tables", "give either latency_table (one table) or latency_tables ({ttft_ms: TABLE, "
                                    "tpot_ms: TABLE}), not both")
    raw = d["latency_tables"]
    if not isinstance(raw, dict) or not raw:
        raise bad("latency_tables", f"expected a mapping {{budget: table}} (budgets {', '.join(TABLE_PHASES)}), "
                                    f"got {raw!r}")
    try:
        check_table_budgets(raw)
    except ConfigError as e:
        raise bad("latency_tables", str(e).split(": ", 1)[1]) from None
    for b, t in raw.items():
        if not isinstance(t, str) or not t:
            raise bad(f"latency_tables.{b}", f"expected a table name or path, got {t!r}")
    return {b: raw[b] for b in TABLE_PHASES if b in raw}


def _objectives(d: Mapping[str, Any], latency_tables: Mapping[str, str], trainer: Mapping[str, Any],
                sample: Mapping[str, Param], bad) -> tuple[str, ...]:
    """The objectives (default: quality, the priced latencies, size_mb); each latency must be priced."""
    default = ("quality", *latency_tables, "size_mb") if latency_tables else OBJECTIVES
    objectives = d.get("objectives", list(default))
    if not isinstance(objectives, list) or not objectives:
        raise bad("objectives", "expected a non-empty list")
    for o in objectives:
        if o not in OBJECTIVE_DIRECTIONS:
            raise bad("objectives", f"unknown objective {o!r}; known: {', '.join(OBJECTIVE_DIRECTIONS)}")
    if len(set(objectives)) != len(objectives):
        raise bad("objectives", "listed twice")
    tokens = trainer.get("output_tokens", 0)
    if "output_tokens" in sample:
        p = sample["output_tokens"]
        tokens = min(p.choices) if p.kind == "choices" else p.low
    for o in objectives:
        if o == LATENCY and latency_tables:
            raise bad("objectives", f"{o!r} is priced by latency_table, but this experiment has latency_tables; "
                                    f"use {' and '.join(latency_tables)}")
        if o in TABLE_PHASES and o not in latency_tables:
            raise bad("objectives", f"{o!r} is not priced: it needs latency_tables.{o} (a "
                                    f"{TABLE_PHASES[o]} table)")
        if o == REQUEST and not (TTFT in latency_tables and TPOT in latency_tables
                                 and isinstance(tokens, (int, float)) and tokens > 0):
            raise bad("objectives", f"{o!r} (ttft_ms + output_tokens·tpot_ms) is not priced: it needs "
                                    "latency_tables for ttft_ms and tpot_ms and trainer.output_tokens > 0")
    return tuple(objectives)


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

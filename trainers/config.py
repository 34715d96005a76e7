"""The configuration of one search trial: frozen, validated, round-trips through a dict.

The full dict is stored with every trial so a trial can be re-run or exported
from the study database alone.

Latency budgets (:mod:`nas.latency.budgets`): a trial prices its subnet with one table
(``latency_table``; one budget, ``latency_ms``, against ``target_ms``/``target_fraction``) or, for a
decoder, with one table per phase (``latency_tables: {ttft_ms: <prefill table>, tpot_ms: <decode
table>}``) and holds it to several budgets at once: ``targets_ms``/``target_fractions`` per budget
(``request_ms`` too, with ``output_tokens`` > 0 and both tables), else every table budget at
``target_fraction``. :meth:`SearchConfig.priced_budgets` and :meth:`SearchConfig.constrained_budgets`
name them.

Example:
    >>> c = SearchConfig.from_dict({"space": "tiny-llama", "task": "wordnet-definitions",
    ...     "latency_tables": {"ttft_ms": "tiny-llama.onnxruntime-cpu.t1.b1.s32",
    ...                        "tpot_ms": "tiny-llama.onnxruntime-cpu.t1.b1.c32.decode"},
    ...     "output_tokens": 64, "target_fractions": {"tpot_ms": 0.5, "request_ms": 0.6}})
    >>> c.latency_table, c.priced_budgets(), c.constrained_budgets()
    ('tiny-llama.onnxruntime-cpu.t1.b1.s32', ('ttft_ms', 'tpot_ms', 'request_ms'), ('tpot_ms', 'request_ms'))
"""

from __future__ import annotations

import dataclasses
import re
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nas.errors import ConfigError
from nas.supernet.calibrate import INT4_SCALES
from nas.tasks.definitions import DISTILL_TEXTS
from nas.latency.budgets import LATENCY, LATENCY_OBJECTIVES, REQUEST, TABLE_PHASES, TPOT, TTFT, check_table_budgets

LOSSES = ("hinge", "fbnet", "linear", "band")
TASKS = ("wordnet-nouns", "wordnet-embed", "wordnet-definitions")
TAU_SCHEDULES = ("exponential", "linear", "constant")
AUTOCASTS = ("bf16", "none")
FINETUNE_SCHEDULES = ("constant", "cosine")
CONFIG_VERSION = 1
_DEFAULT_TABLE = "minilm-l6.onnxruntime-cpu.t1.b1.s128"  # latency_table's default: with latency_tables, the ttft one
MAPPINGS = ("latency_tables", "target_fractions", "targets_ms")  # the config's mapping fields (read-only dicts)


class FrozenDict(dict):
    """A read-only dict: a config's mapping field, hashable and equal to the plain dict it holds."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))

    def __reduce__(self):  # pickle and deepcopy rebuild it whole (not item by item)
        return (FrozenDict, (dict(self),))

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a SearchConfig mapping is read-only; use SearchConfig.replace")

    __setitem__ = __delitem__ = __ior__ = _read_only  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]


@dataclass(frozen=True)
class SearchConfig:
    """Everything one ``search_once`` needs.

    Attributes:
        space: search-space name or YAML path.
        task: ``wordnet-nouns`` (26-way lexicographer-file classification of
            noun glosses), ``wordnet-embed`` (cosine fidelity of pooled
            embeddings to the teacher's) or, for decoders, ``wordnet-definitions``
            (next-token distillation on glosses of all parts of speech, quality
            definition → word multiple-choice accuracy; :mod:`trainers.definitions`).
        latency_table: latency-table name (shipped) or path; with ``latency_tables``, one of its
            tables (``from_dict`` fills in its ``ttft_ms`` table, else the first): the table that
            prices ``SearchResult.latency_ms`` and that the study records.
        target_ms / target_fraction: the latency budget T, absolute or as a
            fraction of the full model's table latency (exactly one is set). With
            ``latency_tables``, ``target_ms`` is None and ``target_fraction`` is every
            table budget's fraction unless ``targets_ms``/``target_fractions`` name budgets.
        latency_tables: ``{budget: table name or path}``, budgets ``ttft_ms`` (a prefill
            table) and ``tpot_ms`` (a decode table) (empty: one table, ``latency_table``).
        target_fractions / targets_ms: ``{budget: T_b}`` per budget, as a fraction of the full
            model's latency under it or in ms (a budget in one of them at most); budgets the
            trial prices: the table budgets, and ``request_ms`` with ``output_tokens`` > 0 and
            both tables. Only with ``latency_tables``.
        output_tokens: the request profile's generated tokens: ``request_ms = ttft_ms +
            output_tokens·tpot_ms`` (0: no request budget).
        prompt_tokens: the request profile's prompt length; when set, the ``ttft_ms`` (or single
            prefill) table must have been measured at it (a table prices one shape: no extrapolation).
        loss: latency penalty form: ``hinge`` (``task + λ·max(0, E[LAT]−T)/T``),
            ``fbnet`` (``task·α·(log E[LAT])^β``), ``linear`` (``task + λ·E[LAT]/T``),
            ``band`` (the hinge plus its mirror below ``band_low``·T: lands in ``[band_low·T, T]``).
        lambda0: initial penalty weight λ; ``dual_lr`` its dual-ascent step
            (0 keeps λ fixed).
        alpha, beta: FBNet multiplicative penalty constants; band_low: the lower edge of ``band``, a fraction of T.
        band_fill: with ``band``, a derived architecture below ``band_low``·T is grown into the band, most
            probable move per millisecond first, never past T (:func:`trainers.feasible.most_probable_in_band`).
        size_weight, size_target_mb: optional hinge penalty on expected size.
        tau_schedule, tau0, tau_min: Gumbel temperature schedule (see nas.supernet.gumbel.tau).
        hard: straight-through (one-hot forward) sampling instead of soft.
        steps: architecture-search steps (each = one weight step on the train
            split + one architecture step on the held-out split, FBNet 80/20).
        warmup_steps: weight-only steps before architecture steps start.
        batch_size, max_length: batch and token length of training batches.
        weight_lr, arch_lr: learning rates of weights and architecture logits.
        arch_prior: added at the start to the logit of every label's full-model option
            (:meth:`nas.supernet.supernet.Supernet.favour`; 0: uniform): a short search of a
            pretrained model starts near it, and the penalty moves the choices whose latency
            outweighs their loss (Adam moves each logit by about ``arch_lr`` per step).
        kd_temperature, kd_hidden_weight: distillation temperature and
            hidden-state MSE weight; kd_weight: share of the KD term in the
            classification loss ``(1−w)·CE + w·KL`` (``wordnet-definitions`` is KL only).
        finetune_steps, finetune_lr: distillation fine-tuning of the derived subnet.
        finetune_schedule: its learning rate over the steps: ``constant`` (``finetune_lr`` throughout) or
            ``cosine`` (linear warm-up over the first 10 % of the steps, then cosine decay to 0, so a short
            fine-tune of weights that already work ends at a small learning rate instead of mid-jolt).
        max_train, max_eval: caps on examples used (None: all): train examples
            of the search and fine-tuning, test examples of the evaluation
            (``wordnet-definitions``: multiple-choice items and perplexity glosses).
        teacher_max_train, teacher_steps: train examples and full-batch Adam
            steps of the teacher's head (cached on disk, see trainers.teacher).
        arch_fraction: share of the train examples held out for architecture steps.
        log_every, checkpoint_every: progress-line and checkpoint intervals (steps).
        seed: everything random (sampling, data order, Gumbel noise).
        autocast: ``bf16`` runs the search's and fine-tuning's training steps under bf16 autocast where the
            device computes bf16 natively (CUDA, AMX CPUs: :func:`trainers.devices.bf16_native`; never
            evaluation or the teacher's cached outputs); ``none`` keeps them fp32.
        shared_supernet: the sha256 of a study's shared supernet (:mod:`trainers.shared`) the trial starts
            from instead of the pretrained weights (set by the search service; ``search_once`` then needs
            its folder, ``shared_dir``); None: the pretrained model.
        int4_scales: how the derived subnet's int4 linears get their block scales
            (:data:`nas.supernet.calibrate.INT4_SCALES`): ``absmax`` (``absmax/7``, as the supernet trains) or
            ``calibrated`` (each block's scale clipped for its linear's output error on the first
            :data:`trainers.pipeline.CALIBRATION_ROWS` training texts, at derive and again when fine-tuning
            snaps the weights back onto their grid; :func:`nas.quant.clip_int4`). Same grid, graph and latency.
        freeze_weights: skip the search's weight steps (the architecture steps alone, on the weights the
            trial started from: a shared supernet's already serve every architecture).
        distill_text: what ``wordnet-definitions`` distils on (:data:`nas.tasks.definitions.DISTILL_TEXTS`):
            ``glosses`` (the training synsets' gloss text) or ``items`` (the same synsets as the multiple
            choice asks them, answered: ``Definition: … Word: <word>``, :func:`nas.tasks.definitions.answered`;
            a depth-pruned SmolLM2 keeps its accuracy instead of losing 5 pt,
            ``experiments/reports/distill_budget_smollm2_items_d929245201f4.md``). Other tasks ignore it.
    """

    space: str = "minilm-l6"
    task: str = "wordnet-nouns"
    latency_table: str = _DEFAULT_TABLE
    target_ms: float | None = None
    target_fraction: float | None = 0.5
    latency_tables: Mapping[str, str] = field(default_factory=dict)
    target_fractions: Mapping[str, float] = field(default_factory=dict)
    targets_ms: Mapping[str, float] = field(default_factory=dict)
    output_tokens: int = 0
    prompt_tokens: int | None = None
    loss: str = "hinge"
    lambda0: float = 1.0
    dual_lr: float = 0.5
    alpha: float = 0.2
    beta: float = 0.6
    band_low: float = 0.9
    band_fill: bool = True
    size_weight: float = 0.0
    size_target_mb: float | None = None
    tau_schedule: str = "exponential"
    tau0: float = 5.0
    tau_min: float = 0.2
    hard: bool = True
    steps: int = 60
    warmup_steps: int = 10
    batch_size: int = 16
    max_length: int = 32
    weight_lr: float = 5e-5
    arch_lr: float = 0.1
    arch_prior: float = 0.0
    kd_temperature: float = 2.0
    kd_hidden_weight: float = 0.0
    kd_weight: float = 0.5
    finetune_steps: int = 100
    finetune_lr: float = 5e-5
    finetune_schedule: str = "constant"
    max_train: int | None = 8000
    max_eval: int | None = 2000
    teacher_max_train: int | None = 12000
    teacher_steps: int = 300
    arch_fraction: float = 0.2
    log_every: int = 10
    checkpoint_every: int = 50
    seed: int = 0
    autocast: str = "bf16"
    shared_supernet: str | None = None
    freeze_weights: bool = False
    int4_scales: str = "absmax"
    distill_text: str = "glosses"
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ConfigError:
            return ConfigError(f"{field}: {why}")

        if self.loss not in LOSSES:
            raise bad("loss", f"unknown loss form {self.loss!r}; known: {', '.join(LOSSES)}")
        if self.task not in TASKS:
            raise bad("task", f"unknown task {self.task!r}; known: {', '.join(TASKS)}")
        if self.autocast not in AUTOCASTS:
            raise bad("autocast", f"unknown autocast {self.autocast!r}; known: {', '.join(AUTOCASTS)}")
        if self.tau_schedule not in TAU_SCHEDULES:
            raise bad("tau_schedule", f"unknown schedule {self.tau_schedule!r}; known: {', '.join(TAU_SCHEDULES)}")
        if self.distill_text not in DISTILL_TEXTS:
            raise bad("distill_text", f"unknown text {self.distill_text!r}; known: {', '.join(DISTILL_TEXTS)}")
        if self.int4_scales not in INT4_SCALES:
            raise bad("int4_scales", f"unknown scales {self.int4_scales!r}; known: {', '.join(INT4_SCALES)}")
        if self.finetune_schedule not in FINETUNE_SCHEDULES:
            raise bad("finetune_schedule", f"unknown schedule {self.finetune_schedule!r}; "
                      f"known: {', '.join(FINETUNE_SCHEDULES)}")
        if (self.target_ms is None) == (self.target_fraction is None):
            raise bad("target_ms", "set exactly one of target_ms and target_fraction")
        if self.target_ms is not None and not self.target_ms > 0:
            raise bad("target_ms", f"must be > 0, got {self.target_ms}")
        if self.target_fraction is not None and not 0 < self.target_fraction <= 1:
            raise bad("target_fraction", f"must be in (0, 1], got {self.target_fraction}")
        for f in ("steps", "batch_size", "max_length", "log_every", "checkpoint_every", "teacher_steps"):
            if int(getattr(self, f)) <= 0:
                raise bad(f, f"must be positive, got {getattr(self, f)}")
        for f in ("warmup_steps", "finetune_steps", "lambda0", "dual_lr", "size_weight", "kd_hidden_weight",
                  "arch_prior"):
            if getattr(self, f) < 0:
                raise bad(f, f"must be >= 0, got {getattr(self, f)}")
        for f in ("weight_lr", "arch_lr", "tau0", "tau_min", "kd_temperature"):
            if not getattr(self, f) > 0:
                raise bad(f, f"must be > 0, got {getattr(self, f)}")
        for f in ("max_train", "max_eval", "teacher_max_train"):
            v = getattr(self, f)
            if v is not None and int(v) <= 0:
                raise bad(f, f"must be positive or None, got {v}")
        if not 0 <= self.kd_weight <= 1:
            raise bad("kd_weight", f"must be in [0, 1], got {self.kd_weight}")
        if not 0 < self.band_low < 1:
            raise bad("band_low", f"must be in (0, 1), got {self.band_low}")
        if not isinstance(self.band_fill, bool):
            raise bad("band_fill", f"must be true or false, got {self.band_fill!r}")
        if not 0 < self.arch_fraction < 1:
            raise bad("arch_fraction", f"must be in (0, 1), got {self.arch_fraction}")
        if self.size_weight > 0 and not (self.size_target_mb or 0) > 0:
            raise bad("size_target_mb", "must be > 0 when size_weight > 0")
        if self.shared_supernet is not None and not (isinstance(self.shared_supernet, str)
                                                     and re.fullmatch(r"[0-9a-f]{64}", self.shared_supernet)):
            raise bad("shared_supernet", f"expected a sha256 (64 hex digits), got {self.shared_supernet!r}")
        if not isinstance(self.freeze_weights, bool):
            raise bad("freeze_weights", f"must be true or false, got {self.freeze_weights!r}")
        if self.version != CONFIG_VERSION:
            raise bad("version", f"unknown config version {self.version}")
        self._check_budgets()

    def _check_budgets(self) -> None:
        for f in MAPPINGS:
            v = getattr(self, f)
            if not isinstance(v, Mapping):
                raise ConfigError(f"{f}: expected a mapping of budget names, got {type(v).__name__}")
            object.__setattr__(self, f, FrozenDict(v))
        if self.prompt_tokens is not None and (isinstance(self.prompt_tokens, bool)
                                               or not isinstance(self.prompt_tokens, int) or self.prompt_tokens < 1):
            raise ConfigError(f"prompt_tokens: must be a positive integer or None, got {self.prompt_tokens!r}")
        if isinstance(self.output_tokens, bool) or not isinstance(self.output_tokens, int) or self.output_tokens < 0:
            raise ConfigError(f"output_tokens: must be an integer >= 0, got {self.output_tokens!r}")
        tables = self.latency_tables
        check_table_budgets(tables)
        for b, name in tables.items():
            if not isinstance(name, str) or not name:
                raise ConfigError(f"latency_tables: {b}: expected a table name or path, got {name!r}")
        per_budget = [f for f in ("target_fractions", "targets_ms") if getattr(self, f)]
        if not tables:
            if per_budget:
                raise ConfigError(f"{per_budget[0]}: per-budget targets need latency_tables (one table: "
                                  "target_fraction or target_ms)")
            return
        if self.latency_table == _DEFAULT_TABLE and _DEFAULT_TABLE not in tables.values():  # not given: the ttft one
            object.__setattr__(self, "latency_table", next(tables[b] for b in (*TABLE_PHASES, *tables) if b in tables))
        if self.latency_table not in tables.values():
            raise ConfigError(f"latency_table: {self.latency_table!r} is none of latency_tables' tables "
                              f"({', '.join(f'{b}={t}' for b, t in tables.items())})")
        if self.target_ms is not None:
            raise ConfigError("target_ms: with latency_tables the targets are per budget: set targets_ms or "
                              "target_fractions (or target_fraction for every table budget)")
        priced = self.priced_budgets()
        for f in ("target_fractions", "targets_ms"):
            for b, v in getattr(self, f).items():
                if b not in priced:
                    why = (f"needs output_tokens > 0 and both {TTFT} and {TPOT} tables" if b == REQUEST else
                           f"is not a budget this trial prices; priced: {', '.join(priced)}")
                    raise ConfigError(f"{f}: {b!r} {why}")
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ConfigError(f"{f}: {b}: expected a number, got {v!r}")
                if f == "target_fractions" and not 0 < v <= 1:
                    raise ConfigError(f"{f}: {b}: must be in (0, 1], got {v}")
                if f == "targets_ms" and not v > 0:
                    raise ConfigError(f"{f}: {b}: must be > 0 ms, got {v}")
        both = [b for b in self.target_fractions if b in self.targets_ms]
        if both:
            raise ConfigError(f"target_fractions: {both[0]!r} is also in targets_ms (give each budget one target)")
        n = len(self.constrained_budgets())
        if self.loss == "fbnet" and n > 1:
            raise ConfigError(f"loss: 'fbnet' prices one budget, this trial has {n} "
                              f"({', '.join(self.constrained_budgets())}); use hinge, linear or band")

    def priced_budgets(self) -> tuple[str, ...]:
        """Every latency this trial's tables price besides ``latency_ms`` (the ``latency_table``'s).

        ``()`` with one table; else the table budgets (``ttft_ms``, ``tpot_ms`` order), then
        ``request_ms`` when ``output_tokens`` > 0 and both tables are given.
        """
        names = tuple(b for b in TABLE_PHASES if b in self.latency_tables)
        if self.output_tokens > 0 and all(b in self.latency_tables for b in TABLE_PHASES):
            names += (REQUEST,)
        return names

    def constrained_budgets(self) -> tuple[str, ...]:
        """The budgets the search holds the subnet to, in :data:`nas.latency.budgets.LATENCY_OBJECTIVES` order.

        ``("latency_ms",)`` with one table; else the budgets ``targets_ms``/``target_fractions``
        name, or (none named) every table budget, each at ``target_fraction``.
        """
        if not self.latency_tables:
            return (LATENCY,)
        named = set(self.target_fractions) | set(self.targets_ms)
        if not named:
            return tuple(b for b in TABLE_PHASES if b in self.latency_tables)
        return tuple(b for b in LATENCY_OBJECTIVES if b in named)

    def budget_target(self, budget: str) -> tuple[str, str, float]:
        """How ``budget``'s target is given: ``(field, "ms" or "fraction", value)``.

        Raises:
            ConfigError: ``budget`` is not constrained by this config.
        """
        if budget not in self.constrained_budgets():
            raise ConfigError(f"{budget}: not a budget of this trial ({', '.join(self.constrained_budgets())})")
        if not self.latency_tables:
            if self.target_ms is not None:
                return "target_ms", "ms", float(self.target_ms)
            return "target_fraction", "fraction", float(self.target_fraction)  # type: ignore[arg-type]
        if budget in self.targets_ms:
            return "targets_ms", "ms", float(self.targets_ms[budget])
        if budget in self.target_fractions:
            return "target_fractions", "fraction", float(self.target_fractions[budget])
        return "target_fraction", "fraction", float(self.target_fraction)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update({f: dict(getattr(self, f)) for f in MAPPINGS})  # plain dicts (JSON, comparisons)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SearchConfig":
        """Build from a dict, naming the first unknown field or bad type.

        The budget is exactly one of ``target_ms`` and ``target_fraction``: a dict
        that gives ``target_ms`` and no ``target_fraction`` drops the default fraction.
        A dict that gives ``latency_tables`` and no ``latency_table`` takes its ``ttft_ms``
        table (else its first one, in :data:`nas.latency.budgets.TABLE_PHASES` order).
        """
        if not isinstance(d, dict):
            raise ConfigError(f"search config: expected a mapping, got {type(d).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown field; allowed: {', '.join(sorted(fields))}")
        if d.get("target_ms") is not None and "target_fraction" not in d:
            d = {**d, "target_fraction": None}
        tables = d.get("latency_tables")
        if isinstance(tables, Mapping) and tables and "latency_table" not in d:
            first = next((b for b in TABLE_PHASES if b in tables), next(iter(tables)))
            d = {**d, "latency_table": tables[first]}
        try:
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"search config: {e}") from None

    def replace(self, **changes: Any) -> "SearchConfig":
        return dataclasses.replace(self, **changes)

"""One trial end to end: :func:`search_once` (no Ray, no Optuna; the search service calls it).

Phases (each timed into ``SearchResult.phase_seconds``):

1. ``setup`` – check the config against the space and the latency tables
   (typed errors before any compute: a table for another space or of the wrong
   phase, T ≤ 0, T below the smallest architecture of a budget, a task the space
   cannot run), read the task's data (its recipe, :mod:`trainers.recipes`), load the model;
2. ``teacher`` – tokenize, load or build the teacher (the recipe's ``prepare``);
3. ``search`` – the DNAS loop (:mod:`trainers.search`);
4. ``derive`` – the argmax architecture, made feasible (:mod:`trainers.feasible`),
   cut out with ``nas.derive``;
5. ``finetune`` – distillation fine-tuning (:mod:`trainers.finetune`);
6. ``eval`` – test quality (and the recipe's further metrics) before and after fine-tuning.

The phases are the same for every task; what differs (data, teacher, loss,
quality) is the recipe's. A process running trial after trial (a Ray worker) keeps the
loaded model, the prepared recipe and the ordered (or shared) supernet weights from its last
trial when they were built from the same inputs (:mod:`trainers.warm`); the search re-seeds
torch, so the result is the same either way. Search, fine-tuning and evaluation run on one device,
resolved once (:func:`nas.search.devices.trial_device`) and named in the setup
line; the returned subnet is on the CPU. Latency is always the table's.

Budgets (:mod:`nas.latency.budgets`): one table prices one budget, ``latency_ms``
(:func:`resolve_target`); ``latency_tables`` price a decoder's ``ttft_ms`` and ``tpot_ms``
(and ``request_ms`` with ``output_tokens``), and the trial holds the subnet to every budget
:func:`resolve_targets` returns: the search penalizes each, derive takes an architecture
with ``max_b L_b/T_b ≤ 1`` (:mod:`trainers.feasible`), and the result reports every latency.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch

from nas.errors import ConfigError, LatencyTableError, LatencyTableMismatchError
from nas.latency.budgets import LATENCY, TABLE_PHASES, TTFT
from nas.latency.predictor import Predictor
from nas.latency.table import check_lengths, check_phase, load_table
from nas.models.sources import LoadedModel, load_model
from nas.search.devices import trial_device
from nas.spaces.loader import load_space
from nas.spaces.space import SearchSpace
from nas.spaces.summary import format_arch
from nas.supernet.calibrate import linear_inputs
from nas.supernet.derive import derive
from nas.supernet.supernet import Supernet
from trainers.config import SearchConfig
from trainers.feasible import budget_ratio, log_probs_of, most_probable_feasible, most_probable_in_band
from trainers.finetune import finetune
from trainers import warm
from trainers.recipes import make_recipe, recipe_class
from trainers.result import SearchResult
from trainers.budgets import BudgetPricing
from trainers.devices import train_dtype
from trainers.search import DNASSearch
from trainers.size import size_table
from trainers.teacher import backbone

CALIBRATION_ROWS = 128
"""Training texts (the first ones) whose inputs to each linear calibrate int4 scales (``int4_scales: calibrated``)."""


def int4_calibration(config: SearchConfig, train: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(ids, mask)`` of the first :data:`CALIBRATION_ROWS` texts of ``train`` (an ``Encoded``) when
    ``config.int4_scales`` is ``calibrated`` (derive and fine-tuning then clip int4 scales on them), else None."""
    if config.int4_scales != "calibrated":
        return None
    rows = torch.arange(min(len(train), CALIBRATION_ROWS))
    return train.ids[rows], train.mask[rows]


def calibrated_derive(net: Supernet, arch: Mapping[str, int], calibration: tuple[torch.Tensor, torch.Tensor] | None):
    """``derive(net, arch)``, its int4 linears on scales calibrated on ``calibration`` (None: ``absmax/7``)."""
    if calibration is None:
        return derive(net, arch)
    device = next(net.model.parameters()).device
    return derive(net, arch, int4_importance=linear_inputs(net.model, *(t.to(device) for t in calibration)))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def resolve_target(config: SearchConfig, predictor: Predictor) -> float:
    """The budget T in ms, checked against what the space can reach.

    Raises:
        ConfigError: T ≤ 0 or below the smallest architecture's table latency.
    """
    full = predictor.latency_ms(predictor.space.full())
    target = config.target_ms if config.target_ms is not None else config.target_fraction * full
    field = "target_ms" if config.target_ms is not None else "target_fraction"
    if not target > 0:
        raise ConfigError(f"{field}: the latency target must be > 0 ms, got {target}")
    low = predictor.min_latency_ms()
    if target < low:
        raise ConfigError(
            f"{field}: target {target:.4g} ms is below the smallest architecture of space "
            f"{predictor.space.name!r} ({low:.4g} ms in table {predictor.table.id})"
        )
    return float(target)


def load_predictors(config: SearchConfig, space: SearchSpace) -> dict[str, Predictor]:
    """One :class:`Predictor` per table: ``{"latency_ms": ...}`` with one table, else one per ``latency_tables`` budget.

    Every table is loaded and checked here (no compute): ``ttft_ms``'s must be a prefill table,
    ``tpot_ms``'s a decode table, all for ``space``.

    Raises:
        LatencyTableError: a table is missing or was built for another space (naming the budget).
        LatencyTableMismatchError: a budget's table times the other phase (naming the budget and the table).
    """
    if not config.latency_tables:
        table = load_table(config.latency_table)
        if config.prompt_tokens is not None and table.phase == "prefill":
            check_lengths(table, prompt=config.prompt_tokens)
        return {LATENCY: Predictor(table, space)}
    out: dict[str, Predictor] = {}
    for budget, phase in TABLE_PHASES.items():
        name = config.latency_tables.get(budget)
        if name is None:
            continue
        try:
            table = load_table(name)
        except LatencyTableError as e:
            raise type(e)(f"latency_tables: {budget}: {e}") from None
        try:
            check_phase(table, phase)
            if budget == TTFT and config.prompt_tokens is not None:
                check_lengths(table, prompt=config.prompt_tokens)
        except LatencyTableMismatchError as e:
            raise LatencyTableMismatchError(f"latency_tables: {budget}: table {name}: {e}") from None
        try:
            out[budget] = Predictor(table, space)
        except LatencyTableError as e:
            raise type(e)(f"latency_tables: {budget}: {e}") from None
    return out


def resolve_targets(config: SearchConfig, predictors: Predictor | Mapping[str, Predictor]) -> dict[str, float]:
    """The budgets the trial holds the subnet to, ``{budget: T_b}`` in ms, each checked against the space.

    One table: ``{"latency_ms": T}`` exactly as :func:`resolve_target`. With ``latency_tables``: the
    budgets of :meth:`SearchConfig.constrained_budgets`, each T an absolute ``targets_ms`` entry or
    a fraction (``target_fractions``, else ``target_fraction``) of the full model's latency under it.

    Args:
        config: the trial's config.
        predictors: ``load_predictors(config, space)`` (a bare :class:`Predictor` for one table).

    Raises:
        ConfigError: a T ≤ 0 or below the smallest architecture's latency under its budget (naming the
            field, the budget and both ms), or a budget no given table prices.

    Example:
        >>> resolve_targets(config, load_predictors(config, space))  # doctest: +SKIP
        {'ttft_ms': 1.2, 'tpot_ms': 0.31}
    """
    if isinstance(predictors, Predictor):
        predictors = {LATENCY: predictors}
    if not config.latency_tables:
        return {LATENCY: resolve_target(config, predictors[LATENCY])}
    pricing = BudgetPricing(predictors, output_tokens=config.output_tokens)
    out: dict[str, float] = {}
    for budget in config.constrained_budgets():
        field, kind, value = config.budget_target(budget)
        if budget not in pricing.names:
            raise ConfigError(f"{field}: {budget}: no latency table prices it (priced: {', '.join(pricing.names)})")
        target = value if kind == "ms" else value * pricing.full_ms(budget)
        if not target > 0:
            raise ConfigError(f"{field}: {budget}: the latency target must be > 0 ms, got {target}")
        low = pricing.min_ms(budget)
        if target < low:
            raise ConfigError(
                f"{field}: {budget}: target {target:.4g} ms is below the smallest architecture of space "
                f"{pricing.space.name!r} ({low:.4g} ms, {pricing.source(budget)})"
            )
        out[budget] = float(target)
    return out


def _ordered_state(space: SearchSpace, loaded: LoadedModel) -> tuple[dict[str, torch.Tensor], dict]:
    """The pretrained model's state in importance order, and the importance (:meth:`Supernet.build`)."""
    built = Supernet.build(space, loaded=loaded)
    return {k: v.clone() for k, v in built.model.state_dict().items()}, built.importance


def main_budget(config: SearchConfig) -> str:
    """The budget ``config.latency_table`` prices (``SearchResult.latency_ms``'s): ``latency_ms`` with one table."""
    return next((b for b in TABLE_PHASES if config.latency_tables.get(b) == config.latency_table), LATENCY)


def search_once(
    config: SearchConfig,
    *,
    progress: Callable[[str], None] | None = _stderr,
    checkpoint_dir: str | Path | None = None,
    device: str = "auto",
    shared_dir: str | Path | None = None,
) -> SearchResult:
    """Search an architecture for ``config``'s budget, derive it, fine-tune it and measure it.

    Args:
        config: the trial's configuration.
        progress: receives one line per logged step (``None``: silent).
        checkpoint_dir: folder to checkpoint the search into and resume from.
        device: where to train and evaluate: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        shared_dir: the folder of the shared supernet ``config.shared_supernet`` names (its sha256 and
            space are checked before it is loaded, :func:`trainers.shared.load_shared_supernet`).

    Returns:
        The :class:`SearchResult` (its ``subnet`` holds the fine-tuned model).

    Raises:
        ConfigError: bad target (≤ 0 or below the smallest architecture of a budget), or a task the space
            cannot run.
        LatencyTableError: a table is missing or was built for another space.
        LatencyTableMismatchError: a budget's table times the other phase (``ttft_ms``: prefill, ``tpot_ms``: decode).
        DataError: WordNet is not installed.
        DeviceError: ``device`` asks for CUDA that torch does not have.

    Example:
        >>> from trainers import SearchConfig, search_once
        >>> r = search_once(SearchConfig(target_fraction=0.5, seed=1))  # doctest: +SKIP
        >>> r.latency_ms <= r.target_ms
        True
    """
    say = progress or (lambda _line: None)
    phases: dict[str, float] = {}
    t = time.perf_counter()
    torch.manual_seed(config.seed)

    # -- setup: every check before any compute --------------------------------------------
    space = load_space(config.space)
    predictors = load_predictors(config, space)  # LatencyTableError: another space, the wrong phase
    targets = resolve_targets(config, predictors)
    device = trial_device(device)
    pricing = BudgetPricing(predictors, output_tokens=config.output_tokens)
    main = main_budget(config)
    # the task's data (DataError) and its fit to the space (ConfigError); kept from the process's last trial when
    # built from the same data (trainers.warm), with this trial's config
    recipe, kept_recipe = warm.kept("recipe", recipe_class(config).data_key(config, space, device),
                                    partial(make_recipe, config, space))
    recipe.config = config
    if config.shared_supernet is not None:  # the shared supernet's files, space and hash before any compute
        from trainers.shared import check_shared_supernet

        if shared_dir is None:
            raise ConfigError(f"shared_supernet: the trial starts from supernet {config.shared_supernet}; "
                              "pass its folder (shared_dir)")
        check_shared_supernet(shared_dir, space, sha256=config.shared_supernet)
    loaded, kept_model = warm.kept("model", {"model": space.model}, partial(load_model, space.model))
    tables = ", ".join(f"{b} {p.table.id}" for b, p in predictors.items())
    budgets = ", ".join(f"{'' if b == LATENCY else b + ' '}T = {T:.3f} ms ({T / pricing.full_ms(b):.0%} of full "
                        f"{pricing.full_ms(b):.3f} ms)" for b, T in targets.items())
    tables = f"table {predictors[LATENCY].table.id}" if LATENCY in predictors else f"tables {tables}"
    say(f"setup: space {space.name}, {tables}, {budgets}, {recipe.summary}, training on {device} in "
        f"{train_dtype(device, config.autocast)}")
    kept_what = [w for w, k in (("model", kept_model), ("data, teacher", kept_recipe and recipe.prepared)) if k]
    if kept_what:
        say(f"setup: kept from this process's last trial: {', '.join(kept_what)}")
    phases["setup"] = time.perf_counter() - t

    # -- teacher ---------------------------------------------------------------------------
    t = time.perf_counter()
    if not recipe.prepared:
        recipe.prepare(loaded, say, device)
        recipe.prepared = True
    teacher_quality = recipe.teacher_quality
    phases["teacher"] = time.perf_counter() - t

    # -- search ----------------------------------------------------------------------------
    t = time.perf_counter()
    torch.manual_seed(config.seed)  # the search's draws do not depend on what setup built or kept
    if config.shared_supernet is not None:  # the shared weights, read once per process (checked above)
        from trainers.shared import load_task_head, read_shared_supernet

        (meta, weights, head), _ = warm.kept(
            "supernet", {"shared": config.shared_supernet, "space": space.hash},
            partial(read_shared_supernet, shared_dir, space, sha256=config.shared_supernet))
        net = Supernet.from_state(space, weights)
        task = recipe.task()
        load_task_head(task, head, meta)
        say(f"search: starts from shared supernet {config.shared_supernet[:12]} ({meta.get('steps')} sandwich steps)"
            + ("; weights frozen" if config.freeze_weights else ""))
    else:  # the pretrained model in importance order, ordered once per process
        (weights, importance), _ = warm.kept("supernet", {"space": space.hash, "model": space.model},
                                             partial(_ordered_state, space, loaded))
        net = Supernet.from_state(space, weights, importance=importance)
        task = recipe.task()
    train, is_arch = recipe.train, recipe.is_arch
    wdata, adata = train.subset(torch.nonzero(~is_arch).flatten()), train.subset(torch.nonzero(is_arch).flatten())
    search = DNASSearch(
        net, task, predictors, targets, wdata, adata, config,
        teacher_model=backbone(loaded) if config.kd_hidden_weight > 0 else None,
        size_predictor=Predictor(size_table(space), space) if config.size_weight > 0 else None,
        device=device,
    )
    state = search.run(progress=say, checkpoint_dir=checkpoint_dir)
    phases["search"] = time.perf_counter() - t

    # -- derive (feasibility rule; with band, the band's lower edge too) -----------------------
    t = time.perf_counter()
    with torch.no_grad():
        argmax = net.export()
    argmax_lats = pricing.latencies(argmax)
    argmax_ms = argmax_lats[main]
    notes: list[str] = []
    with torch.no_grad():
        logp = log_probs_of(net.probs(), space)
    if len(targets) == 1:  # one budget: the walks in ms, as with one table
        (budget, target), = targets.items()
        latency, goal, unit, field = partial(pricing.latency_ms, budget), target, "ms", "target_ms"
    else:  # every budget at once: max_b L_b/T_b ≤ 1
        latency = budget_ratio({b: partial(pricing.latency_ms, b) for b in targets}, targets)
        goal, unit, field = 1.0, "max L/T", "targets"
    arch, moves = most_probable_feasible(space, latency, logp, argmax, goal, unit=unit, field=field)
    if moves:
        over = "; ".join(f"{'' if b == LATENCY else b + ' '}{argmax_lats[b]:.4g} ms > T = {T:.4g} ms"
                         for b, T in targets.items() if argmax_lats[b] > T)
        notes.append(f"argmax {format_arch(space, argmax)} is {over}; "
                     f"took the most probable feasible architecture after {len(moves)} downgrade(s): "
                     + "; ".join(moves))
        say(f"derive: {notes[-1]}")
    if config.loss == "band" and config.band_fill:
        start, below = arch, latency(arch)
        arch, up = most_probable_in_band(space, latency, logp, start, goal, config.band_low, unit=unit)
        if up:
            notes.append(f"{format_arch(space, start)} is {below:.4g} {unit} < {config.band_low:g}·T = "
                         f"{config.band_low * goal:.4g} {unit}; grew it toward the band in {len(up)} move(s): "
                         + "; ".join(up))
            say(f"derive: {notes[-1]}")
    calibration = int4_calibration(config, train)
    if calibration is not None:
        say(f"derive: int4 scales calibrated on {len(calibration[0])} training texts "
            f"({int(calibration[1].sum())} tokens)")
    subnet = calibrated_derive(net, arch, calibration)
    subnet.to(device)
    phases["derive"] = time.perf_counter() - t

    t = time.perf_counter()
    quality_before, metrics_before = recipe.evaluate(subnet.model, task)
    phases["eval_before"] = time.perf_counter() - t

    # -- fine-tune ---------------------------------------------------------------------------
    t = time.perf_counter()
    ft_task = copy.deepcopy(task)
    if config.finetune_steps > 0:
        finetune(subnet, ft_task, train, steps=config.finetune_steps, lr=config.finetune_lr,
                 batch_size=config.batch_size, seed=config.seed, progress=say, autocast=config.autocast,
                 schedule=config.finetune_schedule, calibration=calibration)
    phases["finetune"] = time.perf_counter() - t

    t = time.perf_counter()
    quality_after, metrics_after = recipe.evaluate(subnet.model, ft_task)
    phases["eval_after"] = time.perf_counter() - t
    subnet.to("cpu")  # saved and exported from the CPU
    recipe.attach(subnet, ft_task.to("cpu"))
    metrics = {**{f"{k}_before": v for k, v in metrics_before.items()},
               **{f"{k}_after": v for k, v in metrics_after.items()},
               **{f"teacher_{k}": v for k, v in recipe.teacher_metrics.items()}}

    size = subnet.size()
    lats = pricing.latencies(arch)
    lat = lats[main]
    latencies = {LATENCY: lat, **{b: v for b, v in lats.items() if b != LATENCY}}
    target = targets.get(main, next(iter(targets.values())))
    extra = "".join(f", {k} {metrics_before[k]:.4g} → {metrics_after[k]:.4g}" for k in metrics_after)
    priced = ", ".join(f"{'' if b == LATENCY else b + ' '}{v:.3f} ms"
                       + (f" (T {targets[b]:.3f})" if b in targets else "") for b, v in lats.items())
    say(f"result: {format_arch(space, arch)} {priced}, {size.mb:.2f} MB, "
        f"{task.metric} {quality_before:.4f} → {quality_after:.4f} (teacher {teacher_quality:.4f}){extra}")
    return SearchResult(
        arch=dict(arch), arch_summary=format_arch(space, arch), latency_ms=lat, target_ms=target,
        feasible=all(lats[b] <= T for b, T in targets.items()), argmax_latency_ms=argmax_ms,
        size_bytes=size.bytes, params=size.params,
        metric=task.metric, quality_before=quality_before, quality_after=quality_after,
        teacher_quality=teacher_quality, history=state.history, phase_seconds=phases, notes=notes,
        metrics=metrics, latencies=latencies, targets=dict(targets), subnet=subnet,
    )

"""One trial end to end: :func:`search_once` (no Ray, no Optuna; the search service calls it).

Phases (each timed into ``SearchResult.phase_seconds``):

1. ``setup`` – check the config against the space and the latency table
   (typed errors before any compute: table for another space, T ≤ 0, T below
   the smallest architecture, a task the space cannot run), read the task's
   data (its recipe, :mod:`trainers.recipes`), load the model;
2. ``teacher`` – tokenize, load or build the teacher (the recipe's ``prepare``);
3. ``search`` – the DNAS loop (:mod:`trainers.search`);
4. ``derive`` – the argmax architecture, made feasible (:mod:`trainers.feasible`),
   cut out with ``nas.derive``;
5. ``finetune`` – distillation fine-tuning (:mod:`trainers.finetune`);
6. ``eval`` – test quality (and the recipe's further metrics) before and after fine-tuning.

The phases are the same for every task; what differs (data, teacher, loss,
quality) is the recipe's. Search, fine-tuning and evaluation run on one device,
resolved once (:func:`nas.search.devices.trial_device`) and named in the setup
line; the returned subnet is on the CPU. Latency is always the table's.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from nas.errors import ConfigError
from nas.latency.predictor import Predictor
from nas.latency.table import load_table
from nas.models.sources import load_model
from nas.search.devices import trial_device
from nas.spaces.loader import load_space
from nas.spaces.summary import format_arch
from nas.supernet.derive import derive
from nas.supernet.supernet import Supernet
from trainers.config import SearchConfig
from trainers.feasible import log_probs_of, most_probable_feasible, most_probable_in_band
from trainers.finetune import finetune
from trainers.recipes import make_recipe
from trainers.result import SearchResult
from trainers.search import DNASSearch
from trainers.size import size_table
from trainers.teacher import backbone


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


def search_once(
    config: SearchConfig,
    *,
    progress: Callable[[str], None] | None = _stderr,
    checkpoint_dir: str | Path | None = None,
    device: str = "auto",
) -> SearchResult:
    """Search an architecture for ``config``'s budget, derive it, fine-tune it and measure it.

    Args:
        config: the trial's configuration.
        progress: receives one line per logged step (``None``: silent).
        checkpoint_dir: folder to checkpoint the search into and resume from.
        device: where to train and evaluate: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        The :class:`SearchResult` (its ``subnet`` holds the fine-tuned model).

    Raises:
        ConfigError: bad target (≤ 0 or below the smallest architecture), or a task the space cannot run.
        LatencyTableError: the table is missing or was built for another space.
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
    table = load_table(config.latency_table)
    predictor = Predictor(table, space)  # raises LatencyTableError for another space
    target = resolve_target(config, predictor)
    device = trial_device(device)
    full_ms = predictor.latency_ms(space.full())
    recipe = make_recipe(config, space)  # the task's data (DataError) and its fit to the space (ConfigError)
    loaded = load_model(space.model)
    say(f"setup: space {space.name}, table {table.id}, T = {target:.3f} ms ({target / full_ms:.0%} of full "
        f"{full_ms:.3f} ms), {recipe.summary}, training on {device}")
    phases["setup"] = time.perf_counter() - t

    # -- teacher ---------------------------------------------------------------------------
    t = time.perf_counter()
    recipe.prepare(loaded, say, device)
    teacher_quality = recipe.teacher_quality
    phases["teacher"] = time.perf_counter() - t

    # -- search ----------------------------------------------------------------------------
    t = time.perf_counter()
    net = Supernet.build(space, loaded=loaded)
    task = recipe.task()
    train, is_arch = recipe.train, recipe.is_arch
    wdata, adata = train.subset(torch.nonzero(~is_arch).flatten()), train.subset(torch.nonzero(is_arch).flatten())
    search = DNASSearch(
        net, task, predictor, target, wdata, adata, config,
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
    argmax_ms = predictor.latency_ms(argmax)
    notes: list[str] = []
    with torch.no_grad():
        logp = log_probs_of(net.probs(), space)
    arch, moves = most_probable_feasible(space, predictor.latency_ms, logp, argmax, target)
    if moves:
        notes.append(f"argmax {format_arch(space, argmax)} is {argmax_ms:.4g} ms > T = {target:.4g} ms; "
                     f"took the most probable feasible architecture after {len(moves)} downgrade(s): "
                     + "; ".join(moves))
        say(f"derive: {notes[-1]}")
    if config.loss == "band" and config.band_fill:
        start, below = arch, predictor.latency_ms(arch)
        arch, up = most_probable_in_band(space, predictor.latency_ms, logp, start, target, config.band_low)
        if up:
            notes.append(f"{format_arch(space, start)} is {below:.4g} ms < {config.band_low:g}·T = "
                         f"{config.band_low * target:.4g} ms; grew it toward the band in {len(up)} move(s): "
                         + "; ".join(up))
            say(f"derive: {notes[-1]}")
    subnet = derive(net, arch)
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
                 batch_size=config.batch_size, seed=config.seed, progress=say, autocast=config.autocast)
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
    lat = predictor.latency_ms(arch)
    extra = "".join(f", {k} {metrics_before[k]:.4g} → {metrics_after[k]:.4g}" for k in metrics_after)
    say(f"result: {format_arch(space, arch)} {lat:.3f} ms (T {target:.3f}), {size.mb:.2f} MB, "
        f"{task.metric} {quality_before:.4f} → {quality_after:.4f} (teacher {teacher_quality:.4f}){extra}")
    return SearchResult(
        arch=dict(arch), arch_summary=format_arch(space, arch), latency_ms=lat, target_ms=target,
        feasible=lat <= target, argmax_latency_ms=argmax_ms, size_bytes=size.bytes, params=size.params,
        metric=task.metric, quality_before=quality_before, quality_after=quality_after,
        teacher_quality=teacher_quality, history=state.history, phase_seconds=phases, notes=notes,
        metrics=metrics, subnet=subnet,
    )

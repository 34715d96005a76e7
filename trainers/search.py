"""The DNAS search loop: alternate weight and architecture steps (FBNet-style).

Each step takes one *weight* step on the weight part of the train split (a
Gumbel sample of the architecture held constant, task + distillation loss,
weights and task head updated) and — after ``warmup_steps`` — one
*architecture* step on the held-out architecture part (a Gumbel sample with
gradient, latency-penalized loss, only the architecture logits updated).
The temperature is ``nas.supernet.gumbel.tau(arch_step, steps)``.

The latency that enters the penalty is a straight-through estimate: its value
is ``max(E[LAT], LAT(argmax))`` and its gradient that of ``E[LAT]``, so the
penalty stays active while the argmax architecture — the one that will be
returned — exceeds T even if the expectation does not. After every
architecture step λ takes one dual-ascent step on the relative violation
``(max(E[LAT], LAT(argmax)) − T)/T`` (hinge and linear forms).

Several budgets (a decoder's ``ttft_ms`` and ``tpot_ms``, :mod:`nas.latency.budgets`): each
budget ``b`` is priced by its own table (:class:`BudgetPricing`; ``request_ms`` as
``E[TTFT] + n·E[TPOT]``, linear, so exact in expectation), gets its own straight-through
value as above, its own hinge/linear/band term (:func:`trainers.losses.budget_penalties`)
and its own λ_b (``SearchState.lambdas``), each updated by dual ascent on its own
violation. History rows then carry ``{b}.expected_ms``, ``{b}.ratio``, ``{b}.argmax_ms``,
``{b}.argmax_ratio``, ``{b}.violation``, ``{b}.penalty``, ``{b}.lambda`` and ``{b}.lambda_next``
next to ``task``, ``penalty`` and ``loss``; one budget (``latency_ms``, one table) keeps the
flat keys (``expected_ms``, ``ratio``, ``lambda``, ...).

Speed (CPU): the word-embedding table is frozen and only the rows a batch uses
are fake-quantized (every row, once per step, when the task reads the tied LM
head); with straight-through (``hard``) sampling only the sampled
bit-width's grid is computed — a constant in weight steps, the selected path
with its straight-through gate in architecture steps (see :func:`fast_control`)
— instead of the whole mixture; E[LAT] still prices every option.

A run checkpoints to a folder (``search.safetensors`` + ``search.json``: weights (not with
``freeze_weights``: they never change), architecture logits, head, optimizer moments, step, the λ of
every budget, history; schema 2,
a schema-1 checkpoint's one λ resumes a one-budget run) and resumes
from it; batches and Gumbel noise depend only on (seed, step), so a resumed run
continues as the uninterrupted one would (on the same kind of device: the noise
comes from a generator on the training device).

Device: the supernet, the task (with a decoder's teacher) and the hidden-state
teacher are moved to ``device``, batches follow them, and the task loss runs
under bf16 autocast when ``config.autocast`` is ``bf16`` and the device computes bf16 natively
(CUDA, AMX CPUs: :func:`trainers.devices.bf16_native`); the latency penalty stays fp32.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nas.errors import ConfigError
from nas.files import atomic_dir
from nas.latency.budgets import LATENCY
from nas.latency.predictor import Predictor
from nas.models.transformer import ModelControl
from nas.supernet.gumbel import tau as tau_schedule
from nas.quant import fake_quant, mixed_weight
from nas.supernet.supernet import Supernet
from nas.tasks.batches import Encoded, batch_indices
from trainers.budgets import BudgetPricing
from trainers.checkpoint import optimizer_tensors, restore_optimizer
from trainers.config import SearchConfig
from trainers.devices import to_device, train_autocast
from trainers.losses import add_size_penalty, band_violation, budget_penalties, dual_ascent, hidden_mse, latency_penalty
from trainers.tasks import ClassifyTask, EmbedTask, NextTokenTask

Progress = Callable[[str], None]
CHECKPOINT_SCHEMA = 2  # 2: "lambdas" per budget (1: one "lambda")


@dataclass
class SearchState:
    """What the loop carries from step to step (and what a checkpoint restores).

    ``lambdas``: the penalty weight λ_b of every budget the search constrains.
    """

    step: int = 0
    lambdas: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def lmbda(self) -> float:
        """The first budget's λ (the only one with one budget)."""
        return next(iter(self.lambdas.values()))

    @lmbda.setter
    def lmbda(self, value: float) -> None:
        self.lambdas[next(iter(self.lambdas))] = float(value)


def fast_control(net: Supernet, weights: dict[str, Tensor], ids: Tensor, *, mode: str = "mixture",
                 lm_head: bool = False) -> ModelControl:
    """``net.control(weights)`` with cheaper weight transforms.

    The embedding transform is applied only to the rows ``ids`` uses (int8/int4
    scales are per row, so this is exact) — unless ``lm_head``: the tied LM head
    (``model.logits(hidden, control)``) reads every row, so the whole table is
    transformed, once per control (the lookup and the head share the result).
    ``mode`` sets the bit-width transforms:

    * ``mixture`` – ``Σ_b w_b·fq_b(W)``, exactly the supernet's;
    * ``selected`` – ``w_b*·fq_b*(W)`` for the selected option ``b*`` (the argmax
      of a straight-through one-hot sample): the same forward value, and the
      gradient reaches the bit logits through the selected path only (as
      ProxylessNAS's binary gates), at the cost of one quantizer instead of all;
    * ``constant`` – ``fq_b*(W)`` (weights given as constants: weight steps).
    """
    if mode not in ("mixture", "selected", "constant"):
        raise ValueError(f"mode: unknown {mode!r}")
    ctl = net.control(weights)
    space = net.space

    def transform(opts: tuple[int, ...], w: Tensor):
        if mode == "mixture":
            return lambda W: mixed_weight(W, opts, w)
        i = int(w.argmax())
        b = opts[i]
        if mode == "constant":
            return None if b == 32 else partial(fake_quant, bits=b)
        return lambda W: w[i] * fake_quant(W, b)

    emb_opts = space.options("embed.bits")
    if emb_opts != (32,):
        rows = torch.unique(ids)
        fn = transform(emb_opts, weights["embed.bits"])
        if fn is None:
            ctl.embed_weight = None
        elif lm_head:
            ctl.embed_weight = _once(fn)
        else:
            ctl.embed_weight = lambda W: W.index_put((rows,), fn(W[rows]))
    if mode != "mixture":
        for i, lc in enumerate(ctl.layers):
            for group in ("attn", "ffn"):
                label = f"layer{i}.{group}.bits"
                opts = space.options(label)
                if opts != (32,):
                    setattr(lc, f"{group}_weight", transform(opts, weights[label]))
    return ctl


def _once(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``fn`` computed on its first argument only, then reused (one weight, several reads per forward)."""
    memo: list[Tensor] = []

    def wrapped(W: Tensor) -> Tensor:
        if not memo:
            memo.append(fn(W))
        return memo[0]

    return wrapped


def make_task(config: SearchConfig, hidden: int, num_classes: int, *,
              teacher: nn.Module | None = None) -> ClassifyTask | EmbedTask | NextTokenTask:
    """The task module of ``config.task``; ``teacher`` (the frozen full model) only for ``wordnet-definitions``."""
    if config.task == "wordnet-definitions":
        if teacher is None:
            raise ConfigError("task: wordnet-definitions distils from the full model; pass teacher=")
        return NextTokenTask(teacher, temperature=config.kd_temperature)
    if config.task == "wordnet-embed":
        return EmbedTask()
    return ClassifyTask(hidden, num_classes, kd_weight=config.kd_weight, temperature=config.kd_temperature)


class DNASSearch:
    """One search over ``net`` against ``target_ms`` (see module docstring).

    Args:
        net: the supernet (its word embeddings are frozen here).
        task: the task with its head (trained with the weights).
        predictor: the latency table bound to ``net.space``, or ``{budget: Predictor}`` (one per table:
            ``ttft_ms``, ``tpot_ms``; :class:`BudgetPricing`).
        target_ms: the budget T, or ``{budget: T_b}`` of the budgets the search holds ``net`` to (priced
            ones, ``request_ms`` included; ``{"latency_ms": T}`` is the one-table search).
        weight_data, arch_data: the two parts of the train split (with teacher targets).
        config: the trial's config.
        teacher_model: frozen uncompressed model, needed only for ``kd_hidden_weight > 0``.
        size_predictor: expected-size predictor, needed only for ``size_weight > 0``.
        device: where to train; ``net``, ``task`` and ``teacher_model`` are moved there.

    Raises:
        ConfigError: a target for a latency the predictors do not price, a T ≤ 0, or ``fbnet`` with several budgets.
    """

    def __init__(self, net: Supernet, task: nn.Module, predictor: Predictor | Mapping[str, Predictor],
                 target_ms: float | Mapping[str, float], weight_data: Encoded, arch_data: Encoded,
                 config: SearchConfig, *,
                 teacher_model: nn.Module | None = None, size_predictor: Predictor | None = None,
                 device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.net, self.task = net.to(self.device), task.to(self.device)
        predictors = {LATENCY: predictor} if isinstance(predictor, Predictor) else dict(predictor)
        self.pricing = BudgetPricing(predictors, output_tokens=config.output_tokens)
        self.targets = ({b: float(t) for b, t in target_ms.items()} if isinstance(target_ms, Mapping)
                        else {LATENCY: float(target_ms)})
        for b, t in self.targets.items():
            self.pricing.check(b)
            if not t > 0:
                raise ConfigError(f"targets_ms: {b}: the latency target must be > 0 ms, got {t}")
        if not self.targets:
            raise ConfigError("targets_ms: no latency budget given")
        if config.loss == "fbnet" and len(self.targets) > 1:
            raise ConfigError(f"loss: 'fbnet' prices one budget, got {len(self.targets)} ({', '.join(self.targets)})")
        self.single = list(self.targets) == [LATENCY]  # one table, one budget: today's flat history keys
        self.predictor = next(iter(self.pricing.predictors.values()))
        self.target = next(iter(self.targets.values()))
        self.wdata, self.adata, self.config = weight_data, arch_data, config
        self.teacher_model = None if teacher_model is None else teacher_model.to(self.device)
        self.size_predictor = size_predictor
        net.model.embed.word.weight.requires_grad_(False)
        if config.arch_prior:  # a resumed run's logits replace these (maybe_resume)
            net.favour(net.space.full(), config.arch_prior)
        self.weight_params = [p for p in net.weight_parameters() if p.requires_grad] + list(task.parameters())
        self.wopt = torch.optim.AdamW(self.weight_params, lr=config.weight_lr, weight_decay=0.0)
        self.aopt = torch.optim.Adam(net.arch_parameters(), lr=config.arch_lr)
        self.state = SearchState(lambdas={b: float(config.lambda0) for b in self.targets})

    @property
    def total_steps(self) -> int:
        return self.config.warmup_steps + self.config.steps

    def tau_at(self, step: int) -> float:
        c = self.config
        arch_step = max(0, step - c.warmup_steps)
        return tau_schedule(arch_step, c.steps, schedule=c.tau_schedule, tau0=c.tau0, tau_min=c.tau_min)

    def _task_loss(self, batch: dict[str, Tensor], weights: dict[str, Tensor], mode: str) -> Tensor:
        with train_autocast(self.device, self.config.autocast):
            ctl = fast_control(self.net, weights, batch["ids"], mode=mode, lm_head=self.task.uses_lm_head)
            hidden = self.net.model(batch["ids"], batch["mask"], ctl)
            loss = self.task.loss(self.task.out(self.net.model, hidden, batch, ctl), batch)
            if self.config.kd_hidden_weight > 0 and self.teacher_model is not None:
                with torch.no_grad():
                    t_hidden = self.teacher_model(batch["ids"], batch["mask"])
                loss = loss + self.config.kd_hidden_weight * hidden_mse(hidden, t_hidden, batch["mask"])
        return loss.float()

    def _batch(self, data: Encoded, step: int, salt: int) -> dict[str, Tensor]:
        c = self.config
        return to_device(data.batch(batch_indices(len(data), c.batch_size, seed=c.seed, step=step, salt=salt)),
                         self.device)

    def weight_step(self, step: int, tau: float) -> float:
        c = self.config
        batch = self._batch(self.wdata, step, salt=1)
        g = torch.Generator(device=self.device).manual_seed(c.seed * 7_919 + 2 * step)
        with torch.no_grad():
            weights = {k: v.detach() for k, v in self.net.sample(tau, hard=c.hard, generator=g).items()}
        self.wopt.zero_grad(set_to_none=True)
        loss = self._task_loss(batch, weights, "constant" if c.hard else "mixture")
        loss.backward()
        self.wopt.step()
        return loss.item()

    def arch_step(self, step: int, tau: float) -> dict[str, float]:
        c = self.config
        batch = self._batch(self.adata, step, salt=2)
        g = torch.Generator(device=self.device).manual_seed(c.seed * 7_919 + 2 * step + 1)
        for p in self.weight_params:
            p.requires_grad_(False)
        try:
            self.aopt.zero_grad(set_to_none=True)
            weights = self.net.sample(tau, hard=c.hard, generator=g)
            task = self._task_loss(batch, weights, "selected" if c.hard else "mixture")
            probs = self.net.probs()
            expected = self.pricing.expected_ms(probs)
            with torch.no_grad():
                argmax = self.pricing.latencies(self.net.export())
            exp_ms = {b: float(e.detach()) for b, e in expected.items()}
            # the penalty's value: the architecture derive() would take (band) or the larger of it and E[LAT]
            # (hinge/linear/fbnet, so that neither is over T); its gradient: E[LAT]'s
            lat = {b: argmax[b] if c.loss == "band" else max(exp_ms[b], argmax[b]) for b in self.targets}
            st = {b: expected[b] + (lat[b] - expected[b]).detach() for b in self.targets}
            size_kw: dict[str, Any] = {}
            if c.size_weight > 0 and self.size_predictor is not None:
                size_kw = dict(expected_size=self.size_predictor.expected_latency(probs) / 1e6,
                               size_target=c.size_target_mb, size_weight=c.size_weight)
            loss, details = self._penalty(task, st, size_kw)
            loss.backward()
            self.aopt.step()
        finally:
            for p in self.weight_params:
                p.requires_grad_(True)
        for b, t in self.targets.items():
            violation = band_violation(lat[b], t, c.band_low) if c.loss == "band" else (lat[b] - t) / t
            if c.loss in ("hinge", "linear", "band"):
                self.state.lambdas[b] = dual_ascent(self.state.lambdas[b], violation, c.dual_lr)
            key = "{}" if self.single else f"{b}.{{}}"
            details.update({key.format("expected_ms"): exp_ms[b], key.format("ratio"): exp_ms[b] / t,
                            key.format("argmax_ms"): argmax[b], key.format("argmax_ratio"): argmax[b] / t,
                            key.format("violation"): violation})
        if not self.single:  # the latencies priced but not constrained (e.g. TTFT under a request budget)
            for b in self.pricing.names:
                if b not in self.targets:
                    details.update({f"{b}.expected_ms": exp_ms[b], f"{b}.argmax_ms": argmax[b]})
        return details

    def _penalty(self, task: Tensor, st: dict[str, Tensor], size_kw: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """The architecture step's loss: :func:`latency_penalty` with one budget (flat keys), else
        :func:`budget_penalties` (``{b}.`` keys; ``fbnet`` takes one budget) plus the size hinge."""
        c, lam = self.config, self.state.lambdas
        if self.single or c.loss == "fbnet":
            (b, t), = self.targets.items()  # fbnet with several budgets is refused by the config
            loss, d = latency_penalty(c.loss, task, st[b], t, lmbda=lam[b], alpha=c.alpha, beta=c.beta,
                                      band_low=c.band_low, **size_kw)
            if self.single:
                return loss, d
            details = {k: v for k, v in d.items() if k not in ("expected_ms", "ratio", "lambda")}
            details.update({f"{b}.penalty": d["penalty"], f"{b}.lambda": d["lambda"]})
            return loss, details
        loss, details = budget_penalties(c.loss, task, st, self.targets, {b: lam[b] for b in self.targets},
                                         band_low=c.band_low)
        loss = add_size_penalty(loss, details, **size_kw)
        details["loss"] = float(loss.detach())
        return loss, details

    def run(self, *, progress: Progress | None = None, checkpoint_dir: str | Path | None = None) -> SearchState:
        """Run (or resume) the loop to ``warmup_steps + steps``."""
        c = self.config
        if checkpoint_dir is not None:
            self.maybe_resume(Path(checkpoint_dir), progress)
        t0 = time.perf_counter()
        while self.state.step < self.total_steps:
            step = self.state.step
            tau = self.tau_at(step)
            wloss = float("nan") if c.freeze_weights else self.weight_step(step, tau)
            rec: dict[str, float] = {"step": float(step), "tau": tau, "weight_loss": wloss}
            if step >= c.warmup_steps:
                rec.update(self.arch_step(step, tau))
                if self.single:
                    rec["lambda_next"] = self.state.lmbda
                else:
                    rec.update({f"{b}.lambda_next": lam for b, lam in self.state.lambdas.items()})
            self.state.step = step + 1
            last = self.state.step == self.total_steps
            if step % c.log_every == 0 or last:
                self.state.history.append(rec)
                if progress:
                    progress(_line(rec, self.state.step, self.total_steps, time.perf_counter() - t0,
                                   () if self.single else tuple(self.targets)))
            if checkpoint_dir is not None and (self.state.step % c.checkpoint_every == 0 or last):
                self.save(Path(checkpoint_dir))
        return self.state

    # -- checkpoints ------------------------------------------------------------
    def _checkpointed(self) -> dict[str, Tensor]:
        """The supernet tensors a checkpoint holds: all of them, or with ``freeze_weights`` the architecture logits
        alone (the weights never change in the run: a resumed trial has them already, from the shared supernet or
        the pretrained model its config names — 90 MB not written per MiniLM trial)."""
        state = self.net.state_dict()
        if self.config.freeze_weights:
            return {k: v for k, v in state.items() if k.startswith("arch_logits.")}
        return state

    def save(self, folder: Path) -> None:
        """Write ``search.safetensors`` + ``search.json`` atomically."""
        from safetensors.torch import save_file

        tensors: dict[str, Tensor] = {f"net.{k}": v for k, v in self._checkpointed().items()}
        tensors.update({f"task.{k}": v for k, v in self.task.state_dict().items()})
        opt_meta = {}
        for name, opt in (("wopt", self.wopt), ("aopt", self.aopt)):
            opt_tensors, opt_meta[name] = optimizer_tensors(name, opt)
            tensors.update(opt_tensors)
        meta = {"schema": CHECKPOINT_SCHEMA, "config": self.config.to_dict(), "step": self.state.step,
                "lambdas": dict(self.state.lambdas), "history": self.state.history, "optimizers": opt_meta}
        with atomic_dir(folder) as tmp:
            save_file({k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()},
                      str(tmp / "search.safetensors"))
            (tmp / "search.json").write_text(json.dumps(meta))

    def maybe_resume(self, folder: Path, progress: Progress | None = None) -> bool:
        """Restore from ``folder`` if it holds a checkpoint of this same config.

        A config stored before a field existed is read with that field's default (``from_dict``),
        so a schema-1 checkpoint (one λ) resumes the same one-budget run.

        Raises:
            ConfigError: the checkpoint was written by a different config, for other budgets, or by an
                unknown checkpoint schema.
        """
        from safetensors.torch import load_file

        meta_p = folder / "search.json"
        if not meta_p.is_file():
            return False
        meta = json.loads(meta_p.read_text())
        schema = meta.get("schema")
        if schema not in (1, CHECKPOINT_SCHEMA):
            raise ConfigError(f"checkpoint_dir: {folder} holds a checkpoint of unknown schema {schema!r}")
        mine = self.config.to_dict()
        stored = meta.get("config") if isinstance(meta.get("config"), dict) else {}
        try:
            stored = SearchConfig.from_dict(dict(stored)).to_dict()  # fields added since: their defaults
        except ConfigError:
            pass
        if stored != mine:
            diff = sorted(k for k in mine if stored.get(k) != mine[k])
            raise ConfigError(f"checkpoint_dir: {folder} holds a run of another config (differs in {', '.join(diff)})")
        lambdas = ({b: float(meta["lambda"]) for b in self.targets} if schema == 1
                   else {b: float(v) for b, v in meta["lambdas"].items()})
        if (schema == 1 and len(self.targets) != 1) or set(lambdas) != set(self.targets):
            raise ConfigError(f"checkpoint_dir: {folder} holds the λ of budgets {sorted(lambdas)}, this search "
                              f"has {sorted(self.targets)}")
        s = load_file(str(folder / "search.safetensors"))
        net = {k[4:]: v for k, v in s.items() if k.startswith("net.")}
        missing = sorted(set(self._checkpointed()) - set(net))
        if missing:  # the same config wrote it: a damaged file
            raise ConfigError(f"checkpoint_dir: {folder}/search.safetensors lacks {len(missing)} of the search's "
                              f"tensors (e.g. net.{missing[0]})")
        self.net.load_state_dict(net, strict=not self.config.freeze_weights)
        self.task.load_state_dict({k[5:]: v for k, v in s.items() if k.startswith("task.")})
        for name, opt in (("wopt", self.wopt), ("aopt", self.aopt)):
            restore_optimizer(opt, name, meta["optimizers"][name], s)
        self.state = SearchState(step=int(meta["step"]), lambdas={b: lambdas[b] for b in self.targets},
                                 history=list(meta["history"]))
        if progress:
            progress(f"search: resumed from {folder} at step {self.state.step}")
        return True


def _line(rec: dict[str, float], step: int, total: int, elapsed: float, budgets: tuple[str, ...] = ()) -> str:
    """One progress line; ``budgets`` (several-budget search): each budget's E/T, argmax/T and λ."""
    w = rec["weight_loss"]
    weights = "weights frozen" if math.isnan(w) else f"weight_loss {w:.4f}"
    s = f"search step {step}/{total} tau {rec['tau']:.3f} {weights}"
    if "ratio" in rec:
        s += (f" E[LAT]/T {rec['ratio']:.3f} argmax/T {rec['argmax_ratio']:.3f} lambda {rec['lambda']:.3f}"
              f" task {rec['task']:.4f}")
    elif budgets and f"{budgets[0]}.ratio" in rec:
        s += "".join(f" {b} E/T {rec[f'{b}.ratio']:.3f} argmax/T {rec[f'{b}.argmax_ratio']:.3f}"
                     f" lambda {rec[f'{b}.lambda']:.3f}" for b in budgets)
        s += f" task {rec['task']:.4f}"
    return s + f" ({elapsed:.0f}s)"

"""Weight sharing: train a supernet's weights once so that every sub-architecture works (the sandwich rule).

One-shot NAS earns its keep by amortising: the weights that serve *every*
sub-architecture are trained once per study, and each trial then searches and
fine-tunes briefly from them (Once-for-All, BigNAS, HAT). Each step here
(:class:`SandwichTrainer`) takes one batch and sums the task loss of the
architectures :func:`sandwich_archs` names for that step:

* ``largest`` – the full architecture (every layer, every head and neuron, its widest bits);
* ``smallest`` – every choice at its smallest option (the fewest layers the space allows, lowest bits);
* ``random{i}`` – ``random_archs`` uniformly random architectures, seeded by (seed, step), whose
  bit-width labels cycle through the options between the widest and the lowest, so that every
  bit-width of a label is trained in every step once ``random_archs`` ≥ options − 2;

then one AdamW step on the summed gradients (the largest and smallest bound the space; the random
ones cover its middle). With **progressive shrinking** (``shrink_steps`` > 0, after Once-for-All)
the space the smallest and random architectures come from grows from the largest alone: at step
``s`` every label offers its first ``ceil(f·n)`` options of ``n`` (largest first), ``f = (s + 1) /
shrink_steps`` capped at 1 (:func:`shrunk_space_options`), so the shared weights learn to serve
the large architectures before the small ones pull on them; from step ``shrink_steps`` on it is
the whole space. The loss is the trial's task loss, which distils from the frozen
uncompressed model (in-place distillation from the full model: its logits or hidden states are
the targets of every architecture). The model stays in eval mode, as in the search (no dropout).
Weights are evaluated as a trial evaluates a sampled
architecture: one-hot controls, the selected bits' fake quantization
(:func:`trainers.search.fast_control` in ``constant`` mode), word embeddings frozen.

Checkpoints (``shared.safetensors`` + ``shared.json``, written atomically every
``checkpoint_every`` steps and at the end) hold the weights, the task head, the
optimizer moments, the step and the history; batches and architectures depend only on
(seed, step), so a resumed run continues exactly as the uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nas.errors import ConfigError
from nas.files import atomic_dir
from nas.spaces.choice import layer_label
from nas.spaces.space import Arch, SearchSpace
from nas.supernet.supernet import Supernet
from nas.tasks.batches import Encoded, batch_indices
from trainers.checkpoint import optimizer_tensors, restore_optimizer
from trainers.devices import to_device, train_autocast
from trainers.search import fast_control

Progress = Callable[[str], None]
CHECKPOINT_SCHEMA = 1
_EXTENDABLE = ("steps", "log_every", "checkpoint_every")  # a resumed run may change these (e.g. train longer)
_SALT = 5  # batch stream of its own (search weight steps use 1, arch steps 2, fine-tuning 3)


@dataclass(frozen=True)
class SandwichConfig:
    """How the shared supernet is trained.

    Attributes:
        steps: optimizer steps (each one batch through ``2 + random_archs`` architectures).
        random_archs: random architectures per step besides the largest and the smallest.
        lr: AdamW learning rate of the weights and the task head.
        batch_size: examples per step (the same batch for every architecture of the step).
        seed: batches, random architectures.
        shrink_steps: progressive shrinking over these first steps (module docstring); 0: the whole space
            from the first step.
        log_every, checkpoint_every: progress-line and checkpoint intervals (steps).
        autocast: ``bf16`` where the device computes bf16 natively (CUDA, AMX CPUs:
            :func:`trainers.devices.bf16_native`), or ``none``.
    """

    steps: int = 200
    random_archs: int = 2
    lr: float = 5e-5
    batch_size: int = 16
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 50
    autocast: str = "bf16"
    shrink_steps: int = 0

    def __post_init__(self) -> None:
        for f in ("steps", "batch_size", "log_every", "checkpoint_every"):
            if isinstance(getattr(self, f), bool) or int(getattr(self, f)) <= 0:
                raise ConfigError(f"{f}: must be a positive integer, got {getattr(self, f)!r}")
        if isinstance(self.shrink_steps, bool) or not isinstance(self.shrink_steps, int) or self.shrink_steps < 0:
            raise ConfigError(f"shrink_steps: must be an integer >= 0, got {self.shrink_steps!r}")
        if self.random_archs < 0:
            raise ConfigError(f"random_archs: must be >= 0, got {self.random_archs}")
        if not self.lr > 0:
            raise ConfigError(f"lr: must be > 0, got {self.lr}")
        if self.autocast not in ("bf16", "none"):
            raise ConfigError(f"autocast: unknown {self.autocast!r}; known: bf16, none")

    def to_dict(self) -> dict[str, Any]:
        """Every field; ``shrink_steps`` only when set, so supernets trained before it existed keep their key."""
        d = dataclasses.asdict(self)
        if not d["shrink_steps"]:
            del d["shrink_steps"]
        return d


def shrunk_space_options(space: SearchSpace, step: int, shrink_steps: int) -> dict[str, tuple[int, ...]] | None:
    """Each label's options open at ``step`` of progressive shrinking (module docstring); None: the whole space.

    Example:
        >>> from nas.spaces import load_space
        >>> opts = shrunk_space_options(load_space("smollm2-135m"), 0, 4)
        >>> opts["layer3.heads"], opts["layer3.ffn"], opts["layer3.keep"]
        ((9,), (1536,), (1,))
    """
    if shrink_steps <= 0 or step + 1 >= shrink_steps:
        return None
    frac = (step + 1) / shrink_steps
    return {c.label: tuple(c.options[:max(1, math.ceil(frac * len(c.options)))]) for c in space}


def sandwich_archs(space: SearchSpace, step: int, *, seed: int, random_archs: int,
                   shrink_steps: int = 0) -> list[tuple[str, Arch]]:
    """The architectures of one step, named (module docstring): largest, smallest, then the random ones
    (``shrink_steps``: the smallest and random ones from the options progressive shrinking has opened).

    Example:
        >>> from nas.spaces import load_space
        >>> [name for name, _ in sandwich_archs(load_space("tiny-bert"), 0, seed=0, random_archs=2)]
        ['largest', 'smallest', 'random0', 'random1']
    """
    opened = shrunk_space_options(space, step, shrink_steps)
    rng = random.Random(seed * 1_000_003 + step)
    if opened is None:
        out = [("largest", space.full()), ("smallest", space.smallest())]
        for i in range(random_archs):
            arch = space.sample(rng)
            for c in space:
                if c.kind == "bits" and len(c.options) > 2:
                    arch[c.label] = c.options[1 + (step + i) % (len(c.options) - 2)]
            out.append((f"random{i}", arch))
        return out
    keeps = [layer_label(i, "keep") for i in range(space.dims.num_layers)]

    def kept(arch: Arch) -> bool:
        return any(space.value(arch, k) for k in keeps)

    small = {k: v[-1] for k, v in opened.items()}
    if not kept(small):  # as space.smallest(): at least one layer
        small[next(k for k in keeps if 1 in opened.get(k, ()))] = 1
    out = [("largest", space.full()), ("smallest", small)]
    for i in range(random_archs):
        arch = {k: rng.choice(v) for k, v in opened.items()}
        while not kept(arch):
            arch = {k: rng.choice(v) for k, v in opened.items()}
        for c in space:
            o = opened[c.label]
            if c.kind == "bits" and len(o) > 2:
                arch[c.label] = o[1 + (step + i) % (len(o) - 2)]
        out.append((f"random{i}", arch))
    return out


@dataclass
class SandwichState:
    step: int = 0
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)


class SandwichTrainer:
    """Trains ``net``'s weights (and the task head) by the sandwich rule (module docstring).

    Args:
        net: the supernet (its architecture logits are not used; its word embeddings are frozen).
        task: the trial's task module (with its head, distilling from the full model).
        data: training examples with their teacher targets.
        config: the training settings.
        device: where to train; ``net`` and ``task`` are moved there.
    """

    def __init__(self, net: Supernet, task: nn.Module, data: Encoded, config: SandwichConfig, *,
                 device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.net, self.task = net.to(self.device), task.to(self.device)
        self.data, self.config = data, config
        net.model.embed.word.weight.requires_grad_(False)
        self.params = [p for p in net.weight_parameters() if p.requires_grad] + list(task.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=0.0)
        self.state = SandwichState()

    def arch_loss(self, arch: Arch, batch: dict[str, Tensor]) -> Tensor:
        """The task loss of one architecture on ``batch`` (weights live, architecture fixed)."""
        weights = {k: v.to(self.device) for k, v in self.net.one_hot(arch).items()}
        with train_autocast(self.device, self.config.autocast):
            ctl = fast_control(self.net, weights, batch["ids"], mode="constant", lm_head=self.task.uses_lm_head)
            hidden = self.net.model(batch["ids"], batch["mask"], ctl)
            loss = self.task.loss(self.task.out(self.net.model, hidden, batch, ctl), batch)
        return loss.float()

    def step(self) -> dict[str, float]:
        """One sandwich step; returns each architecture's loss and their sum."""
        c, step = self.config, self.state.step
        idx = batch_indices(len(self.data), c.batch_size, seed=c.seed, step=step, salt=_SALT)
        batch = to_device(self.data.batch(idx), self.device)
        self.opt.zero_grad(set_to_none=True)
        rec: dict[str, float] = {"step": float(step)}
        total = 0.0
        for name, arch in sandwich_archs(self.net.space, step, seed=c.seed, random_archs=c.random_archs,
                                         shrink_steps=c.shrink_steps):
            loss = self.arch_loss(arch, batch)
            loss.backward()  # gradients of every architecture accumulate before the one step
            rec[f"loss.{name}"] = loss.item()
            total += rec[f"loss.{name}"]
        self.opt.step()
        rec["loss"] = total
        self.state.step = step + 1
        return rec

    def run(self, *, progress: Progress | None = None, checkpoint_dir: str | Path | None = None) -> SandwichState:
        """Train (or resume) to ``config.steps``."""
        c = self.config
        if checkpoint_dir is not None:
            self.maybe_resume(Path(checkpoint_dir), progress)
        t0 = time.perf_counter()
        while self.state.step < c.steps:
            rec = self.step()
            last = self.state.step == c.steps
            if (self.state.step - 1) % c.log_every == 0 or last:
                self.state.history.append(rec)
                if progress:
                    progress(f"supernet step {self.state.step}/{c.steps} loss largest {rec['loss.largest']:.4f} "
                             f"smallest {rec['loss.smallest']:.4f} sum {rec['loss']:.4f} "
                             f"({time.perf_counter() - t0:.0f}s)")
            if checkpoint_dir is not None and (self.state.step % c.checkpoint_every == 0 or last):
                self.save(Path(checkpoint_dir))
        return self.state

    # -- checkpoints ----------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write ``shared.safetensors`` + ``shared.json`` atomically."""
        from safetensors.torch import save_file

        tensors: dict[str, Tensor] = {f"net.{k}": v for k, v in self.net.model.state_dict().items()}
        tensors.update({f"task.{k}": v for k, v in self.task.state_dict().items()})
        opt_tensors, opt_meta = optimizer_tensors("opt", self.opt)
        tensors.update(opt_tensors)
        meta = {"schema": CHECKPOINT_SCHEMA, "config": self.config.to_dict(),
                "space": {"name": self.net.space.name, "hash": self.net.space.hash},
                "step": self.state.step, "history": self.state.history,
                "optimizer": opt_meta}
        with atomic_dir(folder) as tmp:
            save_file({k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()},
                      str(tmp / "shared.safetensors"))
            (tmp / "shared.json").write_text(json.dumps(meta))

    def maybe_resume(self, folder: Path, progress: Progress | None = None) -> bool:
        """Restore from ``folder`` if it holds a checkpoint of this space and config (``steps`` may differ: train longer).

        Raises:
            ConfigError: the checkpoint is of another space (both hashes named) or config.
        """
        from safetensors.torch import load_file

        meta_p = folder / "shared.json"
        if not meta_p.is_file():
            return False
        meta = json.loads(meta_p.read_text())
        space = meta.get("space") or {}
        if space.get("hash") != self.net.space.hash:
            raise ConfigError(f"checkpoint_dir: {folder} holds a supernet of space {space.get('name')!r} with hash "
                              f"{space.get('hash')}, not {self.net.space.name!r} with hash {self.net.space.hash}")
        diff = sorted(k for k, v in self.config.to_dict().items()
                      if k not in _EXTENDABLE and (meta.get("config") or {}).get(k) != v)
        if diff:
            raise ConfigError(f"checkpoint_dir: {folder} holds a run of another config (differs in {', '.join(diff)})")
        s = load_file(str(folder / "shared.safetensors"))
        self.net.model.load_state_dict({k[4:]: v for k, v in s.items() if k.startswith("net.")})
        self.task.load_state_dict({k[5:]: v for k, v in s.items() if k.startswith("task.")})
        restore_optimizer(self.opt, "opt", meta["optimizer"], s)
        self.state = SandwichState(step=int(meta["step"]), history=list(meta["history"]))
        if progress:
            progress(f"supernet: resumed from {folder} at step {self.state.step}")
        return True

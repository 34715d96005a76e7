"""What a user would do instead of searching, and the two black-box searches.

Every method returns a :class:`MethodRun`: its candidate points (saved subnet + head,
not yet measured) and what it cost. The searches share one rule for the equal
wall-clock budget: a trial starts only while the method's clock is below the
budget; the trial running at the deadline finishes (the overrun is reported).

* ``baselines`` – the teacher as is (frozen pretrained encoder + linear head), the full
  uncompressed model fine-tuned with exactly the students' recipe (``full-finetuned``:
  the accuracy reference of the targets), and uniform students (the first ``k`` layers),
  all distilled with the same fine-tuning budget as every searched subnet; each is
  deployed in fp32 and with onnxruntime's dynamic int8 (``user_int8``, name ``<name>-int8``).
* ``random`` – a uniformly random architecture of the space per trial, derived from
  the pretrained supernet and distilled with the same budget.
* ``nsga2`` – Optuna's NSGA-II over the same space: one categorical parameter per
  space label (the parameter name *is* the label), objectives (validation accuracy ↑,
  the latency table's prediction ↓), the same per-trial work as ``random``.
"""

from __future__ import annotations

import random
import resource
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.studies.benchmark_minilm_cpu.context import Bench, Trained
from nas.errors import ConfigError
from nas.spaces.summary import format_arch


@dataclass
class MethodRun:
    """Candidates of one method and its cost (``wall_s`` includes everything the method did)."""

    method: str
    candidates: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    compute_s: float = 0.0  # sum of the trials' own work (derive + fine-tune + score)
    trials: int = 0
    failed: int = 0
    budget_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def overhead_share(self) -> float:
        return max(self.wall_s - self.compute_s, 0.0) / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {"method": self.method, "trials": self.trials, "failed": self.failed, "wall_s": self.wall_s,
                "cpu_s": self.cpu_s, "compute_s": self.compute_s, "overhead_share": self.overhead_share,
                "budget_s": self.budget_s, **self.extra}


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (user + system)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _candidate(bench: Bench, method: str, name: str, trained: Trained, work: Path, **extra: Any) -> dict[str, Any]:
    files = bench.save(trained, work / method / name)
    return {"method": method, "name": name, "arch": dict(trained.arch),
            "arch_summary": format_arch(bench.space, trained.arch), "predicted_ms": bench.predicted_ms(trained.arch),
            "size_bytes_torch": trained.subnet.size().bytes, **files, **extra}


#: The uncompressed architecture fine-tuned like every student and subnet: the targets' accuracy reference.
FULL_FINETUNED = "full-finetuned"


def baseline_names(ks: Sequence[int], n_layers: int) -> list[str]:
    """Every baseline of a run, in run order: ``teacher``, ``full-finetuned``, ``first<k>`` for ``k < n_layers``."""
    return ["teacher", FULL_FINETUNED, *(f"first{k}" for k in ks if k < n_layers)]


def check_baseline(name: str, n_layers: int) -> str:
    """``name`` if it names a baseline of a model with ``n_layers`` layers (:func:`baseline_names`).

    Raises:
        ConfigError: any other name.
    """
    k = name[len("first"):] if name.startswith("first") else ""
    if name in ("teacher", FULL_FINETUNED) or (k.isdigit() and 0 < int(k) < n_layers):
        return name
    raise ConfigError(f"baselines: unknown baseline {name!r} (teacher, {FULL_FINETUNED}, first<k> with "
                      f"0 < k < {n_layers})")


def train_baseline(bench: Bench, name: str) -> tuple[Trained, float | None]:
    """``(trained, torch test accuracy)`` of baseline ``name`` (:func:`baseline_names`; the teacher is not trained).

    Raises:
        ConfigError: an unknown name.
    """
    full = dict(bench.space.full())
    if check_baseline(name, bench.space.dims.num_layers) == "teacher":
        return Trained(full, _derive_full(bench), bench.task, 0.0), None
    tr = bench.train_arch(full if name == FULL_FINETUNED else bench.first_k(int(name[len("first"):])))
    return tr, bench.test_accuracy(tr)


def run_baselines(bench: Bench, ks: Sequence[int], work: Path, say: Callable[[str], None], *,
                  only: Collection[str] | None = None) -> MethodRun:
    """Teacher, full fine-tuned model and first-k students, each fp32 and ORT int8 (``only``: these names)."""
    run = MethodRun("baselines")
    t0, c0 = time.perf_counter(), cpu_seconds()
    n_layers = bench.space.dims.num_layers
    for k in ks:
        if k >= n_layers:
            say(f"baselines: skip k={k} (the model has {n_layers} layers)")
    for name in baseline_names(ks, n_layers) if only is None else list(only):
        if name != "teacher":
            say(f"baselines: distilling {name} ({bench.config.finetune_steps} steps)")
        tr, acc = train_baseline(bench, name)
        run.compute_s += tr.seconds
        cand = _candidate(bench, "baselines", name, tr, work, deploy="fp32", test_accuracy_torch=acc)
        run.candidates += [cand, {**cand, "name": f"{name}-int8", "deploy": "user_int8"}]
    run.wall_s, run.cpu_s = time.perf_counter() - t0, cpu_seconds() - c0
    return run


def _derive_full(bench: Bench):
    from nas.supernet.derive import derive

    return derive(bench.net, bench.space.full())


def _blackbox(method: str, bench: Bench, budget_s: float, work: Path, say: Callable[[str], None],
              propose: Callable[[], tuple[Any, dict[str, int] | None]],
              tell: Callable[[Any, float | None, dict[str, int] | None], None], cap_ms: float | None = None,
              max_trials: int | None = None) -> MethodRun:
    run = MethodRun(method, budget_s=budget_s)
    run.extra["rejected_over_cap"] = 0
    t0, c0 = time.perf_counter(), cpu_seconds()
    while time.perf_counter() - t0 < budget_s and (max_trials is None or run.trials < max_trials):
        handle, arch = propose()
        if arch is None:  # an architecture the space rejects (every layer skipped)
            run.failed += 1
            tell(handle, None, None)
            continue
        if cap_ms is not None and bench.predicted_ms(arch) > cap_ms:  # outside the searched region: not trained
            run.extra["rejected_over_cap"] += 1
            tell(handle, None, None)
            continue
        tr = bench.train_arch(arch, seed=bench.config.seed + run.trials)
        t_score = time.perf_counter()
        val = bench.val_accuracy(tr)
        run.compute_s += tr.seconds + time.perf_counter() - t_score
        pred = bench.predicted_ms(arch)
        tell(handle, val, arch)
        run.candidates.append(_candidate(bench, method, f"trial-{run.trials:05d}", tr, work, deploy="searched",
                                         val_accuracy=val, test_accuracy_torch=bench.test_accuracy(tr)))
        say(f"{method}: trial {run.trials} {run.candidates[-1]['arch_summary']} predicted {pred:.3f} ms, "
            f"val accuracy {val:.4f} ({time.perf_counter() - t0:.0f}/{budget_s:.0f} s)")
        run.trials += 1
    run.wall_s, run.cpu_s = time.perf_counter() - t0, cpu_seconds() - c0
    return run


def run_random(bench: Bench, budget_s: float, work: Path, say: Callable[[str], None], *, seed: int,
               cap_ms: float | None = None, max_trials: int | None = None) -> MethodRun:
    """Random search: ``space.sample`` per trial, same per-trial work as NSGA-II.

    ``cap_ms``: samples the table predicts slower are redrawn (uniform over the capped space).
    ``max_trials``: stop after that many trials even with budget left (quick runs of tiny models).
    """
    rng = random.Random(seed)
    return _blackbox("random", bench, budget_s, work, say, lambda: (None, bench.space.sample(rng)),
                     lambda *_: None, cap_ms, max_trials)


def suggest_arch(trial: Any, space: Any) -> dict[str, int]:
    """One categorical Optuna parameter per space label, named by the label; returns ``{label: choice}``."""
    return {c.label: trial.suggest_categorical(c.label, list(c.options)) for c in space}


def run_nsga2(bench: Bench, budget_s: float, work: Path, say: Callable[[str], None], *, seed: int,
              population_size: int, cap_ms: float | None = None, max_trials: int | None = None) -> MethodRun:
    """NSGA-II (Optuna) with one categorical parameter per space label.

    Objectives: validation accuracy ↑ and every latency the bench predicts ↓ (``bench.latency_values``:
    the table's one latency for an encoder; TTFT and TPOT for a decoder priced per phase).
    ``cap_ms``: proposals the table predicts slower are told to the study as failed, untrained.
    """
    import optuna

    from nas.errors import ArchError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.NSGAIISampler(population_size=population_size, seed=seed)
    n_lat = len(bench.latency_values(bench.space.full()))
    study = optuna.create_study(directions=["maximize"] + ["minimize"] * n_lat, sampler=sampler)

    def propose() -> tuple[Any, dict[str, int] | None]:
        trial = study.ask()
        arch = suggest_arch(trial, bench.space)
        try:
            return trial, bench.space.validate(arch)
        except ArchError:
            return trial, None

    def tell(trial: Any, val: float | None, arch: dict[str, int] | None) -> None:
        if val is None or arch is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, [val, *bench.latency_values(arch)])

    run = _blackbox("nsga2", bench, budget_s, work, say, propose, tell, cap_ms, max_trials)
    run.extra["population_size"] = population_size
    run.extra["generations_completed"] = run.trials // population_size
    return run


__all__ = ["FULL_FINETUNED", "MethodRun", "baseline_names", "check_baseline", "cpu_seconds", "run_baselines",
           "run_nsga2", "run_random", "suggest_arch", "train_baseline"]

"""The measurement protocol: warm-up, interleaved rounds, median and IQR, noisy entries.

Every entry is a zero-argument callable that runs one inference. After a
warm-up of each, the protocol runs ``rounds`` rounds; in each round it visits
every entry once, in a freshly shuffled order, and times ``repeats``
consecutive calls one by one. Interleaving spreads slow phases of a busy
machine over all entries instead of ruining one. An entry whose IQR/median
exceeds ``noise_threshold`` is measured again (fresh samples, same interleaving
among the noisy ones) up to ``remeasure`` times; if it stays noisy it is
flagged, and if more than ``max_noisy_fraction`` of the entries stay noisy
:func:`measure` refuses with :class:`~nas.errors.LatencyTableError`.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from nas.errors import ConfigError, LatencyTableError

Runner = Callable[[], object]
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "thread-cpu": time.thread_time}


@dataclass(frozen=True)
class Protocol:
    """How entries are measured (stored in every table).

    Attributes:
        warmup: untimed calls per entry before the first round.
        rounds: interleaved rounds.
        repeats: timed calls per entry per round (samples = rounds × repeats).
        noise_threshold: IQR/median above which an entry is noisy.
        remeasure: extra passes over the noisy entries.
        max_noisy_fraction: refuse the table when more entries than this stay noisy.
        seed: seed of the round order shuffle.
        clock: ``"wall"`` (``time.perf_counter``: the latency a user sees) or
            ``"thread-cpu"`` (``time.thread_time``: CPU time of the calling
            thread, which excludes time the scheduler gave to other processes;
            equal to wall time on a quiet machine, and only meaningful with 1
            intra-op thread, where onnxruntime and torch run on the caller).
    """

    warmup: int = 5
    rounds: int = 10
    repeats: int = 5
    noise_threshold: float = 0.10
    remeasure: int = 2
    max_noisy_fraction: float = 0.2
    seed: int = 0
    clock: str = "wall"

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise ConfigError(f"protocol.clock: {self.clock!r} is not one of {list(CLOCKS)}")
        for name in ("rounds", "repeats"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"protocol.{name}: must be at least 1, got {getattr(self, name)}")
        for name in ("warmup", "remeasure"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"protocol.{name}: must be at least 0, got {getattr(self, name)}")
        if not self.noise_threshold > 0:
            raise ConfigError(f"protocol.noise_threshold: must be positive, got {self.noise_threshold}")
        if not 0 <= self.max_noisy_fraction <= 1:
            raise ConfigError(f"protocol.max_noisy_fraction: must be in [0, 1], got {self.max_noisy_fraction}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quartiles(samples: list[float]) -> tuple[float, float, float]:
    """``(q25, median, q75)`` with linear interpolation (numpy's default method)."""
    s = sorted(samples)
    if not s:
        raise ValueError("no samples")

    def q(p: float) -> float:
        x = p * (len(s) - 1)
        lo = int(x)
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (x - lo)

    return q(0.25), q(0.5), q(0.75)


def summarize(samples_ms: list[float]) -> dict[str, float]:
    """``{"median_ms", "iqr_ms", "rel_iqr", "n"}`` of one entry's samples."""
    q1, med, q3 = quartiles(samples_ms)
    return {"median_ms": med, "iqr_ms": q3 - q1, "rel_iqr": (q3 - q1) / med if med > 0 else 0.0, "n": len(samples_ms)}


def run_rounds(
    runners: Mapping[str, Runner],
    *,
    rounds: int,
    repeats: int,
    rng: random.Random,
    clock: Callable[[], float] = time.perf_counter,
    log: TextIO | None = None,
    label: str = "round",
) -> dict[str, list[float]]:
    """Interleaved timed calls: ``{entry: [ms, ...]}`` with ``rounds × repeats`` samples each."""
    samples: dict[str, list[float]] = {k: [] for k in runners}
    keys = list(runners)
    for r in range(rounds):
        rng.shuffle(keys)
        t_round = clock()
        for k in keys:
            run = runners[k]
            for _ in range(repeats):
                t0 = clock()
                run()
                samples[k].append((clock() - t0) * 1e3)
        if log is not None:
            print(f"  {label} {r + 1}/{rounds}: {len(keys)} entries, {(clock() - t_round):.2f} s", file=log, flush=True)
    return samples


def measure(
    runners: Mapping[str, Runner],
    protocol: Protocol,
    *,
    clock: Callable[[], float] | None = None,
    log: TextIO | None = None,
) -> dict[str, dict[str, Any]]:
    """Measure every runner under ``protocol`` (see module docstring).

    Returns:
        ``{entry: {"median_ms", "iqr_ms", "rel_iqr", "n", "noisy"}}``.

    Raises:
        LatencyTableError: more than ``max_noisy_fraction`` of the entries stay noisy.
    """
    clock = clock or CLOCKS[protocol.clock]
    rng = random.Random(protocol.seed)
    for run in runners.values():
        for _ in range(protocol.warmup):
            run()
    samples = run_rounds(runners, rounds=protocol.rounds, repeats=protocol.repeats, rng=rng, clock=clock, log=log)
    stats = {k: summarize(v) for k, v in samples.items()}
    for attempt in range(protocol.remeasure):
        noisy = [k for k, s in stats.items() if s["rel_iqr"] > protocol.noise_threshold]
        if not noisy:
            break
        if log is not None:
            print(f"  re-measuring {len(noisy)} noisy entries (pass {attempt + 1}/{protocol.remeasure})", file=log, flush=True)
        again = run_rounds({k: runners[k] for k in noisy}, rounds=protocol.rounds, repeats=protocol.repeats,
                           rng=rng, clock=clock, log=log, label="re-measure round")
        for k, v in again.items():
            fresh = summarize(v)
            if fresh["rel_iqr"] < stats[k]["rel_iqr"]:
                stats[k] = fresh
    out = {k: {**s, "noisy": s["rel_iqr"] > protocol.noise_threshold} for k, s in stats.items()}
    bad = sorted(k for k, s in out.items() if s["noisy"])
    if out and len(bad) > protocol.max_noisy_fraction * len(out):
        worst = max(bad, key=lambda k: out[k]["rel_iqr"])
        raise LatencyTableError(
            f"noise: {len(bad)} of {len(out)} entries stay noisy after {protocol.remeasure} re-measurements "
            f"(IQR/median > {protocol.noise_threshold:g}; worst {worst}: {out[worst]['rel_iqr']:.0%}); "
            f"the machine is probably busy: re-run when it is quiet, or raise --noise-threshold"
        )
    return out


def median_of(values: list[float]) -> float:
    return statistics.median(values)

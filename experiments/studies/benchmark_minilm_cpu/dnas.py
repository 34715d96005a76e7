"""Ours: DNAS trials through the search service (:func:`nas.search.api.run_search`: Ray Tune + Optuna).

The method's clock includes everything the service does (Ray start, study writes,
trial processes). Two service calls spend the budget: the first runs one trial (so even
a tiny budget yields a point); the second (``resume``) has no trial count and the rest
of the budget as its timeout, so it runs trials until the deadline. As for every method,
a trial starting before the deadline finishes.

The trial plug-in is the service's default, ``trainers:dnas``; a
``wordnet-nouns`` trial keeps its fine-tuned classification head next to the
subnet (``head.safetensors``), through which the deployed subnet's accuracy is
measured.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from experiments.studies.benchmark_minilm_cpu.methods import MethodRun, cpu_seconds

TRIAL_FN = "trainers:dnas"


def head_path(subnet_dir: str | Path) -> Path:
    """Where a trial's head lies: ``<subnet_dir>/head.safetensors`` (:mod:`nas.supernet.head`)."""
    from nas.supernet.head import HEAD_FILE

    return Path(subnet_dir) / HEAD_FILE


def experiment_dict(name: str, *, space: str, latency_table: str | None = None, trainer: Mapping[str, Any],
                    dnas: Mapping[str, Any], task: str = "wordnet-nouns",
                    latency_tables: Mapping[str, str] | None = None, bench: str = "benchmark_minilm_cpu") -> dict[str, Any]:
    """The experiment the service runs (the same schema as ``experiments/*.yaml``).

    One ``latency_table`` (objectives quality, latency_ms, size_mb) or, for a decoder priced per
    phase, ``latency_tables`` ``{budget: table}`` (objectives quality, each budget, size_mb).
    """
    tables = dict(latency_tables or {})
    exp = {
        "name": name, "space": space, "task": task,
        "objectives": ["quality", *(tables or ["latency_ms"]), "size_mb"], "trial": TRIAL_FN,
        "trainer": dict(trainer), "sample": dict(dnas.get("sample", {})),
        "run": {"trials": None, "concurrency": int(dnas.get("concurrency", 1)),
                "cpus_per_trial": float(dnas.get("cpus_per_trial", 1)), "max_failures": 1},
        "sampler": {"name": dnas.get("sampler", "tpe"), "seed": int(dnas.get("seed", 0))},
        "description": f"{bench}: ours (DNAS via the search service)",
    }
    if tables:
        exp["latency_tables"] = tables
    else:
        exp["latency_table"] = latency_table
    return exp


def run_dnas(experiment: dict[str, Any], budget_s: float, work: Path, say: Callable[[str], None], *,
             num_cpus: int | None = None, method: str = "dnas") -> tuple[MethodRun, list[dict[str, Any]]]:
    """Run the service for the budget (its ``timeout_s``); returns the run and one candidate per COMPLETE trial.

    An experiment with a ``supernet:`` section (``dnas_shared``) trains the study's shared supernet
    inside the service call, so its training counts in the method's clock. The run records the
    Kendall τ of every trial's quality before fine-tuning (inherited weights) against after
    (``extra["proxy"]``, :func:`nas.search.proxy.proxy_agreement`), the shared supernets' hashes and
    where a trial's time went (``extra["phase_seconds"]``, :func:`phase_medians`).
    """
    from nas.search import api
    from nas.search.attrs import SHARED_SUPERNET
    from nas.search.experiment import Experiment
    from nas.search.proxy import proxy_agreement

    exp = Experiment.from_dict(experiment, source="benchmark dnas", base=work)
    storage = f"sqlite:///{(work / 'dnas.db').resolve()}"
    runs_dir = work / "dnas-runs"
    work.mkdir(parents=True, exist_ok=True)
    run = MethodRun(method, budget_s=budget_s)
    t0, c0 = time.perf_counter(), cpu_seconds()
    calls: list[dict[str, Any]] = []

    def call(**kw: Any) -> None:
        out = api.run_search(exp, storage=storage, resume=bool(calls), runs_dir=runs_dir, num_cpus=num_cpus,
                             log=say, **kw)
        calls.append(out.to_dict())
        run.trials += out.ran
        run.failed += out.failed
        run.compute_s += sum(t.compute_s for t in out.timings)

    call(trials=1)  # one trial first, so even a tiny budget yields a point
    if (left := budget_s - (time.perf_counter() - t0)) > 0:
        call(trials=None, timeout_s=left)  # the rest: no trial starts after the budget, the last one finishes
    setup_s = sum(c["setup_s"] for c in calls)
    run.wall_s, run.cpu_s = time.perf_counter() - t0, cpu_seconds() - c0
    run.extra.update(service_calls=len(calls), service_setup_s=setup_s, calls=calls)
    candidates, phases = [], []
    for p in api.load_points(exp.name, storage=storage):
        m, cfg = p.attrs.get("metrics", {}), p.attrs.get("config", {})
        phases.append(m.get("phase_seconds") or {})
        sd = str(api.fetch_subnet(exp.name, p.trial, work / "dnas-subnets" / f"trial-{p.trial:05d}", storage=storage))
        candidates.append({
            "method": method, "name": f"trial-{p.trial:05d}", "arch": dict(p.arch), "arch_summary": p.arch_summary,
            "predicted_ms": float(m.get("latency_ms", p.latency_ms)), "target_ms": float(m.get("target_ms", math.nan)),
            "feasible_predicted": bool(m.get("feasible", True)), "subnet_dir": sd,
            "head": str(head_path(sd)) if head_path(sd).is_file() else None, "deploy": "searched",
            "test_accuracy_torch": float(m.get("quality_after", p.quality)), "size_bytes_torch": m.get("size_bytes"),
            "target_fraction": cfg.get("target_fraction"),
            # per budget (a decoder priced per phase): the tables' predictions and the trial's targets
            "predicted": {b: float(v) for b, v in p.latencies.items() if b != "latency_ms"},
            "targets": {b: float(v) for b, v in (m.get("targets") or {}).items()},
            "quality_before": m.get("quality_before"), "shared_supernet": p.attrs.get(SHARED_SUPERNET),
            "finetune_steps": cfg.get("finetune_steps"),
        })
    run.extra["proxy"] = proxy_agreement([(float(c["quality_before"] if c["quality_before"] is not None else math.nan),
                                           c["test_accuracy_torch"]) for c in candidates],
                                         [c["finetune_steps"] for c in candidates])
    run.extra["shared_supernets"] = sorted({c["shared_supernet"] for c in candidates if c["shared_supernet"]})
    run.extra["phase_seconds"] = phase_medians(phases)
    return run, candidates


def phase_medians(phases: list[Mapping[str, float]]) -> dict[str, float]:
    """The median seconds of each trial phase (``SearchResult.phase_seconds``: setup, search, derive,
    eval_before, finetune, eval_after) over the trials that timed it, in the order the phases run.

    Example:
        >>> phase_medians([{"search": 3.0, "finetune": 8.0}, {"search": 2.0, "finetune": 6.0}, {"search": 4.0}])
        {'search': 3.0, 'finetune': 7.0}
    """
    names = list(dict.fromkeys(k for ph in phases for k in ph))
    return {k: statistics.median(float(ph[k]) for ph in phases if k in ph) for k in names}


"""What runs inside one Ray Tune trial: build the plug-in's config, run the trial plug-in, upload the subnet.

The trial process never touches the study: it writes the subnet's files and its
step history into the study's artifact store (:mod:`nas.search.artifacts`, reachable
from every node) and reports the objective values (the experiment's objectives, read from the
trial's metrics by name: :func:`objective_values`) plus every trial attribute
(JSON, see :mod:`nas.search.attrs`), the artifact entries, the node it ran on and
the device it trained on (:data:`DEVICE_KEY`, :mod:`nas.search.devices`); the driver
writes them to the study. One writer per study keeps SQLite free of
"database is locked" at any concurrency. Only a retried trial's search checkpoint
stays on the node (``<runs_dir>/<study>/trial-<number>.ckpt``).
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nas.files import sha256_file
from nas.search import attrs

TRIAL_NUMBER_KEY = "__nas_trial_number"  # injected into each trial's config by the driver
ATTRS_KEY = "nas_attrs"  # the reported JSON of every trial attribute
COMPUTE_KEY = "compute_s"  # the trial function's own wall time
FAILED_KEY = "nas_failed"  # a NASError's one line: the trial cannot run as configured (not retried)
DEVICE_KEY = "device"  # the torch device the trial trained on ("cpu", "cuda:0"): a trial attribute and a result key
HISTORY_POINTS = 50  # the step values written as the trial's intermediate values
HISTORY_ARTIFACT_POINTS = 1000  # history.json: every step up to this many


def node_info() -> dict[str, str]:
    """``{"node_id", "host"}`` of the process running the trial (Ray's node id when inside Ray)."""
    info = {"host": socket.gethostname()}
    try:
        import ray

        if ray.is_initialized():
            info["node_id"] = ray.get_runtime_context().get_node_id()
    except Exception:  # not inside Ray: the host alone
        pass
    return info


def summarize_history(history: list[dict[str, Any]], n: int = HISTORY_POINTS) -> dict[str, Any]:
    """A short record of the step history: its length, the last step, and one value per thinned step.

    ``values`` maps step → the step's training loss (``loss``, else ``task``) for the study's
    intermediate values (optuna-dashboard's history plots); the full history is the
    ``history.json`` artifact.
    """
    points = {}
    for h in thin(history, n):
        v = h.get("loss", h.get("weight_loss", h.get("task")))
        if isinstance(v, (int, float)) and "step" in h:
            points[str(int(h["step"]))] = _short(float(v))
    last = {k: _short(v) if isinstance(v, float) else v for k, v in (history[-1] if history else {}).items()}
    return {"steps": len(history), "last": last, "values": points}


def _short(v: float) -> float:
    """``v`` to 6 significant digits: what a summary needs, and compact trial attributes."""
    return float(f"{v:.6g}")


def thin(history: list[dict[str, Any]], n: int = HISTORY_POINTS) -> list[dict[str, Any]]:
    """At most ``n`` evenly spaced entries, always keeping the last."""
    if len(history) <= n:
        return list(history)
    idx = sorted({round(i * (len(history) - 1) / (n - 1)) for i in range(n)})
    return [history[i] for i in idx]


def trial_attrs(*, result, config, subnet_dir: Path) -> dict[str, Any]:
    """Every attribute of :mod:`nas.search.attrs` for one finished trial (JSON-serialisable), artifacts aside."""
    from nas.latency.table import load_table, table_sha256
    from nas.spaces import load_space
    from nas.version import __version__

    entries: dict[str, dict[str, Any]] = {}

    def entry(name: str) -> dict[str, Any]:  # the config's latency_table is one of its latency_tables
        if name not in entries:
            table = load_table(name)
            entries[name] = {"id": table.id, "path": table.path, "space_hash": table.space_hash,
                             "device_fingerprint": table.device.get("fingerprint"), "sha256": table_sha256(table)}
        return dict(entries[name])

    space = load_space(config.space)
    per_budget = dict(getattr(config, "latency_tables", None) or {})  # the plug-in's config is opaque
    metrics = {k: v for k, v in result.to_dict().items() if k not in ("history", "arch")}
    metrics["quality"] = result.quality_after
    if isinstance(metrics.get("phase_seconds"), dict):  # wall times to the millisecond: compact attributes
        metrics["phase_seconds"] = {k: round(float(v), 3) for k, v in metrics["phase_seconds"].items()}
    head = subnet_dir / "head.safetensors"
    return {
        **({attrs.HEAD_SHA256: sha256_file(head)} if head.is_file() else {}),
        attrs.ARCH: dict(result.arch),
        attrs.ARCH_SUMMARY: result.arch_summary,
        attrs.CONFIG: config.to_dict(),
        attrs.METRICS: metrics,
        attrs.SUBNET_SHA256: sha256_file(subnet_dir / "model.safetensors"),
        attrs.SPACE: {"name": space.name, "hash": space.hash},
        attrs.LATENCY_TABLE: entry(config.latency_table),
        **({attrs.LATENCY_TABLES: {b: entry(t) for b, t in per_budget.items()}} if per_budget else {}),
        attrs.NAS_VERSION: __version__,
    }


def objective_values(metrics: Mapping[str, Any], objectives) -> dict[str, float]:
    """``{objective: value}`` read from the trial's metrics by name (``quality``, ``ttft_ms``, ...).

    Raises:
        ConfigError: the plug-in's metrics lack an objective (the message names it and what they have).
    """
    from nas.errors import ConfigError

    missing = [o for o in objectives if o not in metrics]
    if missing:
        raise ConfigError(f"objectives: the trial's metrics have no {', '.join(missing)} (they have "
                          f"{', '.join(k for k in metrics if isinstance(metrics[k], (int, float)))}); "
                          "the trial plug-in must report every objective the experiment names")
    return {o: float(metrics[o]) for o in objectives}


def run_trial(config: dict[str, Any], job: dict[str, Any], *, gpus_assigned: float | None = None) -> dict[str, Any]:
    """Run one trial and return what gets reported to Tune.

    Args:
        config: the sampled parameters plus :data:`TRIAL_NUMBER_KEY`.
        job: ``{"experiment": Experiment.to_dict(), "study": name, "runs_dir": path}``, optionally
            ``"progress"``: a :class:`nas.search.progress.LineRelay` queue the trial's progress lines go to.
        gpus_assigned: GPUs Ray gave the trial (``None``: outside Ray); with ``run.device`` it decides the
            device (:func:`nas.search.devices.trial_device`).

    Raises:
        DeviceError: the device the experiment asks for is not there (before any compute).
    """
    from nas.search.devices import trial_device
    from nas.search.experiment import Experiment

    exp = Experiment.from_dict(job["experiment"], source=job["experiment"]["name"])
    number = int(config[TRIAL_NUMBER_KEY])
    params = {k: config[k] for k in exp.sample}
    shared = job.get("shared_supernet")
    kw: dict[str, Any] = {}
    if shared:  # the study's shared supernet, fetched once per node, every file's sha256 checked
        from nas.search.artifacts import get_store
        from nas.search.shared import fetch_shared_supernet

        params["shared_supernet"] = shared["sha256"]
        kw["shared_dir"] = str(fetch_shared_supernet(shared, get_store(job["artifact_store"]),
                                                     Path(job["runs_dir"]) / job["study"] / "shared"))
    search_config = exp.search_config(params)
    plugin = exp.plugin
    device = trial_device(exp.run.device, gpus_assigned)
    subnet_dir = Path(job["runs_dir"]) / job["study"] / f"trial-{number:05d}"
    ckpt = subnet_dir.with_name(subnet_dir.name + ".ckpt")  # a retried trial resumes its search from here
    t0 = time.perf_counter()
    if job.get("progress") is not None:  # the driver's LineRelay queue
        from nas.search.progress import forwarder

        kw["progress"] = forwarder(job["progress"], f"trial {number}: ")
    result = plugin.run(search_config, checkpoint_dir=str(ckpt), device=device, **kw)
    from nas.search.artifacts import get_store, upload_files

    store = get_store(job["artifact_store"])
    with tempfile.TemporaryDirectory(prefix=f"nas-trial-{number}-") as work:
        subnet_dir = Path(work) / "subnet"
        result.subnet.save(subnet_dir)
        history = Path(work) / "history.json"
        history.write_text(json.dumps(thin(list(result.history), HISTORY_ARTIFACT_POINTS)))
        a = trial_attrs(result=result, config=search_config, subnet_dir=subnet_dir)
        a[attrs.ARTIFACTS] = {"subnet": upload_files(store, sorted(subnet_dir.iterdir())),
                              "history": upload_files(store, [history])[0]}
    a[attrs.HISTORY_SUMMARY] = summarize_history(list(result.history))
    a[attrs.NODE] = node_info()
    if shared:
        a[attrs.SHARED_SUPERNET] = shared["sha256"]
    a[DEVICE_KEY] = device
    compute_s = time.perf_counter() - t0
    shutil.rmtree(ckpt, ignore_errors=True)
    report = objective_values(a[attrs.METRICS], exp.objectives)
    report[ATTRS_KEY] = json.dumps(a)
    report[COMPUTE_KEY] = round(compute_s, 3)
    report[DEVICE_KEY] = device
    return report


def tune_trainable(config: dict[str, Any], job: dict[str, Any]) -> None:
    """The Ray Tune function trainable: one :func:`run_trial`, one report.

    A :class:`~nas.errors.NASError` (a configuration the trial cannot run, such as a
    latency target below the smallest architecture) is deterministic: retrying it
    cannot help, so it is reported as :data:`FAILED_KEY` (objectives NaN) instead of
    raised, and the driver ends the trial FAIL at once. Anything else raises and
    Tune retries it (``run.max_failures``).
    """
    import ray
    from ray import tune

    from nas.errors import NASError

    try:
        report = run_trial(config, job, gpus_assigned=len(ray.get_gpu_ids()))
    except NASError as e:
        objectives = job["experiment"].get("objectives") or list(attrs.OBJECTIVES)
        report = {**{o: float("nan") for o in objectives}, FAILED_KEY: f"{type(e).__name__}: {e}"}
    tune.report(report)

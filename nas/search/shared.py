"""The study's shared supernet: trained once, stored with the study, fetched by every trial.

An experiment with a ``supernet:`` section (the trial plug-in's shared-training settings,
e.g. ``{steps: 200, random_archs: 2}``) makes ``nas search`` — or ``nas supernet train``
alone — train the weight-shared supernet once per study before any trial
(:func:`ensure_shared_supernet`; the plug-in's ``train_shared``). ``nas search`` trains it as a
Ray task on one trial's resources (``run.cpus_per_trial``, ``run.gpus_per_trial``: a GPU node
of the cluster, not the driver's machine), its progress lines relayed to the driver;
``nas supernet train`` trains it in its own process. Its files go to the study's artifact
store (uploaded where it was trained) and the study records them::

    study user attribute "shared_supernet": {key: {"key", "sha256", "files": [artifact entries],
                                                   "steps", "train_s", "created", "trained_by"}}

``trained_by``: the process that trained it (``host``, Ray's ``node_id`` and ``task_id`` when a
Ray task, ``device``).

``key`` is the plug-in's ``shared_key`` (space, task, data and training settings): a study
holding a supernet of that key reuses it (a ``--resume`` or a second ``nas search`` never
retrains it); training is checkpointed under the runs folder, so an interrupted training
resumes. Each trial gets the config field ``shared_supernet`` (the sha256), downloads the
files once per node (:func:`fetch_shared_supernet`; every file's sha256 checked, a corrupt or
missing artifact is a typed error naming both hashes) and starts from them; the trial records
the hash (:data:`nas.search.attrs.SHARED_SUPERNET`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nas.errors import StorageError

STUDY_SHARED = "shared_supernet"


def shared_config(experiment: Any) -> Any:
    """The plug-in config the shared supernet is trained with: the experiment's, sampled fields at their examples."""
    return experiment.search_config({k: p.example() for k, p in experiment.sample.items()})


def ensure_shared_supernet(experiment: Any, study: Any, store_url: str, runs_dir: str | Path, *,
                           say: Callable[[str], None],
                           resources: Mapping[str, float] | None = None) -> dict[str, Any] | None:
    """The study's shared supernet of ``experiment`` (its entry), trained and stored first if the study has none.

    Args:
        resources: ``{"cpu": n[, "gpu": m]}``: train it as a Ray task holding these (Ray initialised);
            ``None``: in this process.

    Returns:
        The study's entry (module docstring), or ``None`` when the experiment has no ``supernet:``.

    Raises:
        Whatever the plug-in's training raises (typed errors before its compute, re-raised as themselves
        from a Ray task); StorageError: the artifact store cannot be written.
    """
    from nas.search.artifacts import record_artifacts
    from nas.search.devices import trial_device

    if not experiment.supernet:
        return None
    plugin = experiment.plugin
    config = shared_config(experiment)
    key = plugin.shared_key(config, experiment.supernet)
    known = dict(study.user_attrs.get(STUDY_SHARED) or {})
    if key in known:
        e = known[key]
        say(f"supernet: the study holds shared supernet {e['sha256'][:12]} ({e.get('steps')} steps, trained in "
            f"{e.get('train_s', 0):.0f} s); reusing it")
        return e
    out = Path(runs_dir) / study.study_name / f"supernet-{key[:12]}"
    ckpt = out.with_name(out.name + ".ckpt")  # an interrupted training resumes from here
    if resources is None:
        done = train_and_store(experiment, out, ckpt, store_url, trial_device(experiment.run.device, None), say)
    else:
        done = _train_as_ray_task(experiment, out, ckpt, store_url, resources, say)
    meta, files = done["meta"], done["files"]
    record_artifacts(study._storage, files, study_id=study._study_id)
    entry = {"key": key, "sha256": meta["sha256"], "files": files, "steps": meta.get("steps"),
             "train_s": round(done["train_s"], 1), "created": meta.get("created"), "trained_by": done["trained_by"]}
    known[key] = entry
    study.set_user_attr(STUDY_SHARED, known)
    where = f" (Ray task on node {done['trained_by']['node_id'][:12]})" if "task_id" in done["trained_by"] else ""
    say(f"supernet: trained shared supernet {meta['sha256'][:12]} in {done['train_s']:.0f} s{where}; stored with "
        f"study {study.study_name!r}")
    return entry


def train_and_store(experiment: Any, out: Path, ckpt: Path, store_url: str, device: str,
                    progress: Callable[[str], None]) -> dict[str, Any]:
    """Train the shared supernet into ``out`` (resuming from ``ckpt``) and upload its files, in this process.

    Returns:
        ``{"meta": the plug-in's supernet.json, "files": artifact entries, "train_s", "trained_by"}``.
    """
    from nas.search.artifacts import get_store, upload_files
    from nas.search.worker import node_info

    t0 = time.perf_counter()
    meta = experiment.plugin.train_shared(shared_config(experiment), experiment.supernet, str(out), device=device,
                                          checkpoint_dir=str(ckpt), progress=progress)
    train_s = time.perf_counter() - t0
    files = upload_files(get_store(store_url), [out / "supernet.safetensors", out / "supernet.json"])
    shutil.rmtree(ckpt, ignore_errors=True)
    return {"meta": meta, "files": files, "train_s": train_s, "trained_by": {**node_info(), "device": device}}


def _remote_train(experiment: dict[str, Any], out: str, ckpt: str, store_url: str, queue: Any) -> dict[str, Any]:
    """The Ray task: :func:`train_and_store` on the GPUs Ray assigned, its lines sent to the driver's relay."""
    import ray

    from nas.search.devices import trial_device
    from nas.search.experiment import Experiment
    from nas.search.progress import forwarder

    exp = Experiment.from_dict(experiment, source=experiment["name"])
    device = trial_device(exp.run.device, len(ray.get_gpu_ids()))
    done = train_and_store(exp, Path(out), Path(ckpt), store_url, device, forwarder(queue, ""))
    done["trained_by"]["task_id"] = ray.get_runtime_context().get_task_id()
    return done


def _train_as_ray_task(experiment: Any, out: Path, ckpt: Path, store_url: str, resources: Mapping[str, float],
                       say: Callable[[str], None]) -> dict[str, Any]:
    """:func:`_remote_train` as a Ray task holding ``resources``; a typed error in it is raised here as itself."""
    import ray
    from ray.exceptions import RayTaskError

    from nas.errors import NASError
    from nas.search.progress import LineRelay

    task = ray.remote(_remote_train).options(num_cpus=float(resources.get("cpu", 1)),
                                             num_gpus=float(resources.get("gpu", 0)))
    with LineRelay(say) as relay:
        ref = task.remote(experiment.to_dict(), str(out), str(ckpt), store_url, relay.queue)
        try:
            return ray.get(ref)
        except RayTaskError as e:
            if isinstance(getattr(e, "cause", None), NASError):
                raise e.cause from None
            raise


def fetch_shared_supernet(entry: Mapping[str, Any], store: Any, cache_dir: str | Path) -> Path:
    """The shared supernet's folder on this node: ``cache_dir/supernet-<sha256>``, downloaded once.

    Every file's recorded sha256 is checked on download (:func:`nas.search.artifacts.download_files`);
    a folder already there is reused only if its weights still have the study's sha256.

    Raises:
        StorageError: an artifact is missing, unreadable or corrupt (names the file and both hashes).
    """
    from nas.files import atomic_dir, sha256_file
    from nas.search.artifacts import download_files

    sha = str(entry["sha256"])
    folder = Path(cache_dir) / f"supernet-{sha}"
    weights = folder / "supernet.safetensors"
    if weights.is_file() and sha256_file(weights) == sha and (folder / "supernet.json").is_file():
        return folder
    with atomic_dir(folder) as tmp:
        download_files(store, list(entry["files"]), tmp, what="shared supernet")
        got = sha256_file(tmp / "supernet.safetensors")
        if got != sha:
            raise StorageError(f"artifacts: shared supernet weights have sha256 {got}, the study recorded {sha}")
    return folder


def train_for_study(experiment: Any, *, storage: Any = None, study: str | None = None, artifacts: str | None = None,
                    runs_dir: str | Path | None = None, say: Callable[[str], None]) -> dict[str, Any]:
    """``nas supernet train``: create (or load) the study and train and store its shared supernet, no trials.

    The same step ``nas search`` takes first (a later ``nas search ... --resume`` reuses it). The
    driver lease is held while training (no other driver runs the study meanwhile).

    Raises:
        ConfigError: the experiment has no ``supernet:`` section (before anything is created).
        StorageError, StudyBusyError: as ``nas search``.
    """
    from nas.errors import ConfigError
    from nas.search.artifacts import STUDY_ATTR, default_store_url, ensure_writable, get_store
    from nas.search.lease import DriverLease
    from nas.search.runner import default_runs_dir
    from nas.search.storage import get_storage, resolve_url
    from nas.search.study import create_or_load_study

    if not experiment.supernet:
        raise ConfigError(f"{experiment.source}: supernet: the experiment has no supernet: section "
                          "(the shared supernet's training settings, e.g. supernet: {steps: 200})")
    experiment.check()
    url = storage if isinstance(storage, str) or storage is None else None
    resolved = resolve_url(url) if url is not None or storage is None else None
    st = get_storage(storage)
    name = study or experiment.name
    ot_study = create_or_load_study(st, name, objectives=experiment.objectives, directions=experiment.directions,
                                    experiment=experiment.to_dict(), resume=True)
    store_url = artifacts or ot_study.user_attrs.get(STUDY_ATTR) or default_store_url(resolved or "")
    get_store(store_url)
    ensure_writable(store_url)
    lease = DriverLease(ot_study, takeover=True)  # a live driver still refuses; a dead one's lease is taken
    lease.acquire()
    try:
        if ot_study.user_attrs.get(STUDY_ATTR) != store_url:
            ot_study.set_user_attr(STUDY_ATTR, store_url)
        runs = Path(runs_dir).resolve() if runs_dir else default_runs_dir(str(getattr(st, "url", "")))
        entry = ensure_shared_supernet(experiment, ot_study, store_url, runs, say=say)
    finally:
        lease.release()
    assert entry is not None
    return {"study": name, **{k: entry[k] for k in ("sha256", "steps", "train_s", "key")}}

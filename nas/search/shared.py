"""The study's shared supernet: trained once, stored with the study, fetched by every trial.

An experiment with a ``supernet:`` section (the trial plug-in's shared-training settings,
e.g. ``{steps: 200, random_archs: 2}``) makes ``nas search`` — or ``nas supernet train``
alone — train the weight-shared supernet once per study before any trial
(:func:`ensure_shared_supernet`, in the driver; the plug-in's ``train_shared``). Its files go
to the study's artifact store and the study records them::

    study user attribute "shared_supernet": {key: {"key", "sha256", "files": [artifact entries],
                                                   "steps", "train_s", "created"}}

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
                           say: Callable[[str], None], device: str = "auto") -> dict[str, Any] | None:
    """The study's shared supernet of ``experiment`` (its entry), trained and stored first if the study has none.

    Returns:
        The study's entry (module docstring), or ``None`` when the experiment has no ``supernet:``.

    Raises:
        Whatever the plug-in's training raises (typed errors before its compute); StorageError: the
        artifact store cannot be written.
    """
    from nas.search.artifacts import get_store, record_artifacts, upload_files
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
    t0 = time.perf_counter()
    meta = plugin.train_shared(config, experiment.supernet, str(out), device=trial_device(experiment.run.device, None),
                               checkpoint_dir=str(ckpt), progress=say)
    train_s = time.perf_counter() - t0
    files = upload_files(get_store(store_url), [out / "supernet.safetensors", out / "supernet.json"])
    record_artifacts(study._storage, files, study_id=study._study_id)
    entry = {"key": key, "sha256": meta["sha256"], "files": files, "steps": meta.get("steps"),
             "train_s": round(train_s, 1), "created": meta.get("created")}
    known[key] = entry
    study.set_user_attr(STUDY_SHARED, known)
    shutil.rmtree(ckpt, ignore_errors=True)
    say(f"supernet: trained shared supernet {meta['sha256'][:12]} in {train_s:.0f} s; stored with study "
        f"{study.study_name!r}")
    return entry


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

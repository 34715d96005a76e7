"""The study-level shared supernet: trained once (:mod:`trainers.sandwich`), saved, verified, loaded by trials.

A shared supernet is a folder of two files::

    supernet.safetensors   model.<param> (the supernet's weights, heads and neurons in importance
                           order, as Supernet.build orders them) and task.<param> (the task head)
    supernet.json          {"schema", "space": {name, hash}, "model", "task", "data": {...},
                           "sandwich": SandwichConfig, "steps", "history", "sha256", "created"}

``sha256`` is the digest of ``supernet.safetensors``: :func:`load_shared_supernet` recomputes
it and compares the space hash before any weight is read, so a trial never starts from a
corrupt file or a supernet of another space (both hashes are named). :func:`shared_key`
is what two trainings must agree on to be the same supernet (space, model, task, data
and sandwich settings): a study reuses the one it stored when the keys match.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas.errors import ConfigError, ModelError, SpaceError
from nas.files import atomic_dir, sha256_file, sha256_json
from trainers.config import SearchConfig
from trainers.sandwich import SandwichConfig

WEIGHTS = "supernet.safetensors"
META = "supernet.json"
SCHEMA = 1
_DATA_FIELDS = ("max_train", "max_length", "arch_fraction", "teacher_max_train", "teacher_steps", "kd_weight",
                "kd_temperature")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def shared_key(config: SearchConfig, sandwich: SandwichConfig) -> str:
    """The identity of a shared supernet: sha256 of the space, task, data fields and sandwich settings."""
    from nas.spaces.loader import load_space

    space = load_space(config.space)
    return sha256_json({"space": space.hash, "model": space.model, "task": config.task,
                        "data": {f: getattr(config, f) for f in _DATA_FIELDS}, "sandwich": sandwich.to_dict()})


def train_shared_supernet(config: SearchConfig, sandwich: SandwichConfig, out: str | Path, *,
                          progress: Callable[[str], None] | None = _stderr, device: str = "auto",
                          checkpoint_dir: str | Path | None = None) -> dict[str, Any]:
    """Train the shared supernet of ``config``'s space and task by the sandwich rule and write it to ``out``.

    The trial's recipe gives the data and the teacher (the same as a trial's, so the weights
    serve the trials' task); ``checkpoint_dir`` makes the training resumable.

    Returns:
        The written ``supernet.json``.

    Raises:
        ConfigError, DataError, DeviceError: as a trial's setup would (before any compute).
    """
    import torch

    from nas.models.sources import load_model
    from nas.search.devices import trial_device
    from nas.spaces.loader import load_space
    from nas.supernet.supernet import Supernet
    from trainers.devices import train_dtype
    from trainers.recipes import make_recipe
    from trainers.sandwich import SandwichTrainer

    say = progress or (lambda _line: None)
    space = load_space(config.space)
    recipe = make_recipe(config, space)
    device = trial_device(device)
    torch.manual_seed(sandwich.seed)
    loaded = load_model(space.model)
    say(f"supernet: space {space.name}, {recipe.summary}, {sandwich.steps} sandwich steps of "
        f"{2 + sandwich.random_archs} architectures on {device} in {train_dtype(device, sandwich.autocast)}")
    recipe.prepare(loaded, say, device)
    net = Supernet.build(space, loaded=loaded)
    task = recipe.task()
    trainer = SandwichTrainer(net, task, recipe.train, sandwich, device=device)
    state = trainer.run(progress=say, checkpoint_dir=checkpoint_dir)
    return save_shared_supernet(out, net, task, config=config, sandwich=sandwich, history=state.history)


def save_shared_supernet(out: str | Path, net: Any, task: Any, *, config: SearchConfig, sandwich: SandwichConfig,
                         history: list[dict[str, float]]) -> dict[str, Any]:
    """Write ``net``'s weights and ``task``'s head to ``out`` (atomically) with the metadata above."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v for k, v in net.model.state_dict().items()}
    tensors.update({f"task.{k}": v for k, v in task.state_dict().items()})
    meta: dict[str, Any] = {
        "schema": SCHEMA, "space": {"name": net.space.name, "hash": net.space.hash}, "model": net.space.model,
        "task": config.task, "data": {f: getattr(config, f) for f in _DATA_FIELDS}, "sandwich": sandwich.to_dict(),
        "key": shared_key(config, sandwich), "steps": sandwich.steps, "history": history[-20:],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    with atomic_dir(out) as tmp:
        save_file({k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}, str(tmp / WEIGHTS))
        meta["sha256"] = sha256_file(tmp / WEIGHTS)
        (tmp / META).write_text(json.dumps(meta, indent=1))
    return meta


def read_shared_meta(folder: str | Path) -> dict[str, Any]:
    """``supernet.json`` of a shared-supernet folder.

    Raises:
        ModelError: no such folder or file, or not valid JSON of this schema.
    """
    p = Path(folder) / META
    if not p.is_file():
        raise ModelError(f"shared supernet: {p} not found")
    try:
        meta = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"shared supernet: {p} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise ModelError(f"shared supernet: {p}: unknown schema {meta.get('schema') if isinstance(meta, dict) else None!r}")
    return meta


def check_shared_supernet(folder: str | Path, space: Any, *, sha256: str | None = None) -> dict[str, Any]:
    """Check a shared-supernet folder against ``space`` and the recorded ``sha256`` without loading it.

    Returns:
        The folder's ``supernet.json``.

    Raises:
        SpaceError: the supernet is of another space (both hashes named).
        ModelError: missing files, or ``supernet.safetensors`` does not have the recorded sha256 (both named).
    """
    folder = Path(folder)
    meta = read_shared_meta(folder)
    recorded = meta.get("space") or {}
    if recorded.get("hash") != space.hash:
        raise SpaceError(f"shared supernet: {folder} is of space {recorded.get('name')!r} with hash "
                         f"{recorded.get('hash')}, the trial's space {space.name!r} has hash {space.hash}")
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise ModelError(f"shared supernet: {weights} not found")
    got = sha256_file(weights)
    for what, want in (("supernet.json records", meta.get("sha256")), ("the study recorded", sha256)):
        if want is not None and got != want:
            raise ModelError(f"shared supernet: {weights} has sha256 {got}, {what} {want} (corrupt or replaced)")
    return meta


def read_shared_supernet(folder: str | Path, space: Any, *, sha256: str | None = None
                         ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A shared supernet's ``(meta, model state, task-head state)``, read after :func:`check_shared_supernet`.

    Returns and raises as :func:`check_shared_supernet`, which runs first.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = check_shared_supernet(folder, space, sha256=sha256)
    s = load_file(str(folder / WEIGHTS))
    return (meta, {k[6:]: v for k, v in s.items() if k.startswith("model.")},
            {k[5:]: v for k, v in s.items() if k.startswith("task.")})


def load_task_head(task: Any, head: dict[str, Any], meta: dict[str, Any]) -> None:
    """Load a shared supernet's task head into the trial's ``task``.

    Raises:
        ConfigError: the head does not fit ``task`` (the supernet was trained for another task).
    """
    try:
        task.load_state_dict(head)
    except RuntimeError as e:
        raise ConfigError(f"shared supernet: its task head does not fit this trial's task ({meta.get('task')!r}): "
                          f"{str(e).splitlines()[0]}") from None


def load_shared_supernet(folder: str | Path, net: Any, task: Any, *, sha256: str | None = None) -> dict[str, Any]:
    """Load a shared supernet into ``net`` (and ``task``'s head), after checking it (module docstring).

    Args:
        folder: the shared supernet's folder.
        net: a :class:`~nas.supernet.supernet.Supernet` of the same space.
        task: the trial's task module (its head is replaced).
        sha256: the digest the caller recorded (e.g. the study's); checked too when given.

    Returns and raises as :func:`check_shared_supernet`, which runs first.
    """
    meta, model, head = read_shared_supernet(folder, net.space, sha256=sha256)
    net.model.load_state_dict(model)
    load_task_head(task, head, meta)
    return meta

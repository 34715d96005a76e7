"""What a trial process keeps for its next trial: the loaded model, the task's prepared data and teacher, the
importance order of the supernet, and the study's shared supernet weights.

Ray Tune runs the next trial of a study in the same worker process (``reuse_actors``), and every trial of a
study loads the same model, reads and tokenizes the same data, loads the same cached teacher, orders the same
supernet by importance and, with a shared supernet, reads the same weights. :func:`kept` keeps the last value
of each kind under a key of everything it was built from: a trial whose key matches skips the work, one whose
key differs rebuilds it (one value per kind, so a process holds one model, one prepared recipe and one
supernet state at most).

Nothing a trial changes is handed out from here: the supernet is built anew each trial and only *loads* the
kept state (a copy), the recipe's prepared data and the model's state are only read. The search re-seeds
torch after setup (:func:`trainers.pipeline.search_once`), so a trial's result does not depend on whether its
setup was kept or built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from nas.files import sha256_json

T = TypeVar("T")
_KEPT: dict[str, tuple[str, Any]] = {}


def kept(kind: str, key: Mapping[str, Any], build: Callable[[], T]) -> tuple[T, bool]:
    """The value of ``kind`` built from ``key``: the kept one when the key matches, else ``build()`` (kept next).

    Returns:
        ``(value, reused)``.

    Example:
        >>> kept("demo", {"n": 1}, lambda: [1])
        ([1], False)
        >>> kept("demo", {"n": 1}, lambda: [2])
        ([1], True)
    """
    digest = sha256_json(dict(key))
    hit = _KEPT.get(kind)
    if hit is not None and hit[0] == digest:
        return hit[1], True
    _KEPT.pop(kind, None)  # the old value goes before the new one is built
    value = build()
    _KEPT[kind] = (digest, value)
    return value, False


def clear() -> None:
    """Forget everything kept (the next trial builds its setup from scratch)."""
    _KEPT.clear()

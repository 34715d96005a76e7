"""nas: neural architecture search for compressing pretrained transformers.

``import nas`` is light: it loads the search-space and supernet API (torch),
never Ray, ONNX or onnxruntime, which are imported where they are used. The
service's entry points load on first use:

* :func:`nas.run_search` – launch or resume a search (``nas search``);
* :func:`nas.load_front`, :func:`nas.pick_trial`, :func:`nas.list_studies` – read a study (``nas pareto``, ``nas studies``);
* :func:`nas.export_trial` – export a chosen trial, verified (``nas export``).

Example:
    >>> import nas
    >>> space = nas.load_space("tiny-bert")
    >>> net = nas.Supernet.build(space)
    >>> sub = nas.derive(net, space.smallest())
    >>> sub.size().params > 0
    True
    >>> callable(nas.run_search) and callable(nas.export_trial)
    True
"""

from typing import Any

from nas.version import __version__  # noqa: E402

from nas.errors import NASError  # noqa: E402
from nas.spaces import SearchSpace, format_arch, list_spaces, load_space, parse_arch  # noqa: E402
from nas.supernet import Subnet, Supernet, derive, load_subnet  # noqa: E402

_LAZY = {
    "run_search": "nas.search.api", "load_front": "nas.search.api", "load_points": "nas.search.api",
    "pick_trial": "nas.search.api", "list_studies": "nas.search.api", "load_experiment": "nas.search.api",
    "fetch_subnet": "nas.search.api", "export_trial": "nas.export.export", "reverify": "nas.export.export",
}


def __getattr__(name: str) -> Any:
    """The service's entry points, imported on first use (keeps ``import nas`` light)."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nas' has no attribute {name!r}")


__all__ = [
    "NASError", "SearchSpace", "Subnet", "Supernet", "__version__", "derive", "export_trial", "fetch_subnet",
    "format_arch",
    "list_spaces", "list_studies", "load_experiment", "load_front", "load_points", "load_space", "load_subnet",
    "parse_arch", "pick_trial", "reverify", "run_search",
]

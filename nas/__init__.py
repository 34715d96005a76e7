"""nas: neural architecture search for compressing pretrained transformers.

``import nas`` is light: it loads the search-space and supernet API (torch),
never Ray, ONNX or onnxruntime, which are imported where they are used.

Example:
    >>> import nas
    >>> space = nas.load_space("tiny-bert")
    >>> net = nas.Supernet.build(space)
    >>> sub = nas.derive(net, space.smallest())
    >>> sub.size().params > 0
    True
"""

__version__ = "0.1.0"

from nas.errors import NASError  # noqa: E402
from nas.spaces import SearchSpace, format_arch, list_spaces, load_space, parse_arch  # noqa: E402
from nas.supernet import Subnet, Supernet, derive, load_subnet  # noqa: E402

__all__ = [
    "NASError", "SearchSpace", "Subnet", "Supernet", "__version__", "derive", "format_arch",
    "list_spaces", "load_space", "load_subnet", "parse_arch",
]

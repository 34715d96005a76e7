"""Search spaces: choices keyed by stable labels, loaded from YAML or derived from a model config."""

from nas.spaces.choice import KINDS, SUPPORTED_BITS, Choice, layer_label, parse_label
from nas.spaces.loader import list_spaces, load_space, space_from_yaml_dict
from nas.spaces.space import Arch, SearchSpace, space_from_dims
from nas.spaces.summary import format_arch, parse_arch

__all__ = [
    "KINDS", "SUPPORTED_BITS", "Arch", "Choice", "SearchSpace", "format_arch", "layer_label",
    "list_spaces", "load_space", "parse_arch", "parse_label", "space_from_dims", "space_from_yaml_dict",
]

"""Spaces as data: YAML files in ``search_spaces/`` parsed once into a :class:`SearchSpace`.

A space file::

    name: minilm-l6                 # required
    model: minilm-l6                # required: a model source (nas.models.sources) or HF dir
    family: bert                    # optional: checked against the model's family
    description: ...
    heads: [12, 10, 8, 6, 4, 2]     # head counts per layer (or head_fractions: [1, .5])
    ffn: [1536, 1024, 512]          # FFN widths per layer  (or ffn_fractions: [...])
    bits: [32, 16, 8, 4]            # weight bits of attention and FFN linears
    embed_bits: [32, 16, 8]         # weight bits of the embedding tables
    skippable: all                  # all | none | [layer indices that may be skipped]
    overrides:                      # options of single labels
      layer0.keep: [1]

Omitted widths are derived from the model's config (fractions 1, ¾, ½, ¼).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from nas.errors import ModelError, SpaceError
from nas.files import read_utf8
from nas.models.sources import source_dims
from nas.spaces.choice import layer_label
from nas.spaces.space import DEFAULT_FRACTIONS, SearchSpace, space_from_dims

FIELDS = {
    "name", "model", "family", "description", "heads", "head_fractions", "ffn", "ffn_fractions",
    "bits", "embed_bits", "skippable", "overrides",
}


def list_spaces() -> list[str]:
    """Names of the spaces shipped in ``search_spaces/``."""
    root = resources.files("search_spaces")
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A shipped space by name, or a YAML file by path.

    Raises:
        SpaceError: unknown name, malformed YAML, unknown or invalid field.
    """
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise SpaceError(f"{p}: no such space file")
        where = str(p)
        text = read_utf8(p, SpaceError, "the space file")
    else:
        res = resources.files("search_spaces") / f"{name_or_path}.yaml"
        if not res.is_file():
            raise SpaceError(f"space: unknown space {str(name_or_path)!r}; shipped: {', '.join(list_spaces())}")
        text, where = res.read_text(), f"search_spaces/{name_or_path}.yaml"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpaceError(f"{where}: malformed YAML: {str(e).splitlines()[0]}") from None
    return space_from_yaml_dict(data, where=where)


def _int_list(where: str, field: str, v: Any, *, allow_float: bool = False) -> list:
    if not isinstance(v, list):
        raise SpaceError(f"{where}: {field}: expected a list, got {type(v).__name__}")
    if not v:
        raise SpaceError(f"{where}: {field}: empty choice list")
    ok = (int, float) if allow_float else (int,)
    for x in v:
        if isinstance(x, bool) or not isinstance(x, ok):
            raise SpaceError(f"{where}: {field}: {x!r} is not a number")
    return v


def space_from_yaml_dict(data: Any, *, where: str = "<space>") -> SearchSpace:
    if not isinstance(data, dict):
        raise SpaceError(f"{where}: expected a mapping of fields, got {type(data).__name__}")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise SpaceError(f"{where}: unknown field {unknown[0]!r}; allowed: {', '.join(sorted(FIELDS))}")
    for req in ("name", "model"):
        if not isinstance(data.get(req), str) or not data[req]:
            raise SpaceError(f"{where}: {req}: required string field")
    try:
        dims = source_dims(data["model"])
    except ModelError as e:
        raise SpaceError(f"{where}: {e}") from None
    if "family" in data and data["family"] != dims.family:
        from nas.models.families import get_family

        try:
            get_family(str(data["family"]))
        except ModelError as e:
            raise SpaceError(f"{where}: {e}") from None
        raise SpaceError(f"{where}: family: {data['family']!r} but model {data['model']!r} is {dims.family!r}")

    overrides: dict[str, list[int]] = {}
    for field in ("heads", "ffn"):
        if field in data:
            vals = _int_list(where, field, data[field])
            for i in range(dims.num_layers):
                overrides[layer_label(i, field)] = vals
    raw_over = data.get("overrides") or {}
    if not isinstance(raw_over, dict):
        raise SpaceError(f"{where}: overrides: expected a mapping label -> list")
    for label, vals in raw_over.items():
        overrides[str(label)] = _int_list(where, f"overrides.{label}", vals)

    skippable = data.get("skippable", "all")
    if skippable == "all":
        skip = None
    elif skippable == "none":
        skip = []
    elif isinstance(skippable, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in skippable):
        bad = [i for i in skippable if not 0 <= i < dims.num_layers]
        if bad:
            raise SpaceError(f"{where}: skippable: layer {bad[0]} does not exist (model has {dims.num_layers})")
        skip = skippable
    else:
        raise SpaceError(f"{where}: skippable: expected all, none or a list of layer indices")

    # Checked outside the try below: their messages already start with ``where``.
    head_fractions = _int_list(where, "head_fractions", data.get("head_fractions", list(DEFAULT_FRACTIONS)),
                               allow_float=True)
    ffn_fractions = _int_list(where, "ffn_fractions", data.get("ffn_fractions", list(DEFAULT_FRACTIONS)),
                              allow_float=True)
    bits = _int_list(where, "bits", data.get("bits", [32, 16, 8, 4]))
    embed_bits = _int_list(where, "embed_bits", data.get("embed_bits", [32, 16, 8]))
    try:
        return space_from_dims(
            dims,
            name=data["name"],
            model=data["model"],
            description=str(data.get("description", "")),
            head_fractions=head_fractions,
            ffn_fractions=ffn_fractions,
            bits=bits,
            embed_bits=embed_bits,
            skippable=skip,
            overrides=overrides,
        )
    except SpaceError as e:
        raise SpaceError(f"{where}: {e}") from None

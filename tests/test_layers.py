"""The import graph points down the layers: read from every module's source, imports inside functions included.

Layers of ``nas``, lowest first (a module may import its own layer or a lower one):

    errors, files, version  →  quant  →  models  →  spaces  →  supernet  →  runtime
    →  latency  →  tasks  →  search  →  export  →  commands, cli

``nas/__init__.py`` is the facade above them all (it loads the service lazily).
``trainers`` sits above ``nas``, never below: nothing in ``nas`` imports it, nor
``experiments`` or ``tests``. Studies under ``experiments/studies`` use public names only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = (
    ("nas.errors", "nas.files", "nas.version"),
    ("nas.quant",),
    ("nas.models",),
    ("nas.spaces",),
    ("nas.supernet",),
    ("nas.runtime",),
    ("nas.latency",),
    ("nas.tasks",),
    ("nas.search",),
    ("nas.export",),
    ("nas.commands", "nas.cli"),
)
FACADE = "nas"
OUTSIDE = ("trainers", "experiments", "tests")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """``(line, module, names)`` of every import in the file, at any depth, relative ones resolved."""
    mod = module_name(path)
    package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            out.append((node.lineno, target, tuple(a.name for a in node.names)))
    return out


def layer_of(mod: str) -> int | None:
    """The layer index of a ``nas`` module (``None``: the facade or not ``nas``)."""
    for i, names in enumerate(LAYERS):
        if any(mod == n or mod.startswith(n + ".") for n in names):
            return i
    return None


def violations(paths) -> list[str]:
    bad = []
    for path in paths:
        mod = module_name(path)
        here = layer_of(mod)
        for line, target, names in imports_of(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            top = target.split(".")[0]
            if mod.startswith("nas") and top in OUTSIDE:
                bad.append(f"{where}: {mod} imports {target} (nas never imports {top})")
            if top != "nas" or here is None:
                continue
            if target == FACADE:  # `from nas import X`: only the facade may be above everything
                bad.append(f"{where}: {mod} imports the facade `nas` ({', '.join(names)}); import the defining module")
                continue
            there = layer_of(target)
            if there is None:
                bad.append(f"{where}: {mod} imports {target}, which is in no layer (add it to LAYERS)")
            elif there > here:
                bad.append(f"{where}: {mod} (layer {here}) imports {target} (layer {there}), a higher layer")
    return bad


def nas_modules() -> list[Path]:
    return sorted((ROOT / "nas").rglob("*.py"))


def test_every_nas_module_has_a_layer():
    missing = [module_name(p) for p in nas_modules() if module_name(p) != FACADE and layer_of(module_name(p)) is None]
    assert not missing, missing


def test_imports_point_down_the_layers():
    bad = violations(nas_modules())
    assert not bad, "\n".join(bad)


def test_studies_use_public_names_only():
    bad = []
    for path in sorted((ROOT / "experiments" / "studies").rglob("*.py")):
        for line, target, names in imports_of(path):
            top = target.split(".")[0]
            private = [n for n in names if n.startswith("_")] + [p for p in target.split(".") if p.startswith("_")
                                                                 and p != "__future__"]
            if top == "tests" or (top in ("nas", "trainers") and private):
                bad.append(f"{path.relative_to(ROOT)}:{line}: imports {target} {', '.join(names)}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("source, expected", [
    # a function-level import from a lower layer to a higher one is found
    ("def f():\n    from nas.export.export import export_trial\n", "nas.latency.x (layer 6) imports nas.export.export"),
    ("from nas.search import api\n", "imports nas.search"),
    ("import trainers.config\n", "nas never imports trainers"),
    ("from nas import Supernet\n", "imports the facade"),
    ("from ..export import verify\n", "imports nas.export"),
])
def test_the_checker_finds_upward_imports(tmp_path, monkeypatch, source, expected):
    fake = ROOT / "nas" / "latency" / "x.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source if self == fake else Path.read_bytes(self).decode())
    bad = violations([fake])
    assert any(expected in b for b in bad), bad


def test_a_downward_import_passes(monkeypatch):
    fake = ROOT / "nas" / "export" / "x.py"
    source = "from nas.latency import load_table\nfrom ..runtime import onnx\nimport numpy\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source if self == fake else Path.read_bytes(self).decode())
    assert violations([fake]) == []

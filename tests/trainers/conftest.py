"""Fixtures: hand-made latency tables (JSON) and a small synthetic WordNet ``data.noun``."""

import json
import random

import pytest

from nas.latency.table import required_keys
from nas.spaces import load_space


def table_ms(key: str) -> float:
    """Hand-checkable latencies: attn h·b/32, ffn w/16·b/32, embed b/32, rest and overhead 0.5 ms.

    For tiny-bert (4 heads, FFN 64) the full model costs 0.5 + 0.5 + 1 + 2·(4 + 4) = 18 ms.
    """
    if key in ("rest", "overhead"):
        return 0.5
    kind, _, rest = key.partition(":")
    f = {k: int(v) for k, v in (p.split("=") for p in rest.split(":"))}
    b = f["bits"] / 32
    if kind == "attn":
        return f["heads"] * b
    if kind == "ffn":
        return f["width"] / 16 * b
    return b


def write_table(space, path, ms=table_ms):
    entries = {k: {"median_ms": ms(k), "iqr_ms": 0.0, "n": 1} for k in required_keys(space)}
    doc = {
        "schema": 1, "space": {"name": space.name, "hash": space.hash}, "device": {"cpu": "test", "fingerprint": "t"},
        "runtime": {"name": "hand", "version": "0", "provider": "none"}, "threads": 1, "batch": 1, "seq": 16,
        "protocol": {}, "entries": entries, "calibration": {}, "created": "",
    }
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.fixture
def tiny_table(tmp_path):
    def make(name="tiny-bert"):
        return write_table(load_space(name), tmp_path / f"{name}.json")

    return make


WORDS = {  # lexicographer file → a few words that make its glosses separable
    5: ["animal", "fur", "tail", "mammal", "bird", "wing", "hunts", "species"],
    20: ["plant", "leaf", "green", "root", "flower", "tree", "seed", "grows"],
    6: ["device", "tool", "metal", "machine", "used", "built", "handle", "engine"],
    18: ["person", "who", "someone", "worker", "man", "woman", "expert", "leader"],
}
FILLER = ["a", "the", "of", "with", "small", "large", "kind", "usually", "found", "in"]


def write_wordnet(folder, n=240, seed=0):
    """A ``data.noun`` with a license header and ``n`` synsets of 4 classes."""
    rng = random.Random(seed)
    lines = ["  1 This software and database is being provided to you, the LICENSEE, by  ", "  2 Princeton  "]
    lexes = sorted(WORDS)
    for i in range(n):
        lex = lexes[i % len(lexes)]
        words = rng.sample(WORDS[lex], 3) + rng.sample(FILLER, 3)
        rng.shuffle(words)
        lines.append(f"{10_000_000 + 137 * i:08d} {lex:02d} n 01 thing{i} 0 000 | {' '.join(words)}  ")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.noun").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def wordnet_slice(tmp_path, monkeypatch):
    folder = write_wordnet(tmp_path / "wordnet")
    monkeypatch.setenv("NAS_WORDNET_DIR", str(folder))
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    return folder


@pytest.fixture
def definitions(tmp_path, monkeypatch):
    """A small hand-made WordNet with glosses of all four parts of speech (the decoder's task)."""
    from tests.tasks.fixtures import write_definitions

    folder = write_definitions(tmp_path / "wordnet", extra=50)
    monkeypatch.setenv("NAS_WORDNET_DIR", str(folder))
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    return folder

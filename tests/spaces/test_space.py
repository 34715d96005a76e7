"""Spaces: shipped YAML, derivation from configs, labels, and every bad-input case."""

import random

import pytest

from nas.errors import ArchError, SpaceError
from nas.spaces import format_arch, list_spaces, load_space, parse_arch, space_from_dims
from nas.models import source_dims


def test_shipped_spaces():
    assert {"minilm-l6", "tiny-bert", "tiny-llama"} <= set(list_spaces())
    s = load_space("minilm-l6")
    assert s.dims.num_layers == 6 and len(s) == 1 + 6 * 5
    assert s["layer3.heads"].options == (12, 10, 8, 6, 4, 2)
    assert s["layer3.ffn.bits"].options == (32, 16, 8, 4)
    assert s["layer0.keep"].options == (1, 0)
    assert s.full()["layer5.ffn"] == 1536


def test_hash_depends_on_choices_only():
    a = load_space("tiny-bert")
    b = space_from_dims(a.dims, name="other-name", model="tiny-bert", head_fractions=(1, 0.5, 0.25),
                        ffn_fractions=(1, 0.5, 0.25), embed_bits=(32, 8))
    assert a.hash == b.hash
    c = space_from_dims(a.dims, name="x", model="tiny-bert")
    assert c.hash != a.hash


def test_gqa_heads_in_whole_groups():
    s = space_from_dims(source_dims("tiny-llama"), name="t", model="tiny-llama")
    assert all(h % 2 == 0 for h in s["layer0.heads"].options)


def test_summary_round_trip():
    for name in ("tiny-bert", "tiny-llama", "minilm-l6"):
        s = load_space(name)
        rng = random.Random(1)
        for _ in range(20):
            a = s.sample(rng)
            text = format_arch(s, a)
            assert format_arch(s, parse_arch(s, text)) == text
    s = load_space("minilm-l6")
    assert format_arch(s, s.full()).startswith("L0,1,2,3,4,5 H12,12,12,12,12,12")


def test_validate_names_the_label():
    s = load_space("tiny-bert")
    a = s.full()
    with pytest.raises(ArchError, match="layer1.heads"):
        s.validate({**a, "layer1.heads": 3})
    with pytest.raises(ArchError, match="layer9.ffn"):
        s.validate({**a, "layer9.ffn": 64})
    del a["embed.bits"]
    with pytest.raises(ArchError, match="embed.bits"):
        s.validate(a)
    with pytest.raises(ArchError, match="skips every layer"):
        s.validate({**s.full(), "layer0.keep": 0, "layer1.keep": 0})


def write(tmp_path, text):
    p = tmp_path / "space.yaml"
    p.write_text(text)
    return p


BASE = "name: t\nmodel: tiny-bert\n"


@pytest.mark.parametrize(
    "extra, match",
    [
        ("heads: []\n", "heads: empty choice list"),
        ("ffn: [128, 64]\n", "FFN width 128 outside 1..64"),
        ("heads: [5]\n", "5 heads outside 1..4"),
        ("bits: [32, 3]\n", "unsupported bit-width"),
        ("hedas: [4]\n", "unknown field 'hedas'"),
        ("family: gpt2\n", "unknown model family"),
        ("family: llama\n", "family: 'llama' but model 'tiny-bert' is 'bert'"),
        ("overrides:\n  layer7.heads: [4]\n", "overrides.layer7.heads"),
        ("skippable: [0, 5]\n", "skippable: layer 5"),
        ("skippable: none\noverrides:\n  layer0.keep: [0]\n  layer1.keep: [0]\n", "every layer"),
    ],
)
def test_bad_yaml_fields(tmp_path, extra, match):
    with pytest.raises(SpaceError, match=match):
        load_space(write(tmp_path, BASE + extra))


def test_gqa_violation(tmp_path):
    with pytest.raises(SpaceError, match="layer0.heads: 3 heads do not fill whole KV groups of 2"):
        load_space(write(tmp_path, "name: t\nmodel: tiny-llama\nheads: [4, 3]\n"))


def test_malformed_yaml_and_unknowns(tmp_path):
    with pytest.raises(SpaceError, match="malformed YAML"):
        load_space(write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(SpaceError, match="model: required"):
        load_space(write(tmp_path, "name: t\n"))
    with pytest.raises(SpaceError, match="unknown model source"):
        load_space(write(tmp_path, "name: t\nmodel: nope\n"))
    with pytest.raises(SpaceError, match="unknown space 'nope'"):
        load_space("nope")


def test_dict_round_trip():
    from nas.spaces import SearchSpace

    s = load_space("tiny-llama")
    assert SearchSpace.from_dict(s.to_dict()) == s


@pytest.mark.parametrize("extra, message", [
    ("bits: x\n", "bits: expected a list, got str"),
    ("head_fractions: [a]\n", "head_fractions: 'a' is not a number"),
    ("bits: [32, 3]\n", "layer0.attn.bits: unsupported bit-width(s) [3]; supported: [32, 16, 8, 4]"),
])
def test_space_errors_name_the_file_once(tmp_path, extra, message):
    p = write(tmp_path, BASE + extra)
    with pytest.raises(SpaceError) as e:
        load_space(p)
    assert str(e.value) == f"{p}: {message}"


def test_non_utf8_space_file(tmp_path):
    p = tmp_path / "space.yaml"
    p.write_bytes((BASE + "description: café\n").encode("latin-1"))
    with pytest.raises(SpaceError) as e:
        load_space(p)
    assert str(e.value) == f"{p}: not UTF-8 text (byte 41: invalid continuation byte); save it as UTF-8"

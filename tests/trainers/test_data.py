import pytest

from nas.errors import DataError
from nas.tasks.wordnet import CLASSES, is_arch_example, load_wordnet_nouns, parse_line, split_of

LINE = ("00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 ~ 00002137 n 0000 | that which is perceived or known "
        "or inferred to have its own distinct existence (living or nonliving)  ")


def test_parse_line():
    ex = parse_line(LINE)
    assert ex.offset == 1740 and ex.label == 0 and CLASSES[ex.label] == "noun.Tops"
    assert ex.text.startswith("that which is perceived") and ex.text.endswith("nonliving)")
    assert parse_line("  1 This software and database is being provided  ") is None
    assert parse_line("") is None
    assert len(CLASSES) == 26 and CLASSES[-1] == "noun.time"
    assert parse_line(LINE.replace(" 03 n", " 28 n")).label == 25


@pytest.mark.parametrize("bad", [LINE.replace(" 03 n", " 29 n"), LINE.split("|")[0], "xyz 03 n | gloss"])
def test_malformed_lines_are_data_errors(bad):
    with pytest.raises(DataError):
        parse_line(bad)


def test_splits_are_deterministic_disjoint_and_roughly_80_10_10(wordnet_slice):
    a, b = load_wordnet_nouns(), load_wordnet_nouns()
    assert a == b
    offsets = [{e.offset for e in s} for s in (a.train, a.val, a.test)]
    assert not (offsets[0] & offsets[1] or offsets[0] & offsets[2] or offsets[1] & offsets[2])
    assert sum(map(len, offsets)) == 240
    assert 160 <= len(a.train) <= 220
    assert all(split_of(e.offset) == "test" for e in a.test)
    arch = sum(is_arch_example(e.offset) for e in a.train) / len(a.train)
    assert 0.1 < arch < 0.3


def test_missing_wordnet_names_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_WORDNET_DIR", str(tmp_path))
    with pytest.raises(DataError, match="apt-get install wordnet-base"):
        load_wordnet_nouns()

"""WordNet definitions of four parts of speech: keys, splits and the multiple-choice items, on a hand-made snippet."""

import pytest

from nas.errors import DataError
from nas.tasks.definitions import PROMPT, Definition, answered, choice_item, distill_texts, load_definitions
from nas.tasks.wordnet import parse_synset, split_of
from tests.tasks.fixtures import SNIPPET

ANIMALS = {"dog", "domestic dog", "cat", "horse", "cow", "owl", "Owl"}
FOOD = {"bread", "cheese", "soup", "apple pie"}


def by_key(data):
    return {d.key: d for d in (*data.train, *data.val, *data.test)}


def test_parse_synset_reads_words_and_gloss():
    s = parse_synset(SNIPPET["verb"][0])
    assert (s.offset, s.lex, s.words) == (1001, 30, ("breathe", "respire"))
    assert s.gloss.startswith("draw air into") and s.gloss.endswith('"I can breathe better"')
    assert parse_synset(SNIPPET["adj"][0]).words == ("able",)  # the marker (a) is not part of the word
    assert parse_synset("  1 This software and database  ") is None
    with pytest.raises(DataError, match="malformed"):
        parse_synset("00001001 30 v 03 breathe 0 | too few words")


def test_keys_tell_the_four_files_apart_and_nouns_keep_their_offset(definitions_dir):
    data = by_key(load_definitions())
    assert {"1001", "verb:1001", "adj:1001", "adv:1001"} <= set(data)  # one offset, four synsets
    assert len(data) == sum(map(len, SNIPPET.values()))
    dog = data["1001"]
    assert (dog.pos, dog.lex, dog.word) == ("noun", 5, "dog")
    assert split_of(1001) == split_of("1001")  # a noun falls in the split wordnet-nouns gives it
    assert data["adv:1001"].word == "a cappella"


def test_definition_is_the_gloss_before_its_examples():
    d = Definition("x", "adj", 0, ("able",), '(usually followed by `to\') having the means; "able to swim"')
    assert d.definition == "(usually followed by `to') having the means"
    assert Definition("x", "noun", 5, ("owl",), "nocturnal bird of prey.").definition == "nocturnal bird of prey"
    assert Definition("x", "noun", 5, ("owl",), '"only an example"').definition == ""


def test_choice_items_draw_distractors_from_the_same_lexicographer_file(definitions_dir):
    data = load_definitions()
    assert data.pools[5] == ("cat", "cow", "dog", "horse", "owl")  # first words only
    for d in (*data.train, *data.val, *data.test):
        item = choice_item(d, data.pools[d.lex])
        if d.pos != "noun":
            continue
        same_file = ANIMALS if d.lex == 5 else FOOD
        assert item.prompt == PROMPT.format(definition=d.definition) and item.prompt.endswith(".\nWord:")
        assert item.choices[item.answer] == d.word and len(item.choices) == 4
        distractors = [w for k, w in enumerate(item.choices) if k != item.answer]
        assert set(distractors) <= same_file
        assert not {w.lower() for w in distractors} & {w.replace("_", " ").lower() for w in d.words}
        assert len({w.lower() for w in item.choices}) == 4
    # dog's item: dog and three of the four other animals, never a food
    dog = choice_item(by_key(data)["1001"], data.pools[5])
    assert dog.choices[dog.answer] == "dog" and set(dog.choices) - {"dog"} < {"cat", "horse", "cow", "owl"}


def test_choice_items_are_deterministic(definitions_dir, tmp_path, monkeypatch):
    a = [choice_item(d, load_definitions().pools[d.lex]) for d in by_key(load_definitions()).values()]
    b = [choice_item(d, load_definitions().pools[d.lex]) for d in by_key(load_definitions()).values()]
    assert a == b
    answers = {i.answer for i in a if i is not None}
    assert len(answers) > 1  # the true word's position varies
    # the verb file has 4 synsets: every verb item uses all the others as distractors
    verbs = [i for i in a if i is not None and i.key.startswith("verb:")]
    assert verbs and all(set(i.choices) == {"breathe", "sleep", "sneeze", "yawn"} for i in verbs)


def test_a_file_too_small_for_three_distractors_gives_no_item():
    d = Definition("x", "noun", 5, ("dog",), "a member of the genus Canis")
    assert choice_item(d, ("cat", "cow")) is None
    assert choice_item(d, ("cat", "Cat", "cow", "dog")) is None  # Cat is cat ignoring case, dog is the answer


def test_choice_items_cap_and_order(definitions_dir):
    data = load_definitions()
    items = data.choice_items("train", 3)
    assert len(items) == min(3, len(data.train))
    assert [i.key for i in items] == [d.key for d in data.train[: len(items)]]


def test_distill_texts_are_glosses_or_the_items_answered_one_per_definition(definitions_dir):
    data = load_definitions()
    defs = (*data.train, *data.val, *data.test)
    assert distill_texts(defs, data.pools, "glosses") == [d.gloss for d in defs]
    items = distill_texts(defs, data.pools, "items")
    assert len(items) == len(defs)  # aligned with the definitions (the search splits them by key)
    dog = items[defs.index(by_key(data)["1001"])]
    assert dog == PROMPT.format(definition=by_key(data)["1001"].definition) + " dog"
    for d, text in zip(defs, items):
        item = choice_item(d, data.pools[d.lex])
        assert text == (d.gloss if item is None else answered(item))
    lone = Definition("x", "noun", 5, ("dog",), "a member of the genus Canis")
    assert distill_texts([lone], {5: ("cat", "cow")}, "items") == [lone.gloss]  # no item: its gloss
    with pytest.raises(ValueError, match="distill_text"):
        distill_texts(defs, data.pools, "prompts")


def test_missing_file_names_it_and_the_install_hint(tmp_path, monkeypatch):
    (tmp_path / "data.noun").write_text(SNIPPET["noun"][0] + "\n")
    monkeypatch.setenv("NAS_WORDNET_DIR", str(tmp_path))
    with pytest.raises(DataError, match="data.verb not found.*apt-get install wordnet-base"):
        load_definitions()

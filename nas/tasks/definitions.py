"""WordNet 3.0 definitions of all four parts of speech, for language models.

Every synset of ``data.noun``, ``data.verb``, ``data.adj`` and ``data.adv``
(lines parsed by :func:`nas.tasks.wordnet.parse_synset`; files found by
:func:`~nas.tasks.wordnet.find_data_file`) is one :class:`Definition`. The four
files reuse offsets, so a synset's ``key`` is ``"<pos>:<offset>"`` — except a
noun's, which is its bare offset, so that a noun falls in the same split here
as in the ``wordnet-nouns`` task. Splits, their order and the search's
weight/architecture parts are the rules of :mod:`nas.tasks.wordnet`
(:func:`~nas.tasks.wordnet.split_of`, :func:`~nas.tasks.wordnet.hash_order`,
:func:`~nas.tasks.wordnet.is_arch_example`) applied to the key.

Two uses:

* **gloss text** (:attr:`Definition.gloss`, the whole text after ``|``: the
  definition and its quoted examples) — next-token distillation and held-out
  perplexity;
* **definition → word multiple choice** (:class:`ChoiceItem`, :func:`choice_item`):
  the prompt ``PROMPT.format(definition=...)``, i.e. ``Definition: {definition}.\\nWord:``,
  where the definition is the gloss before its first quoted example without a final
  period, and four candidate words: the synset's first word (``_`` read as a space)
  and three distractors, the first words of other synsets of the same
  lexicographer file (none of them a word of the item's synset, all distinct
  ignoring case), drawn by ``random.Random(stable_hash("choices", key))``; the
  true word's position is ``stable_hash("answer", key) mod 4``. Items are a
  function of the data files alone. A model is scored by the mean token
  log-likelihood of `` {word}`` after the prompt (:mod:`nas.tasks.lm_eval`);
  chance is 25 %.

Missing files raise :class:`~nas.errors.DataError` with the install hint.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nas.errors import DataError
from nas.tasks.wordnet import HINT, find_data_file, hash_order, parse_synset, split_of, stable_hash

POS_FILES = ("noun", "verb", "adj", "adv")
PROMPT = "Definition: {definition}.\nWord:"
DISTILL_TEXTS = ("glosses", "items")
"""What a decoder distils on: the synsets' ``glosses``, or their ``items`` answered (:func:`answered`)."""
NUM_CHOICES = 4


def _word(raw: str) -> str:
    return raw.replace("_", " ")


@dataclass(frozen=True)
class Definition:
    """One synset of any part of speech (see the module docstring for ``key``)."""

    key: str
    pos: str
    lex: int
    words: tuple[str, ...]
    gloss: str

    @property
    def word(self) -> str:
        """The synset's first word, compounds with spaces: the multiple-choice answer."""
        return _word(self.words[0])

    @property
    def definition(self) -> str:
        """The gloss before its first quoted example, without a trailing ``;`` or period."""
        text = re.split(r'[;:]?\s*"', self.gloss, maxsplit=1)[0]
        return text.strip().rstrip(";.").strip()


@dataclass(frozen=True)
class ChoiceItem:
    """A multiple-choice question: ``choices[answer]`` is the word the ``prompt`` defines."""

    key: str
    prompt: str
    choices: tuple[str, ...]
    answer: int


@dataclass(frozen=True)
class Definitions:
    """Train/val/test definitions (each ordered by hash) and the distractor pools.

    Attributes:
        pools: per lexicographer file, the distinct first words of its synsets (all
            splits), sorted: where distractors come from.
        source: the folder read.
    """

    train: tuple[Definition, ...]
    val: tuple[Definition, ...]
    test: tuple[Definition, ...]
    pools: Mapping[int, tuple[str, ...]] = field(repr=False)
    source: str = ""

    def split(self, name: str) -> tuple[Definition, ...]:
        if name not in ("train", "val", "test"):
            raise ValueError(f"split: expected train, val or test, got {name!r}")
        return getattr(self, name)

    def choice_items(self, split: str = "test", n: int | None = None) -> tuple[ChoiceItem, ...]:
        """The first ``n`` multiple-choice items of ``split`` (definitions without one are passed over)."""
        items: list[ChoiceItem] = []
        for d in self.split(split):
            if n is not None and len(items) >= n:
                break
            item = choice_item(d, self.pools[d.lex])
            if item is not None:
                items.append(item)
        return tuple(items)


def choice_item(d: Definition, pool: Sequence[str]) -> ChoiceItem | None:
    """The multiple-choice item of ``d`` with distractors from ``pool`` (``None`` without a definition
    or with fewer than three usable distractors); see the module docstring."""
    definition = d.definition
    if not definition:
        return None
    seen = {_word(w).lower() for w in d.words}
    candidates = []
    for w in pool:  # pool order, the first of words equal ignoring case
        if w.lower() not in seen:
            seen.add(w.lower())
            candidates.append(w)
    if len(candidates) < NUM_CHOICES - 1:
        return None
    picked = random.Random(stable_hash("choices", d.key)).sample(candidates, NUM_CHOICES - 1)
    answer = stable_hash("answer", d.key) % NUM_CHOICES
    picked.insert(answer, d.word)
    return ChoiceItem(key=d.key, prompt=PROMPT.format(definition=definition), choices=tuple(picked), answer=answer)


def _key(pos: str, offset: int) -> str:
    return str(offset) if pos == "noun" else f"{pos}:{offset}"


def load_definitions(folder: str | Path | None = None) -> Definitions:
    """Parse the four data files into deterministic splits and distractor pools.

    Args:
        folder: the WordNet folder; default where :func:`~nas.tasks.wordnet.find_data_file` looks.

    Raises:
        DataError: a missing or malformed file.
    """
    paths = []
    for pos in POS_FILES:
        if folder is None:
            paths.append(find_data_file(f"data.{pos}"))
        else:
            p = Path(folder) / f"data.{pos}"
            if not p.is_file():
                raise DataError(f"wordnet: {p} not found; {HINT}")
            paths.append(p)
    parts: dict[str, list[Definition]] = {"train": [], "val": [], "test": []}
    pools: dict[int, set[str]] = {}
    for pos, path in zip(POS_FILES, paths):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                s = parse_synset(line)
                if s is None or not s.words:
                    continue
                d = Definition(key=_key(pos, s.offset), pos=pos, lex=s.lex, words=s.words, gloss=s.gloss)
                parts[split_of(d.key)].append(d)
                pools.setdefault(s.lex, set()).add(d.word)
    if not any(parts.values()):
        raise DataError(f"wordnet: {paths[0].parent} holds no synsets")
    order = lambda d: hash_order(d.key)  # noqa: E731
    return Definitions(
        *(tuple(sorted(parts[s], key=order)) for s in ("train", "val", "test")),
        pools={lex: tuple(sorted(words)) for lex, words in pools.items()},
        source=str(paths[0].parent),
    )


def answered(item: ChoiceItem) -> str:
    """``item`` as its multiple choice scores the true answer: the prompt, a space, the true word."""
    return f"{item.prompt} {item.choices[item.answer]}"


def distill_texts(defs: Sequence[Definition], pools: Mapping[int, Sequence[str]], text: str) -> list[str]:
    """One training text per definition of ``defs`` (:data:`DISTILL_TEXTS`): its gloss, or its item
    :func:`answered` (the gloss where it makes no item: no definition, too few distractors).

    Raises:
        ValueError: an unknown ``text``.
    """
    if text not in DISTILL_TEXTS:
        raise ValueError(f"distill_text: unknown text {text!r}; known: {', '.join(DISTILL_TEXTS)}")
    if text == "glosses":
        return [d.gloss for d in defs]
    return [answered(it) if (it := choice_item(d, pools[d.lex])) is not None else d.gloss for d in defs]

"""WordNet 3.0 noun synsets: glosses labelled by their lexicographer file (and the parsing, file and hash rules
:mod:`nas.tasks.definitions` shares for all four parts of speech).

Each line of ``data.noun`` (after the license header, whose lines start with
two spaces) is one synset::

    00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 ... | that which is perceived ...

The first field is the synset offset, the second the lexicographer-file number
(03 ``noun.Tops`` … 28 ``noun.time``); the label is that number − 3 (26
classes, :data:`CLASSES`) and the text after ``|`` is the gloss.

Splits are deterministic: ``sha256("split:<offset>")`` mod 100 → train (< 80),
val (< 90) or test, so adding or removing synsets never moves another one; the
search divides the train split again 80/20 into weight and architecture parts
with a second salted hash. Within a split, examples are ordered by their hash,
so a cap (``max_train``) takes a fixed pseudo-random subset.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from nas.errors import DataError
from nas.files import sha256_file

CLASSES = (
    "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group", "noun.location",
    "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant", "noun.possession",
    "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
)
FIRST_LEX_FILE = 3
DEFAULT_DIRS = ("/usr/share/wordnet", "/usr/share/wordnet/dict", "/usr/local/share/wordnet")
HINT = "install it with `apt-get install wordnet-base` or set NAS_WORDNET_DIR to the folder holding data.noun"


@dataclass(frozen=True)
class Example:
    """One noun synset: ``offset`` (its stable id), ``label`` (0..25) and its gloss ``text``."""

    offset: int
    label: int
    text: str


@dataclass(frozen=True)
class Splits:
    """Train/val/test examples, each ordered by hash; ``source`` is the file read."""

    train: tuple[Example, ...]
    val: tuple[Example, ...]
    test: tuple[Example, ...]
    source: str


def stable_hash(salt: str, offset: int | str) -> int:
    """A 64-bit hash of ``"<salt>:<offset>"``: every split, order and draw here is a function of it."""
    return int.from_bytes(hashlib.sha256(f"{salt}:{offset}".encode()).digest()[:8], "big")


def find_data_file(name: str = "data.noun") -> Path:
    """Path of a WordNet data file (``data.noun``, ``data.verb``, ...): ``$NAS_WORDNET_DIR`` first, then the Debian locations.

    Raises:
        DataError: the file is not found (with the install hint).
    """
    env = os.environ.get("NAS_WORDNET_DIR")
    dirs = [env] if env else list(DEFAULT_DIRS)
    for d in dirs:
        p = Path(d) / name
        if p.is_file():
            return p
    where = f"NAS_WORDNET_DIR={env}" if env else ", ".join(DEFAULT_DIRS)
    raise DataError(f"wordnet: {name} not found in {where}; {HINT}")


def find_data_noun() -> Path:
    """Path of ``data.noun`` (:func:`find_data_file`)."""
    return find_data_file("data.noun")


@dataclass(frozen=True)
class Synset:
    """One line of any ``data.<pos>`` file.

    Attributes:
        offset: byte offset of the line (the synset's id within its file; the four files reuse offsets).
        lex: lexicographer-file number (0 ``adj.all``, 1 ``adj.pert``, 2 ``adv.all``, 3..28 nouns,
            29..43 verbs, 44 ``adj.ppl``).
        words: the synset's words in file order, as written (``_`` between the parts of a compound),
            an adjective's syntactic marker (``(a)``, ``(p)``, ``(ip)``) removed.
        gloss: the text after ``|`` (a definition, often followed by ``; "examples"``).
    """

    offset: int
    lex: int
    words: tuple[str, ...]
    gloss: str


def parse_synset(line: str) -> Synset | None:
    """One data-file line as a :class:`Synset` (``None`` for header and blank lines).

    The fields before ``|`` are ``offset lex_filenum ss_type w_cnt (word lex_id){w_cnt} ...``
    with ``w_cnt`` in hexadecimal.

    Raises:
        DataError: a synset line whose offset, lexicographer file, words or gloss is malformed.
    """
    if not line.strip() or line.startswith("  "):
        return None
    head, sep, gloss = line.partition("|")
    fields = head.split()
    try:
        offset, lex = int(fields[0]), int(fields[1])
        words = tuple(re.sub(r"\([a-z]+\)$", "", fields[4 + 2 * i]) for i in range(int(fields[3], 16)))
    except (IndexError, ValueError):
        raise DataError(f"wordnet: malformed synset line {line[:40]!r}") from None
    if not sep or not gloss.strip():
        raise DataError(f"wordnet: synset {offset:08d}: no gloss after '|'")
    return Synset(offset=offset, lex=lex, words=words, gloss=gloss.strip())


def parse_line(line: str) -> Example | None:
    """One ``data.noun`` line as an :class:`Example` (``None`` for header and blank lines).

    Raises:
        DataError: a synset line whose offset, lexicographer file or gloss is malformed.
    """
    s = parse_synset(line)
    if s is None:
        return None
    label = s.lex - FIRST_LEX_FILE
    if not 0 <= label < len(CLASSES):
        raise DataError(f"wordnet: synset {s.offset:08d}: lexicographer file {s.lex} is not a noun file (3..28)")
    return Example(offset=s.offset, label=label, text=s.gloss)


def split_of(offset: int | str) -> str:
    """``train``, ``val`` or ``test`` (80/10/10) from the hash of the offset (or of another stable key)."""
    b = stable_hash("split", offset) % 100
    return "train" if b < 80 else "val" if b < 90 else "test"


def is_arch_example(offset: int | str, fraction: float = 0.2) -> bool:
    """Whether a train example belongs to the architecture part of the search (FBNet 80/20)."""
    return (stable_hash("arch", offset) % 10_000) < fraction * 10_000


def hash_order(key: int | str) -> int:
    """The order of examples within a split (a cap takes a fixed pseudo-random subset)."""
    return stable_hash("order", key)


def load_wordnet_nouns(path: str | Path | None = None) -> Splits:
    """Parse ``data.noun`` into deterministic train/val/test splits.

    Args:
        path: the file; default :func:`find_data_noun`.

    Raises:
        DataError: missing or malformed file.
    """
    p = Path(path) if path is not None else find_data_noun()
    if not p.is_file():
        raise DataError(f"wordnet: {p} not found; {HINT}")
    parts: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    with open(p, encoding="utf-8", errors="replace") as f:
        for line in f:
            ex = parse_line(line)
            if ex is not None:
                parts[split_of(ex.offset)].append(ex)
    if not any(parts.values()):
        raise DataError(f"wordnet: {p} holds no synsets")
    key = lambda e: hash_order(e.offset)  # noqa: E731
    return Splits(*(tuple(sorted(parts[s], key=key)) for s in ("train", "val", "test")), source=str(p))


def file_fingerprint(path: str | Path) -> str:
    """sha256 (16 hex digits) and size of a data file: part of the teacher's cache key."""
    return f"{sha256_file(path)[:16]}-{Path(path).stat().st_size}"

"""Hand-made WordNet data files of all four parts of speech (``data.noun|verb|adj|adv``).

:data:`SNIPPET` is small enough to check by hand: two noun files (05 animals, 13 food),
one verb file (30 body), adjectives (00, with a syntactic marker) and adverbs (02).
:func:`write_definitions` adds ``extra`` synthetic synsets per file, enough to train on.
"""

import random

HEADER = ["  1 This software and database is being provided to you, the LICENSEE, by  ", "  2 Princeton  "]

SNIPPET = {
    "noun": [
        "00001001 05 n 02 dog 0 domestic_dog 0 000 | a member of the genus Canis; \"the dog barked all night\"",
        "00001002 05 n 01 cat 0 000 | feline mammal usually having thick soft fur",
        "00001003 05 n 01 horse 0 000 | solid-hoofed herbivorous quadruped domesticated since prehistoric times",
        "00001004 05 n 01 cow 0 000 | mature female of mammals of which the male is called a bull",
        "00001005 05 n 02 owl 0 Owl 1 000 | nocturnal bird of prey with a flat face.",
        "00001006 13 n 01 bread 0 000 | food made from dough of flour or meal and usually raised with yeast",
        "00001007 13 n 01 cheese 0 000 | a solid food prepared from the pressed curd of milk",
        "00001008 13 n 01 soup 0 000 | liquid food especially of meat or fish or vegetable stock",
        "00001009 13 n 01 apple_pie 0 000 | pie containing sliced apples and sugar",
    ],
    "verb": [
        "00001001 30 v 02 breathe 0 respire 0 000 | draw air into, and expel out of, the lungs; \"I can breathe better\"",
        "00001002 30 v 01 sleep 0 000 | be asleep",
        "00001003 30 v 01 sneeze 0 000 | exhale spasmodically, as when an irritant entered one's nose",
        "00001004 30 v 01 yawn 0 000 | utter a yawn, as from lack of oxygen or when one is tired",
    ],
    "adj": [
        "00001001 00 a 01 able(a) 0 000 | (usually followed by `to') having the necessary means or skill; \"able to swim\"",
        "00001002 00 a 01 unable 0 000 | not having the necessary means or skill",
        "00001003 00 s 01 abaxial 0 000 | facing away from the axis of an organ or organism",
        "00001004 00 a 01 adaxial 0 000 | nearest to or facing toward the axis of an organ or organism",
    ],
    "adv": [
        "00001001 02 r 01 a_cappella 0 000 | without musical accompaniment; \"they performed a cappella\"",
        "00001002 02 r 01 quickly 0 000 | with rapid movements",
        "00001003 02 r 01 slowly 0 000 | without speed",
        "00001004 02 r 01 loudly 0 000 | with relatively high volume",
    ],
}
LEX = {"noun": (5, 13), "verb": (30,), "adj": (0,), "adv": (2,)}
POS_LETTER = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}
VOCAB = ["a", "the", "of", "small", "large", "animal", "plant", "tool", "move", "quickly", "water", "light",
         "that", "which", "is", "used", "for", "making", "sound", "color", "food", "person", "place", "time"]


def write_definitions(folder, *, extra=0, seed=0):
    """Write :data:`SNIPPET` (plus ``extra`` synthetic synsets per file) as the four data files."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for pos, lines in SNIPPET.items():
        rows = list(lines)
        for i in range(extra):
            lex = LEX[pos][i % len(LEX[pos])]
            gloss = " ".join(rng.choice(VOCAB) for _ in range(rng.randint(4, 12)))
            rows.append(f"{20_000_000 + 131 * i:08d} {lex:02d} {POS_LETTER[pos]} 01 {pos}word{i} 0 000 | {gloss}")
        (folder / f"data.{pos}").write_text("\n".join(HEADER + [r + "  " for r in rows]) + "\n")
    return folder

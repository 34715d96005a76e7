"""Turn every decoder point into its deployed artifact and measure them all the same way.

* **Artifact**: what ``nas export`` ships for a decoder (:func:`nas.export.generation.write_generation_files`):
  the generation graph with the KV cache (past keys/values in, presents out), every MatMul at the
  point's bits, int4 ``MatMulNBits`` at the tables' accuracy level, and the tokenizer; the
  ``int8-dynamic`` baseline's graph re-quantized by ``quantize_dynamic`` alone (``MatMulInteger``).
* **Quality**: the deployed graph run by onnxruntime (:class:`nas.export.generation.ExportedDecoder`)
  scores definition → word multiple choice on the held-out items through its KV cache, as a chat request
  runs: each prompt prefilled alone, its four candidates then one batch after it
  (:func:`nas.tasks.lm_eval.choice_scores_cached`; :data:`SCORER`). Batching rows of different items
  instead (:func:`~nas.tasks.lm_eval.choice_scores`) gives the same scores for fp32 graphs (|Δ| < 1e-5)
  but not for quantized ones: onnxruntime's dynamic int8 quantizes activations per tensor, so a row's
  logits depend on the other rows and padding of its batch (up to 0.57 in a mean log-likelihood on the
  full SmolLM2 at int4, 60 items). The perplexity of held-out glosses is batched (16 per batch); a greedy
  answer to one fixed chat prompt goes into the JSON.
* **Latency**: every graph timed *interleaved* (:func:`nas.latency.protocol.measure`) in both phases
  with the KV cache: TTFT = one prefill call of ``prompt_tokens`` tokens (empty pasts), TPOT = one
  decode call of one token after ``context`` cached ones — the shapes of the two tables — at each
  thread count. At 1 thread (the tables') ``references`` of each table's calibration models run in the
  same rounds, for the reference-normalised fidelity (:mod:`nas.latency.reference`).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.studies.benchmark_smollm2_cpu.baselines import DYNAMIC
from experiments.studies.benchmark_smollm2_cpu.config import PHASES, Measure
from nas.models.dims import synthetic_id_high

SCORE_THREADS = 2
SCORER = "kv-cached: each prompt prefilled alone, its candidates one batch after it (lm_eval.choice_scores_cached)"


def export_point(candidate: Mapping[str, Any], folder: Path, *, accuracy_level: int | None,
                 calibration: tuple[Any, Any] | None = None) -> Path:
    """Write the point's deployed folder (fp32 graph dropped once quantized); returns the folder.

    The point's ``arch`` may differ from its saved subnet's in bits only (a baseline deployed at another
    precision): the saved weights are quantized at the point's bits, int4 ones on scales calibrated on
    ``calibration`` (ids, mask) when given (``int4_scales: calibrated``, as a trial's fine-tuning snaps them).
    """
    from nas.export.artifacts import FP32, QUANT
    from nas.export.generation import ACCURACY_LEVEL, write_generation_files
    from nas.supernet.derive import Subnet, load_subnet

    if (folder / QUANT).is_file():
        return folder
    saved = load_subnet(candidate["subnet_dir"])
    subnet = Subnet(saved.space, dict(candidate["arch"]), saved.model)
    if calibration is not None and subnet.arch != saved.arch:  # a saved subnet is already on its own grid
        from nas.supernet.calibrate import linear_inputs
        from trainers.finetune import snap_to_grid

        snap_to_grid(subnet, linear_inputs(subnet.model, *calibration))
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    level = ACCURACY_LEVEL if accuracy_level is None else accuracy_level
    write_generation_files(subnet, tmp, accuracy_level=level)
    if candidate.get("deploy") == DYNAMIC:  # onnxruntime alone: every 8-bit linear MatMulInteger
        from nas.runtime.decoder_onnx import decoder_bits_by_node
        from nas.runtime.quantize import quantize_onnx

        quantize_onnx(tmp / FP32, tmp / QUANT, {n: b for n, b in decoder_bits_by_node(subnet).items() if b < 32},
                      accuracy_level=level)
    if any(b < 32 for label, b in subnet.arch.items() if label.endswith(".bits")):
        (tmp / FP32).unlink()  # model.quant.onnx is the deployed graph; the fp32 one only costs disk
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def score_point(folder: Path, bench: Any, *, prompt: str, new_tokens: int) -> dict[str, Any]:
    """``{accuracy, perplexity, answer}`` of the deployed graph in ``folder`` (``answer`` None without a tokenizer)."""
    from nas.errors import ModelError
    from nas.export.generation import ExportedDecoder
    from nas.tasks.lm_eval import choice_scores_cached, correct_of, perplexity

    d = ExportedDecoder(folder, quant=True, threads=SCORE_THREADS)
    correct = correct_of(choice_scores_cached(d.session, bench.test), bench.test)
    out: dict[str, Any] = {"accuracy": float(correct.float().mean()),
                           "perplexity": perplexity(d.session.forward, bench.ppl_ids, bench.ppl_mask)}
    try:
        ids = d.encode(prompt, chat=bool(d.meta.get("chat_template")))
    except ModelError:
        out["answer"] = None
    else:
        g = d.generate(ids, new_tokens)
        out["answer"] = d.decode(g.new_ids[0])
    out["size_mb"] = (folder / "model.quant.onnx").stat().st_size / 1e6
    return out


def phase_feeds(session: Any, *, tokens: int, context: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Feeds of one generation-graph call read off the graph itself: ``tokens`` new ids after ``context`` cached
    (zero) ones — the shapes and id range (:func:`nas.models.dims.synthetic_id_high`) that
    :func:`nas.runtime.decoder_onnx.step_inputs` gives a table's entries."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, synthetic_id_high(vocab), size=(1, tokens), dtype=np.int64)
    past = [np.zeros((1, h, context, d), dtype=np.float32) for h, d in session.cache_shapes]
    return {"input_ids": ids, "attention_mask": np.ones((1, context + tokens), dtype=np.int64),
            **dict(zip(session.past_names, past))}


def phase_runners(path: Path, threads: int, m: Measure, vocab: int) -> dict[str, Callable[[], Any]]:
    """``{ttft_ms, tpot_ms}`` runners of one graph sharing one session (a prefill; one decode step)."""
    from nas.runtime.decoder_session import DecoderSession

    s = DecoderSession(path, threads=threads)
    feeds = {PHASES[0]: phase_feeds(s, tokens=m.prompt_tokens, context=0, vocab=vocab),
             PHASES[1]: phase_feeds(s, tokens=1, context=m.context, vocab=vocab)}
    return {b: (lambda f=f: s.session.run(None, f)) for b, f in feeds.items()}


def measure_phases(paths: Mapping[str, Path], *, tables: Mapping[str, Any], threads: Sequence[int], m: Measure,
                   clock_t1: str, vocab: int, log: Any = sys.stderr) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Every graph in both phases, interleaved, at each thread count.

    Returns:
        ``({key: {phase: {"t<T>": stats}}}, {phase: reference report at 1 thread}``
        (:func:`nas.latency.reference.reference_report`; empty for a table without calibration models).
    """
    from nas.latency.protocol import Protocol, measure
    from nas.latency.reference import reference_report, reference_runners

    out: dict[str, dict[str, Any]] = {k: {b: {} for b in PHASES} for k in paths}
    refs: dict[str, Any] = {}
    for t in threads:
        runners: dict[str, Callable[[], Any]] = {}
        for k, p in paths.items():
            for b, r in phase_runners(p, t, m, vocab).items():
                runners[f"{b}|{k}"] = r
        rows: dict[str, list[dict[str, Any]]] = {}
        if t == 1 and m.references > 0:
            for b, table in tables.items():
                if (table.calibration or {}).get("models"):
                    rr, rows[b] = reference_runners(table, count=m.references)
                    runners.update({f"{b}|{k}": r for k, r in rr.items()})
                    rows[b] = [{**r, "key": f"{b}|{r['key']}"} for r in rows[b]]
        print(f"measuring {len(paths)} graphs x {len(PHASES)} phases interleaved at {t} thread(s)"
              + (f" with {sum(map(len, rows.values()))} reference models" if rows else ""), file=log, flush=True)
        proto = Protocol(warmup=m.warmup, rounds=m.rounds, repeats=m.repeats, remeasure=0, max_noisy_fraction=1.0,
                         clock=clock_t1 if t == 1 else "wall")
        stats = measure(runners, proto, log=log)
        for key, st in stats.items():
            b, k = key.split("|", 1)
            if k in out:
                out[k][b][f"t{t}"] = st
        for b, r in rows.items():
            refs[b] = reference_report(r, stats)
        del runners
    return out, refs

"""``nas generate``: greedy text generation with an exported decoder's ONNX graph and its KV cache.

    nas generate DIR --prompt TEXT [--max-new-tokens N] [--chat] [--quant | --fp32] [--threads T] [-f table|json]
    nas generate DIR --ids 1,2,3 ...      token ids instead of text (exports whose model ships no tokenizer)

Prints the text, then per phase the time to first token (the prefill over the
prompt) and the milliseconds per output token (median and IQR over the decode
steps), then what export measured with the latency tables' protocol (the
manifest's ``latency``: TTFT at the prefill table's prompt length, TPOT after
the decode table's context, beside their predictions). ``-f json`` prints
``{text, tokens, prompt_tokens, ttft_ms, tpot_ms, tpot_ms_median, tpot_ms_iqr,
export_latency}`` (``tokens``: the generated ids; ``tpot_ms`` is the median). A prompt that
does not fit the model's context with ``--max-new-tokens`` is refused before
anything runs; so is a folder that is not a decoder export.
"""

from __future__ import annotations

import json

from nas.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate text with an exported decoder (ONNX, KV cache); prints TTFT and ms/token",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("directory", metavar="DIR", help="a folder written by nas export for a decoder trial")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="the prompt text")
    src.add_argument("--ids", metavar="I,J,...", help="the prompt as comma-separated token ids")
    p.add_argument("--max-new-tokens", type=int, default=64, metavar="N", help="tokens to generate at most (default 64)")
    p.add_argument("--chat", action="store_true", help="put the prompt in the tokenizer's chat template")
    graph = p.add_mutually_exclusive_group()
    graph.add_argument("--quant", dest="quant", action="store_true", default=True,
                       help="run model.quant.onnx, the searched bits (default)")
    graph.add_argument("--fp32", dest="quant", action="store_false", help="run the fp32 model.onnx")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    p.add_argument("-f", "--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_generate)


def _ids(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise ConfigError(f"ids: {text!r} is not a comma-separated list of token ids") from None


def cmd_generate(args) -> int:
    from nas.export.generation import ExportedDecoder

    if args.max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens: must be >= 1, got {args.max_new_tokens}")
    if args.threads < 1:
        raise ConfigError(f"threads: must be >= 1, got {args.threads}")
    model = ExportedDecoder(args.directory, quant=args.quant, threads=args.threads)
    if args.ids is not None:
        if args.chat:
            raise ConfigError("chat: --chat applies to --prompt TEXT, not --ids")
        ids = model.check_ids(_ids(args.ids))
    else:
        ids = model.encode(args.prompt, chat=args.chat)
    model.check_length(len(ids), args.max_new_tokens)  # before the session starts
    g = model.generate(ids, args.max_new_tokens)
    new = g.new_ids[0].tolist()
    text = model.decode(new) if model.meta.get("tokenizer") else None
    measured = _export_latency(args.directory)
    if args.format == "json":
        print(json.dumps({"text": text, "tokens": new, "prompt_tokens": len(ids), "ttft_ms": g.ttft_ms,
                          "tpot_ms": g.tpot_ms_median, "tpot_ms_median": g.tpot_ms_median,
                          "tpot_ms_iqr": g.tpot_ms_iqr, "export_latency": measured}, indent=1))
        return 0
    print(text if text is not None else " ".join(map(str, new)))
    print(f"prefill: {len(ids)} prompt tokens, time to first token {g.ttft_ms:.1f} ms")
    if g.step_ms:
        print(f"decode: {len(g.step_ms)} tokens, {g.tpot_ms_median:.2f} ms/token (median; IQR {g.tpot_ms_iqr:.2f})")
    else:
        print("decode: no decode step (one token generated)")
    for line in export_latency_lines(measured):
        print(line)
    return 0


def _export_latency(directory) -> dict:
    """The manifest's ``latency`` (what export measured per budget), or ``{}`` (an older export, no manifest)."""
    from nas.errors import ExportError
    from nas.export.manifest import read_manifest

    try:
        return dict(read_manifest(directory).get("latency") or {})
    except ExportError:
        return {}


def export_latency_lines(measured: dict) -> list[str]:
    """One line per budget export measured: the table's shape, the measurement (IQR) and the prediction."""
    lines = []
    for budget, m in measured.items():
        if m.get("measured_ms") is None:
            continue
        if "output_tokens" in m:
            shape = f"{m['output_tokens']} output tokens"
        elif m.get("phase") == "decode":
            shape = f"1 token after {m.get('context')} cached"
        else:
            shape = f"{m.get('seq')} prompt tokens"
        iqr = f" (IQR {m['iqr_ms']:.2f})" if m.get("iqr_ms") is not None else ""
        lines.append(f"at export, {budget} ({shape}, {m.get('threads', '?')} thread(s)): measured "
                     f"{m['measured_ms']:.2f} ms{iqr}, predicted {m['predicted_ms']:.2f} ms")
    return lines

"""A decoder's export folder for generation: what it holds beyond an encoder's, and reading it back.

Files a decoder (llama family) export writes in place of the encoder graphs::

    model.onnx          the fp32 generation graph (nas.runtime.decoder_onnx): input_ids, attention_mask and
                        past_k_{k}/past_v_{k} per kept layer in; logits and present_k_{k}/present_v_{k} out.
                        One graph for both phases: a prefill feeds empty pasts, a decode step one token.
    model.quant.onnx    the same graph, every MatMul at its searched bits (nas.runtime.quantize); the LM
                        head ``lm_head`` and the Gather ``embed.word`` both at ``embed.bits``; int4 nodes
                        are MatMulNBits at the table's accuracy_level (below; recorded per node in the manifest),
                        the layers' int8 nodes 8-bit MatMulNBits at level 4 (nas.runtime.decoder_onnx)
    generation.json     what ``nas generate`` reads: the graph's I/O names, KV heads per layer, the context,
                        bos/eos ids, the tokenizer folder and the MatMulNBits accuracy levels (int4's, int8's)
    tokenizer/          tokenizer.json, tokenizer_config.json, chat_template.jinja, generation_config.json,
                        copied from the model source's folder (absent when the source ships none, e.g. tiny-llama:
                        then ``nas generate`` refuses text prompts, with a ModelError, and takes ``--ids``)

**accuracy_level** (``MatMulNBits``' compute type) is the one the trial's latency
table priced int4 with (``nas lut build --accuracy-level``, 4 by default: int8
compute, activations quantized per block at run time, the faster on these CPUs),
so the shipped graph runs what the search paid for; :data:`ACCURACY_LEVEL` (1:
the int4 weights unpacked and multiplied in fp32, what the fake-quantized
subnet computes) when the table records none or no table is used. ``metric_quant``
then compares level 4's model with the fake-quantized subnet, whose int4 linears
see fp32 activations. Full SmolLM2, every linear int4, embedding and
LM head int8, 2-core AVX-512 VNNI EPYC, onnxruntime 1.32, 1 thread,
128-token prompt: level 4 9.8–10.4 ms/token vs 11.8–12.8 with level 1, time
to first token about 150 ms for both; but its next-token argmax agrees with
the fake-quantized subnet's on 86 % of positions (level 1: 100 %, mean
|Δ logit| 1.6e-4) and its definition→word accuracy is 2.5 points off (55.0 vs
52.5), failing the 1-point check that level 1 passes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, TextIO

from nas.errors import ConfigError, MissingDependencyError, ModelError

GENERATION_JSON = "generation.json"
GENERATION_SCHEMA = 1
TOKENIZER_DIR = "tokenizer"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "generation_config.json")
ACCURACY_LEVEL = 1


def _log(log: TextIO | None, msg: str) -> None:
    if log is not None:
        print(f"export: {msg}", file=log, flush=True)


def _token_ids(model_dir: Path | None) -> dict[str, Any]:
    """bos/eos/pad ids from the source's ``generation_config.json`` (then ``config.json``); ``None`` where unknown."""
    out: dict[str, Any] = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    if model_dir is None:
        return out
    for name in ("config.json", "generation_config.json"):  # the later file wins
        try:
            cfg = json.loads((model_dir / name).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        out.update({k: cfg[k] for k in out if cfg.get(k) is not None})
    return out


def write_generation_files(subnet: Any, directory: Path, *, accuracy_level: int = ACCURACY_LEVEL,
                           log: TextIO | None = None) -> dict[str, dict[str, Any]]:
    """Write ``model.onnx``, ``model.quant.onnx``, ``generation.json`` and ``tokenizer/`` of a decoder subnet.

    Returns:
        ``{node: {label, bits, applied, ops[, accuracy_level]}}`` for the manifest.
    """
    from nas.export.artifacts import FP32, QUANT, applied_formats, node_labels
    from nas.models.sources import load_model
    from nas.runtime.decoder_onnx import (LM_HEAD_NODE, LOGITS, decoder_bits_by_node, export_decoder_onnx,
                                          int8_nbits_nodes, past_names, present_names)
    from nas.runtime.quantize import INT8_NBITS_LEVEL, quantize_onnx

    model = subnet.model
    export_decoder_onnx(subnet, directory / FP32)
    labels = {**node_labels(subnet), LM_HEAD_NODE: "embed.bits"}
    bits = decoder_bits_by_node(subnet)
    chosen = {n: b for n, b in bits.items() if b < 32}
    if chosen:
        quantize_onnx(directory / FP32, directory / QUANT, chosen, accuracy_level=accuracy_level,
                      int8_nbits=int8_nbits_nodes(chosen))
    else:  # every node fp32: the same graph
        shutil.copyfile(directory / FP32, directory / QUANT)
    applied = applied_formats(directory / QUANT, sorted(labels))
    levels = _accuracy_levels(directory / QUANT)
    nodes = {n: {"label": labels[n], "bits": bits[n], **applied[n],
                 **({"accuracy_level": levels[n]} if n in levels else {})} for n in sorted(labels)}
    counts: dict[str, int] = {}
    for a in applied.values():
        counts[a["applied"]] = counts.get(a["applied"], 0) + 1
    _log(log, "onnx: fp32 generation graph written; quantized " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))

    source_dir = load_model(subnet.space.model).model_dir
    copied = []
    if source_dir is not None and (source_dir / "tokenizer.json").is_file():
        (directory / TOKENIZER_DIR).mkdir()
        for name in TOKENIZER_FILES:
            if (source_dir / name).is_file():
                shutil.copyfile(source_dir / name, directory / TOKENIZER_DIR / name)
                copied.append(name)
    _log(log, f"tokenizer: {', '.join(copied) if copied else f'none (model source {subnet.space.model!r} ships none)'}")
    n = len(model.layers)
    d = model.dims
    meta = {
        "schema": GENERATION_SCHEMA,
        "graph": {"merged": True, "inputs": ["input_ids", "attention_mask", *past_names(n)],
                  "outputs": [LOGITS, *present_names(n)]},
        "num_layers": n,
        "kv_heads": [ld.num_kv_heads(d) for ld in model.layer_dims],
        "head_dim": d.head_dim,
        "vocab_size": d.vocab_size,
        "max_positions": d.max_positions,
        **_token_ids(source_dir),
        "tokenizer": TOKENIZER_DIR if copied else None,
        "chat_template": "chat_template.jinja" in copied,
        "quant": {"file": QUANT, "matmulnbits_accuracy_level": accuracy_level,  # int4's
                  "int8_matmulnbits_accuracy_level": INT8_NBITS_LEVEL},  # the layers' int8 (int8_nbits_nodes)
    }
    (directory / GENERATION_JSON).write_text(json.dumps(meta, indent=1))
    return nodes


def _accuracy_levels(path: Path) -> dict[str, int]:
    """``{node: accuracy_level}`` of every ``MatMulNBits`` in the file (0, onnxruntime's default, when unset)."""
    import onnx

    out = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.op_type == "MatMulNBits":
            attrs = {a.name: a.i for a in node.attribute}
            out[node.name[:-3] if node.name.endswith(("_Q4", "_Q8")) else node.name] = int(attrs.get("accuracy_level", 0))
    return out


def read_generation(directory: str | Path) -> dict[str, Any]:
    """``generation.json`` of a decoder export folder.

    Raises:
        ModelError: the folder is not a decoder export (no or an unreadable ``generation.json``).
    """
    path = Path(directory) / GENERATION_JSON
    if not Path(directory).is_dir():
        raise ModelError(f"generate: {directory} is not a folder")
    if not path.is_file():
        raise ModelError(f"generate: {directory} is not a decoder export (no {GENERATION_JSON}; "
                         "encoder exports are not generated from)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"generate: {path} is unreadable: {e}") from None
    if meta.get("schema") != GENERATION_SCHEMA:
        raise ModelError(f"generate: {path}: unknown schema {meta.get('schema')!r}")
    return meta


class ExportedDecoder:
    """A decoder export folder, ready to generate text: its graph in onnxruntime and its tokenizer.

    Args:
        directory: a folder written by ``nas export`` for a decoder trial.
        quant: run ``model.quant.onnx`` (default) or the fp32 ``model.onnx``.
        threads: onnxruntime intra-op threads.

    Raises:
        ModelError: not a decoder export, or a graph file is missing.

    Example:
        >>> d = ExportedDecoder("smollm2-export")  # doctest: +SKIP
        >>> g = d.generate(d.encode("What is the capital of France?", chat=True), 32)  # doctest: +SKIP
        >>> d.decode(g.new_ids[0])  # doctest: +SKIP
        'The capital of France is Paris.'
    """

    def __init__(self, directory: str | Path, *, quant: bool = True, threads: int = 1) -> None:
        from nas.export.artifacts import FP32, QUANT

        self.directory = Path(directory)
        self.meta = read_generation(self.directory)
        path = self.directory / (QUANT if quant else FP32)
        if not path.is_file():
            raise ModelError(f"generate: {path} not found")
        self.path, self.threads = path, threads
        self._session: Any = None
        self._tok: Any = None

    @property
    def session(self) -> Any:
        """The graph's :class:`~nas.runtime.decoder_session.DecoderSession`, started on first use."""
        from nas.runtime.decoder_session import DecoderSession

        if self._session is None:
            self._session = DecoderSession(self.path, threads=self.threads,
                                           max_positions=int(self.meta["max_positions"]))
        return self._session

    @property
    def eos_token_id(self) -> int | None:
        eos = self.meta.get("eos_token_id")
        return eos[0] if isinstance(eos, list) else eos

    def tokenizer(self) -> Any:
        """The folder's ``tokenizers.Tokenizer``.

        Raises:
            ModelError: the export has no tokenizer (its model source shipped none).
        """
        if self._tok is None:
            if not self.meta.get("tokenizer"):
                raise ModelError(f"tokenizer: {self.directory} has none (its model source ships no tokenizer.json); "
                                 "pass token ids instead (nas generate --ids)")
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_file(str(self.directory / self.meta["tokenizer"] / "tokenizer.json"))
        return self._tok

    def chat_text(self, prompt: str) -> str:
        """``prompt`` as one user message in the tokenizer's chat template, with the assistant's turn opened."""
        if not self.meta.get("chat_template"):
            raise ModelError(f"chat: {self.directory} has no chat template")
        try:
            from jinja2.exceptions import TemplateError
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError:
            raise MissingDependencyError("chat: applying the chat template needs jinja2 (pip install jinja2)") from None

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        folder = self.directory / self.meta["tokenizer"]
        config = json.loads((folder / "tokenizer_config.json").read_text()) if (folder / "tokenizer_config.json").is_file() else {}
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)  # as transformers renders it
        env.globals["raise_exception"] = raise_exception
        template = env.from_string((folder / "chat_template.jinja").read_text())
        try:
            return template.render(messages=[{"role": "user", "content": prompt}], add_generation_prompt=True,
                                   bos_token=config.get("bos_token", ""), eos_token=config.get("eos_token", ""))
        except TemplateError as e:
            raise ModelError(f"chat: the chat template failed: {e}") from None

    def encode(self, prompt: str, *, chat: bool = False) -> list[int]:
        """Token ids of ``prompt`` (in the chat template with ``chat``), before any compute.

        Raises:
            ConfigError: the prompt is empty.
            ModelError: no tokenizer, or no chat template for ``chat``.
        """
        tok = self.tokenizer()
        ids = tok.encode(self.chat_text(prompt), add_special_tokens=False).ids if chat else tok.encode(prompt).ids
        if not ids:
            raise ConfigError("prompt: empty (no tokens)")
        return list(ids)

    def decode(self, ids: Any) -> str:
        return self.tokenizer().decode([int(i) for i in ids], skip_special_tokens=True)

    def check_ids(self, ids: list[int]) -> list[int]:
        """``ids`` when every one is in the vocabulary.

        Raises:
            ConfigError: an empty list or an id outside ``0 … vocab_size-1``.
        """
        vocab = int(self.meta["vocab_size"])
        if not ids:
            raise ConfigError("ids: empty (no tokens)")
        bad = [i for i in ids if not 0 <= i < vocab]
        if bad:
            raise ConfigError(f"ids: {bad[0]} is outside the vocabulary (0..{vocab - 1})")
        return ids

    def check_length(self, prompt_tokens: int, max_new_tokens: int) -> None:
        """Refuse, before any compute, a prompt plus new tokens longer than the model's context.

        Raises:
            ConfigError: naming both lengths and the context.
        """
        limit = int(self.meta["max_positions"])
        if prompt_tokens + max_new_tokens > limit:
            raise ConfigError(f"prompt: {prompt_tokens} tokens plus --max-new-tokens {max_new_tokens} exceed "
                              f"the model's context of {limit} positions")

    def generate(self, ids: list[int], max_new_tokens: int) -> Any:
        """Greedy generation of one prompt (:meth:`nas.runtime.decoder_session.DecoderSession.generate`)."""
        import torch

        self.check_length(len(ids), max_new_tokens)
        return self.session.generate(torch.tensor([ids], dtype=torch.long), max_new_tokens,
                                     eos_token_id=self.eos_token_id)

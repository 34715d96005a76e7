"""Greedy generation with an exported decoder graph (:mod:`nas.runtime.decoder_onnx`) in onnxruntime.

:class:`DecoderSession` runs one prefill over the prompt (empty pasts), then
one single-token decode step per new token, feeding each call's presents back
as the next call's pasts: the loop of :func:`nas.models.generate.greedy_generate`
(same argmax, same end-of-sequence rule), so fp32 graphs give the same tokens.
Each phase is timed: time to first token (the prefill and its argmax) and the
milliseconds of every decode step (one output token each).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nas.errors import ConfigError, ModelError
from nas.runtime.decoder_onnx import INPUTS, LOGITS
from nas.runtime.session import cpu_session


@dataclass(frozen=True)
class Generation:
    """Token ids of a greedy generation and the time of each phase.

    Attributes:
        ids: (B, T + n) the prompts followed by the ``n`` generated tokens.
        prompt_tokens: ``T``.
        ttft_ms: time to first token: the prefill over the prompt and its argmax.
        step_ms: one entry per decode step (per output token after the first).
    """

    ids: Tensor
    prompt_tokens: int
    ttft_ms: float
    step_ms: tuple[float, ...]

    @property
    def new_ids(self) -> Tensor:
        """(B, n) the generated tokens."""
        return self.ids[:, self.prompt_tokens:]

    @property
    def tpot_ms_median(self) -> float | None:
        """Median milliseconds per output token over the decode steps (``None`` without any)."""
        return float(np.median(self.step_ms)) if self.step_ms else None

    @property
    def tpot_ms_iqr(self) -> float | None:
        """Interquartile range of the decode steps' milliseconds (``None`` without any)."""
        if not self.step_ms:
            return None
        q1, q3 = np.percentile(self.step_ms, [25, 75])
        return float(q3 - q1)


class DecoderSession:
    """An onnxruntime CPU session of a generation graph, with its cache layout read from the graph.

    Args:
        path: ``model.onnx`` or ``model.quant.onnx`` of a decoder export.
        threads: intra-op threads (:func:`nas.runtime.session.cpu_session`).
        max_positions: the model's context; longer requests are refused before compute (``None``: unchecked).

    Raises:
        ModelError: the graph has not the inputs and outputs of a generation graph.

    Example:
        >>> s = DecoderSession("export/model.quant.onnx", max_positions=8192)  # doctest: +SKIP
        >>> g = s.generate(torch.tensor([[1, 2, 3]]), 16)  # doctest: +SKIP
        >>> g.new_ids, g.ttft_ms, g.tpot_ms_median  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, threads: int = 1, max_positions: int | None = None) -> None:
        self.path = Path(path)
        self.session = cpu_session(self.path, threads=threads)
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        if not set(INPUTS) <= set(inputs) or not outputs or outputs[0] != LOGITS:
            raise ModelError(f"decoder: {self.path.name} is not a generation graph "
                             f"(inputs {sorted(inputs)}, outputs {outputs[:3]})")
        self.past_names = [n for n in inputs if n.startswith("past_")]
        self.present_names = outputs[1:]
        if len(self.past_names) != len(self.present_names):
            raise ModelError(f"decoder: {self.path.name} has {len(self.past_names)} past inputs "
                             f"but {len(self.present_names)} present outputs")
        # (kv_heads, head_dim) of each past input; the batch and past axes are dynamic
        self.cache_shapes = [(int(inputs[n].shape[1]), int(inputs[n].shape[3])) for n in self.past_names]
        self.max_positions = max_positions

    @property
    def num_layers(self) -> int:
        return len(self.past_names) // 2

    def empty_past(self, batch: int) -> list[np.ndarray]:
        """Zero-length pasts for a prefill."""
        return [np.zeros((batch, h, 0, d), dtype=np.float32) for h, d in self.cache_shapes]

    def step(self, ids: np.ndarray, mask: np.ndarray, past: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One call: logits (B, T, V) of the new tokens ``ids`` and the presents. ``mask`` covers past and new tokens."""
        feeds = {"input_ids": ids, "attention_mask": mask, **dict(zip(self.past_names, past))}
        out = self.session.run(None, feeds)
        return out[0], out[1:]

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Logits (B, T, V) of whole sequences (a prefill): the ``forward(ids, mask)`` a task metric scores."""
        logits, _ = self.step(input_ids.numpy().astype(np.int64), attention_mask.numpy().astype(np.int64),
                              self.empty_past(int(input_ids.shape[0])))
        return torch.from_numpy(logits)

    def run(self, _outputs: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The encoder session's ``run`` for ``input_ids``/``attention_mask`` feeds: ``[logits]`` of a prefill."""
        ids = feeds["input_ids"]
        return [self.step(ids, feeds["attention_mask"], self.empty_past(ids.shape[0]))[0]]

    def generate(
        self,
        input_ids: Tensor,
        max_new_tokens: int,
        *,
        attention_mask: Tensor | None = None,
        eos_token_id: int | None = None,
    ) -> Generation:
        """The prompt followed by up to ``max_new_tokens`` argmax tokens, with the time of each phase.

        Args:
            input_ids: (B, T) prompts (rows of one length, or padded as in :mod:`nas.models.kv_cache`).
            max_new_tokens: tokens to generate at most.
            attention_mask: (B, T) mask of the prompts (default: all ones).
            eos_token_id: token that ends a row (``None``: always ``max_new_tokens``).

        Returns:
            A :class:`Generation`.

        Raises:
            ConfigError: the prompt is empty, ``max_new_tokens`` is not positive, or the
                prompt plus ``max_new_tokens`` exceed ``max_positions`` (before any compute).
        """
        b, t = input_ids.shape
        if t < 1:
            raise ConfigError("prompt: empty (no tokens)")
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens: must be ≥ 1, got {max_new_tokens}")
        if self.max_positions is not None and t + max_new_tokens > self.max_positions:
            raise ConfigError(f"max_positions: a {t}-token prompt plus {max_new_tokens} new tokens exceed "
                              f"the model's {self.max_positions} positions")
        ids = input_ids.numpy().astype(np.int64)
        mask = (np.ones_like(ids) if attention_mask is None else attention_mask.numpy().astype(np.int64))
        out = [ids]
        done = np.zeros(b, dtype=bool)
        start = time.perf_counter()
        logits, past = self.step(ids, mask, self.empty_past(b))
        nxt = logits[:, -1].argmax(-1)
        ttft = (time.perf_counter() - start) * 1e3
        steps: list[float] = []
        for step in range(max_new_tokens):
            if step:
                start = time.perf_counter()
                logits, past = self.step(nxt[:, None], mask, past)
                nxt = logits[:, -1].argmax(-1)
                steps.append((time.perf_counter() - start) * 1e3)
            if eos_token_id is not None:
                nxt = np.where(done, eos_token_id, nxt)
                done |= nxt == eos_token_id
            out.append(nxt[:, None].astype(np.int64))
            if step + 1 == max_new_tokens or bool(done.all()):
                break
            mask = np.concatenate((mask, np.ones((b, 1), dtype=np.int64)), axis=1)
        return Generation(torch.from_numpy(np.concatenate(out, axis=1)), t, ttft, tuple(steps))

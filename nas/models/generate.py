"""Greedy decoding with the KV cache (:mod:`nas.models.kv_cache`): a pure function of the model and the prompt."""

from __future__ import annotations

import torch
from torch import Tensor

from nas.errors import ConfigError
from nas.models.transformer import TransformerModel


@torch.no_grad()
def greedy_generate(
    model: TransformerModel,
    input_ids: Tensor,
    max_new_tokens: int,
    *,
    attention_mask: Tensor | None = None,
    eos_token_id: int | None = None,
) -> Tensor:
    """The prompt followed by up to ``max_new_tokens`` argmax tokens, decoded with the KV cache.

    Like transformers' ``generate(do_sample=False)``: one prefill over the
    prompt, then one single-token :meth:`~TransformerModel.extend` per new
    token. Once a row has produced ``eos_token_id`` it is padded with
    ``eos_token_id``; generation stops when every row has.

    Args:
        model: a llama-family :class:`TransformerModel` (a derived subnet's ``.model`` too).
        input_ids: (B, T) prompts; rows of one length, or padded as explained in
            :mod:`nas.models.kv_cache`.
        max_new_tokens: tokens to generate at most.
        attention_mask: (B, T) mask of the prompts (default: all ones).
        eos_token_id: token that ends a row (``None``: always ``max_new_tokens``).

    Returns:
        (B, T + n) token ids, ``n ≤ max_new_tokens``.

    Raises:
        ConfigError: the prompt plus ``max_new_tokens`` exceed the model's
            ``max_positions``, or ``max_new_tokens`` is negative (before any compute).

    Example:
        >>> from nas.models import TransformerModel, load_model
        >>> lm = load_model("tiny-llama")
        >>> m = TransformerModel(lm.dims); _ = m.load_state_dict(lm.state)
        >>> greedy_generate(m.eval(), torch.tensor([[5, 6, 7]]), 4).shape
        torch.Size([1, 7])
    """
    if max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens: must be ≥ 0, got {max_new_tokens}")
    total = input_ids.shape[1] + max_new_tokens
    if total > model.dims.max_positions:
        raise ConfigError(
            f"max_positions: a {input_ids.shape[1]}-token prompt plus {max_new_tokens} new tokens exceed "
            f"the model's {model.dims.max_positions} positions"
        )
    out = input_ids
    if max_new_tokens == 0:
        return out
    hidden, cache = model.extend(input_ids, attention_mask)
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    for step in range(max_new_tokens):
        nxt = model.logits(hidden[:, -1]).argmax(-1)
        if eos_token_id is not None:
            nxt = torch.where(done, torch.full_like(nxt, eos_token_id), nxt)
            done = done | (nxt == eos_token_id)
        out = torch.cat((out, nxt[:, None]), dim=1)
        if step + 1 == max_new_tokens or bool(done.all()):
            break
        hidden, cache = model.extend(nxt[:, None], cache=cache)
    return out

"""nas.spaces.size.block_bytes on the tiny spaces, every number worked out by hand."""

import pytest

from nas.spaces import load_space
from nas.spaces.size import block_bytes


def test_block_bytes_llama_by_hand():
    d = load_space("tiny-llama").dims  # hidden 32, head_dim 8, 4 heads over 2 kv heads, no biases
    # 2 heads: q 16 rows, k/v 8 rows each, o 16 columns -> 1536 weights
    assert block_bytes(d, "attn", 2, 32) == 4 * 1536
    # int8: one byte a weight plus one fp32 scale per row (16 + 8 + 8 + 32 rows)
    assert block_bytes(d, "attn", 2, 8) == 1536 + 4 * (16 + 8 + 8 + 32)
    assert block_bytes(d, "ffn", 64, 32) == 4 * 3 * 64 * 32  # gate, up, down
    assert block_bytes(d, "rest") == 4 * 32  # final RMSNorm
    assert block_bytes(d, "norms") == 4 * 2 * 32  # two RMSNorms


def test_block_bytes_bert_by_hand():
    d = load_space("tiny-bert").dims  # hidden 32, 64 positions, 2 token types, vocab 128, biases
    assert block_bytes(d, "ffn", 16, 32) == 4 * (2 * 16 * 32 + 16 + 32)
    assert block_bytes(d, "rest") == 4 * (64 * 32 + 2 * 32 + 2 * 32)
    assert block_bytes(d, "norms") == 4 * 4 * 32
    # int4: half a byte a weight plus one fp32 scale per row and block of 32 columns
    assert block_bytes(d, "embed", bits=4) == 128 * 32 // 2 + 4 * 128


def test_block_bytes_unknown_kind():
    with pytest.raises(ValueError, match="'head'"):
        block_bytes(load_space("tiny-bert").dims, "head")

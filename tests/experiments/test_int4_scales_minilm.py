"""The MiniLM int4-scales study's pure parts: the settings' architectures and the embedding error, by hand."""

import pytest
import torch

from experiments.studies.int4_scales_minilm import embedding_error, int4_arch


def test_int4_arch_sets_only_the_named_groups():
    from nas.spaces import load_space

    space = load_space("tiny-bert")
    attn = int4_arch(space, ("attn",))
    assert {b for k, b in attn.items() if k.endswith(".attn.bits")} == {4}
    assert {b for k, b in attn.items() if k.endswith(".ffn.bits")} == {32}
    assert attn["embed.bits"] == space.full()["embed.bits"]
    both = int4_arch(space, ("attn", "ffn"))
    assert all(b == 4 for k, b in both.items() if k.endswith((".attn.bits", ".ffn.bits")))


def test_embedding_error_by_hand():
    ref = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    same = embedding_error(ref, 2 * ref)  # cosine ignores scale
    assert same["cosine"] == pytest.approx(1.0) and same["error_mean"] == pytest.approx(0.0, abs=1e-7)
    assert same["nn_agreement"] == 1.0
    turned = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # row 1 now sits on row 2
    e = embedding_error(ref, turned)
    cos1 = 0.1 / (0.81 + 0.01) ** 0.5
    assert e["error_mean"] == pytest.approx((1 - cos1) / 3, rel=1e-5)
    # nearest others, fp32: 0→1, 1→0, 2→1; turned: 0→1 (ties with 2 go to the first), 1→2, 2→1
    assert e["nn_agreement"] == pytest.approx(2 / 3)

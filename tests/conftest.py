import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def minilm_space():
    from nas.spaces import load_space

    return load_space("minilm-l6")


@pytest.fixture(scope="session")
def minilm_supernet(minilm_space):
    from nas.supernet import Supernet

    return Supernet.build(minilm_space)


def batch(vocab: int, b: int = 3, t: int = 13, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, min(vocab, 30000), (b, t), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, t // 2 :] = 0
    return ids, mask

import random

import pytest

from nas.latency import Predictor, size_bytes
from nas.spaces import load_space
from trainers.size import size_table


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-llama"])
def test_size_table_prices_architectures_exactly(name):
    space = load_space(name)
    pred = Predictor(size_table(space), space)
    rng = random.Random(0)
    for arch in [space.full(), space.smallest()] + [space.sample(rng) for _ in range(20)]:
        assert pred.latency_ms(arch) == pytest.approx(size_bytes(space, arch))


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-llama"])
def test_size_table_size_bytes_and_derived_subnet_agree(name):
    """One formula (nas.spaces.size.block_bytes) behind both; the derived subnet's own count is the referee."""
    import torch

    from nas.supernet import Supernet, derive

    space = load_space(name)
    pred = Predictor(size_table(space), space)
    net = Supernet.build(space)
    rng = random.Random(7)
    for arch in [space.sample(rng) for _ in range(3)]:
        one_hot = {c.label: torch.tensor([float(o == arch[c.label]) for o in c.options], dtype=torch.float64)
                   for c in space}
        expected = float(pred.expected_latency(one_hot))
        assert expected == pytest.approx(size_bytes(space, arch), rel=1e-12)
        assert size_bytes(space, arch) == derive(net, arch).size().bytes

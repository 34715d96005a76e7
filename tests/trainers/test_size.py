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

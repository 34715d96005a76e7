"""The decoder precision study's pure parts: lock-step turns and the paired differences, on hand-worked cases."""

import math
import threading
import time

import pytest

from experiments.studies.train_precision_smollm2 import TakeTurns, paired


def test_take_turns_alternates_and_never_counts_the_wait():
    turns, order = TakeTurns(2), []
    work_s = {0: 0.0, 1: 0.05}  # party 1's steps are slow; party 0 must not be charged for waiting on them

    def party(i: int, steps: int) -> None:
        turns.start(i)
        for _ in range(steps):
            order.append(i)
            time.sleep(work_s[i])
            turns.hand_over(i)
        turns.finish(i)

    threads = [threading.Thread(target=party, args=(0, 3)), threading.Thread(target=party, args=(1, 4))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert order == [0, 1, 0, 1, 0, 1, 1]  # strict alternation; the longer party finishes alone
    assert len(turns.seconds[0]) == 3 and len(turns.seconds[1]) == 4
    assert max(turns.seconds[0]) < 0.04 <= min(turns.seconds[1])


def test_paired_differences_and_exact_mcnemar():
    fp32 = {"correct": [True, True, True, False], "fold_perplexity": [100.0, 200.0], "perplexity": 150.0}
    bf16 = {"correct": [True, False, False, False], "fold_perplexity": [110.0, 220.0], "perplexity": 165.0}
    got = paired(fp32, bf16)
    acc, ppl = got["accuracy"], got["perplexity"]
    assert (acc["bf16_only_right"], acc["fp32_only_right"], acc["items"]) == (0, 2, 4)
    assert acc["diff_points"] == pytest.approx(-50.0)
    assert acc["mcnemar_p"] == pytest.approx(0.5)  # 2 discordant items, both one way: 2 · (1/2)^2
    assert not acc["beyond_noise"]
    assert ppl["diff_percent"] == pytest.approx(10.0)
    assert ppl["log_diff_mean"] == pytest.approx(math.log(1.1))
    assert ppl["noise95_percent"] == pytest.approx(0.0, abs=1e-9)  # the same ratio in every fold
    assert ppl["beyond_noise"]

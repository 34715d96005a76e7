"""nas.export.select.choose_trial: the pick rules on a study, including one bound per latency (max_values)."""

import pytest

from nas.errors import ConfigError
from nas.export.select import choose_trial
from tests.search.test_study import fill, fill_phases


def test_choose_trial_with_max_values(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    fill_phases(url, "ph")
    fill(url, "one")
    ref = choose_trial(study="ph", storage=url, max_values={"ttft_ms": 46, "tpot_ms": 10})
    assert ref.number == 2 and ref.on_front and ref.point.latencies["tpot_ms"] == 9.0
    assert choose_trial(study="one", storage=url, max_values={"latency_ms": 3}).number == 2
    assert choose_trial(study="one", storage=url, max_latency_ms=3).number == 2
    with pytest.raises(ConfigError, match=r"rule: choose exactly one .* \(got max_latency_ms, max_values\)"):
        choose_trial(study="one", storage=url, max_latency_ms=3, max_values={"latency_ms": 3})
    with pytest.raises(ConfigError, match=r"bound each: --max ttft_ms=MS --max tpot_ms=MS"):
        choose_trial(study="ph", storage=url, max_latency_ms=40)
    with pytest.raises(ConfigError, match=r"max: no trial fits ttft_ms <= 10"):
        choose_trial(study="ph", storage=url, max_values={"ttft_ms": 10})

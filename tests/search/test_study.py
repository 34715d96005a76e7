"""Study helpers and the query API against every storage (SQLite file, PostgreSQL)."""

import optuna
import pytest
from optuna.trial import TrialState

from nas.errors import ConfigError, StorageError
from nas.search import api, attrs
from nas.search.storage import get_storage
from nas.search.study import create_or_load_study, fail_orphans, front

OBJ, DIRS = attrs.OBJECTIVES, attrs.DIRECTIONS
# (quality, latency, size): trial 1 is dominated by 2; the front is 0, 2, 3.
ROWS = [(0.9, 4.0, 10.0), (0.7, 2.0, 6.0), (0.8, 2.0, 5.0), (0.5, 1.0, 9.0)]


def fill(url, name):
    st = get_storage(url)
    study = create_or_load_study(st, name, objectives=OBJ, directions=DIRS, experiment={"name": name})
    for i, (q, ms, mb) in enumerate(ROWS):
        arch_summary = f"L0 H{i + 1} F16 A8 M8 E8"
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.COMPLETE, values=[q, ms, mb], params={"seed": i},
            distributions={"seed": optuna.distributions.IntDistribution(0, 10)},
            user_attrs={attrs.ARCH_SUMMARY: arch_summary, attrs.ARCH: {"layer0.heads": i + 1},
                        attrs.METRICS: {"quality_after": q, "latency_ms": ms, "size_mb": mb},
                        attrs.SUBNET_DIR: f"/runs/trial-{i}"}))
    return st, study


class TestStudyOnEveryStorage:
    def test_front_pick_and_list(self, storage_url, study_name):
        fill(storage_url, study_name)
        fr = api.load_front(study_name, storage=storage_url)
        assert [p.trial for p in fr] == [3, 2, 0]  # fastest first
        assert fr[1].arch_summary == "L0 H3 F16 A8 M8 E8" and fr[1].values == (0.8, 2.0, 5.0)
        assert api.pick_trial(study_name, storage=storage_url, max_latency_ms=3).trial == 2
        assert api.pick_trial(study_name, storage=storage_url).trial == 0
        assert api.pick_trial(study_name, storage=storage_url, trial=1).trial == 1  # any complete trial
        with pytest.raises(ConfigError, match="no trial fits"):
            api.pick_trial(study_name, storage=storage_url, max_latency_ms=0.5)
        rows = {r["study"]: r for r in api.list_studies(storage=storage_url)}
        assert rows[study_name]["complete"] == 4 and rows[study_name]["objectives"] == "quality,latency_ms,size_mb"

    def test_unknown_study(self, storage_url, study_name):
        get_storage(storage_url)  # an existing (empty) database: only the study is missing
        with pytest.raises(StorageError, match=f"study '{study_name}-x': no such study"):
            api.load_front(f"{study_name}-x", storage=storage_url)

    def test_resume_rules_and_orphans(self, storage_url, study_name):
        st, study = fill(storage_url, study_name)
        with pytest.raises(StorageError, match="already exists; pass --resume"):
            create_or_load_study(st, study_name, objectives=OBJ, directions=DIRS)
        with pytest.raises(StorageError, match="objectives"):
            create_or_load_study(st, study_name, objectives=("quality",), directions=("maximize",), resume=True)
        again = create_or_load_study(st, study_name, objectives=OBJ, directions=DIRS, resume=True)
        orphan = again.ask()  # what a killed driver leaves behind
        assert fail_orphans(again) == [orphan.number]
        assert again.trials[orphan.number].state == TrialState.FAIL
        assert fail_orphans(again) == []
        assert [p.trial for p in front(again)] == [3, 2, 0]

    def test_concurrent_writers_lose_nothing(self, storage_url, study_name):
        """8 writers, each with its own connection, write 3 trials each at once: 24 distinct COMPLETE trials."""
        import threading

        from nas.search.storage import retry_transient

        create_or_load_study(get_storage(storage_url), study_name, objectives=OBJ, directions=DIRS)
        errors = []

        def writer(w):
            try:
                s = optuna.load_study(study_name=study_name, storage=get_storage(storage_url))
                for i in range(3):
                    t = retry_transient(s.ask)
                    retry_transient(lambda: t.set_user_attr(attrs.ARCH_SUMMARY, f"w{w} i{i}"))
                    retry_transient(lambda: s.tell(t, [w / 10, i + 1.0, 1.0]))
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                errors.append(repr(e))

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        done = optuna.load_study(study_name=study_name, storage=get_storage(storage_url)).trials
        assert len(done) == 24 and all(t.state == TrialState.COMPLETE for t in done)
        assert len({t.number for t in done}) == 24
        assert len({t.user_attrs[attrs.ARCH_SUMMARY] for t in done}) == 24


PHASE_OBJ = attrs.PHASE_OBJECTIVES  # quality, ttft_ms, tpot_ms, size_mb
# (quality, ttft, tpot, size): trial 3 is dominated by 1; the front is 0, 1, 2, sorted by ttft: 1, 2, 0.
PHASE_ROWS = [(0.9, 50.0, 20.0, 10.0), (0.8, 30.0, 16.0, 8.0), (0.7, 45.0, 9.0, 7.0), (0.75, 35.0, 17.0, 9.0)]


def fill_phases(url, name):
    """A study priced per phase, as a search of experiments like smollm2_phases.yaml writes it."""
    st = get_storage(url)
    study = create_or_load_study(st, name, objectives=PHASE_OBJ, directions=("maximize",) + ("minimize",) * 3,
                                 experiment={"name": name, "latency_tables": {"ttft_ms": "a", "tpot_ms": "b"}})
    for i, (q, ttft, tpot, mb) in enumerate(PHASE_ROWS):
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.COMPLETE, values=[q, ttft, tpot, mb], params={"target_fractions.ttft_ms": 0.5 + i / 10},
            distributions={"target_fractions.ttft_ms": optuna.distributions.FloatDistribution(0.4, 0.9)},
            user_attrs={attrs.ARCH_SUMMARY: f"L2 H{i + 1}", attrs.ARCH: {"layer0.heads": i + 1},
                        attrs.METRICS: {"quality_after": q, "latency_ms": ttft, "ttft_ms": ttft, "tpot_ms": tpot,
                                        "size_mb": mb, "targets": {"ttft_ms": 40.0, "tpot_ms": 15.0}}}))
    return st, study


def test_phase_study_front_and_pick(tmp_path):
    from nas.search.study import latency_objectives

    url = f"sqlite:///{tmp_path}/s.db"
    _, study = fill_phases(url, "ph")
    assert study.metric_names == list(PHASE_OBJ)
    assert latency_objectives(study) == ("ttft_ms", "tpot_ms") == api.latency_objectives("ph", storage=url)
    fr = api.load_front("ph", storage=url)
    assert [p.trial for p in fr] == [1, 2, 0]  # fastest first in the first latency objective, ttft_ms
    assert fr[0].latencies == {"latency_ms": 30.0, "ttft_ms": 30.0, "tpot_ms": 16.0}
    assert api.pick_trial("ph", storage=url, max_values={"ttft_ms": 46, "tpot_ms": 10}).trial == 2
    assert api.pick_trial("ph", storage=url, max_values={"ttft_ms": 46}).trial == 1
    with pytest.raises(ConfigError, match="use|bound each"):
        api.pick_trial("ph", storage=url, max_latency_ms=40)
    _, old = fill(url, "old")
    assert latency_objectives(old) == ("latency_ms",)

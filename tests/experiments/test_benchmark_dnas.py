"""The benchmark's DNAS method: pure helpers, on numbers worked out by hand."""

from experiments.studies.benchmark_minilm_cpu.dnas import experiment_dict, phase_medians
from experiments.studies.benchmark_minilm_cpu.report import phase_note


def test_phase_medians_take_each_phase_over_the_trials_that_timed_it_in_run_order():
    phases = [{"setup": 0.5, "search": 3.0, "finetune": 8.0}, {"setup": 0.1, "search": 2.0, "finetune": 6.0},
              {"setup": 0.2, "search": 4.0}, {}]
    got = phase_medians(phases)
    assert list(got) == ["setup", "search", "finetune"]
    assert got == {"setup": 0.2, "search": 3.0, "finetune": 7.0}
    assert phase_medians([]) == {}


def test_phase_note_reads_the_medians_or_nothing():
    assert phase_note({"search": 2.94, "finetune": 8.04}) == "; median trial: search 2.9 s, finetune 8.0 s"
    assert phase_note(None) == "" and phase_note({}) == ""


def test_the_experiment_sets_no_trial_count_so_the_timed_call_runs_until_its_deadline():
    """run_dnas calls the service twice: one trial, then the rest of the budget as its timeout without a trial
    count. A trial count in the experiment (run.trials: 1 did) would end the second call before it starts."""
    from nas.search.experiment import Experiment

    doc = experiment_dict("bench_dnas", space="tiny-bert", latency_table="tiny-bert.onnxruntime-cpu.t1.b1.s32",
                          trainer={"steps": 3}, dnas={"sample": {"seed": {"int": [0, 3]}}, "concurrency": 1})
    run = Experiment.from_dict(doc, source="bench").run
    assert run.trials is None
    assert run.trial_limit(timeout_s=60.0) is None  # the second call: as many trials as the budget allows
    assert run.trial_limit() == 4  # without a timeout the service's default count, never unbounded

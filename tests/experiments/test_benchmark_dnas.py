"""The benchmark's DNAS method: pure helpers, on numbers worked out by hand."""

from experiments.studies.benchmark_minilm_cpu.dnas import phase_medians
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

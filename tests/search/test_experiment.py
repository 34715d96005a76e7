"""Experiment files: parsing, field-level errors, the SearchConfig of a trial."""

import dataclasses
import json
import math
from pathlib import Path

import pytest
import yaml

from nas.errors import ConfigError, LatencyTableError
from nas.search.experiment import Experiment, Param, prime, radical_inverse, stratum_shift, van_der_corput
from tests.search.fixtures import TPOT_TABLE, TTFT_TABLE, experiment_file, phases_dict, tiny_table

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path, text, name="e.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def base(tmp_path, **over):
    d = yaml.safe_load(experiment_file(tmp_path).read_text())
    for k, v in over.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    return d


def test_parse_and_trial_config(tmp_path):
    exp = Experiment.from_yaml(experiment_file(tmp_path))
    assert exp.name == "tiny" and exp.directions == ("maximize", "minimize", "minimize")
    assert exp.latency_table == str(tmp_path / "tiny-bert.fixture.json")  # relative path resolved
    assert exp.sample["lambda0"].log and exp.sample["seed"].kind == "int"
    assert exp.sample["lambda0"].example() == pytest.approx(1.0)  # geometric midpoint of 0.1..10
    cfg = exp.search_config({"target_fraction": 0.5, "lambda0": 2.0, "loss": "fbnet", "seed": 7})
    assert (cfg.space, cfg.steps, cfg.loss, cfg.seed, cfg.finetune_steps) == ("tiny-bert", 2, "fbnet", 7, 0)
    exp.check()
    again = Experiment.from_dict(json.loads(json.dumps(exp.to_dict())), source="db")
    assert again.to_dict() == exp.to_dict()


@pytest.mark.parametrize("over, where", [
    ({"colour": 1}, "colour: unknown field"),
    ({"name": None}, "name: required"),
    ({"objectives": ["quality", "speed"]}, "objectives: unknown objective 'speed'"),
    ({"trainer": {"stepz": 3}}, "trainer.stepz: unknown field of"),
    ({"trainer": {"space": "x"}}, "trainer.space: set at the top level"),
    ({"trainer": {"steps": 0}}, "trainer.steps: must be positive"),
    ({"sample": {"lambda0": {"float": [1.0, 0.5]}}}, "sample.lambda0: float: low 1.0 must be < high 0.5"),
    ({"sample": {"lambda0": {"float": [0.0, 1.0], "log": True}}}, "sample.lambda0: log: needs low > 0"),
    ({"sample": {"loss": {"choices": ["hinge", "quadratic"]}}}, "sample.loss: unknown loss form 'quadratic'"),
    ({"sample": {"seed": [0, 3]}}, "sample.seed: expected {float"),
    ({"sample": {"space": {"choices": ["a"]}}}, "sample.space: not a field of"),
    ({"sample": {}}, "sample: give at least one sampled field"),
    ({"run": {"concurrency": 0}}, "run.concurrency: must be >= 1"),
    ({"run": {"gpus": 1}}, "run.gpus: unknown field"),
    ({"run": {"gpus": None}}, "run.gpus: unknown field"),
    ({"run": {"timeout_s": 0}}, "run.timeout_s: must be a positive number of seconds, got 0"),
    ({"run": {"timeout_s": ".inf"}}, "run.timeout_s: expected a number"),
    ({"run": {"timeout_s": float("inf")}}, "run.timeout_s: must be a positive number of seconds, got inf"),
    ({"sampler": {"name": "grid"}}, "sampler.name: unknown sampler 'grid'"),
    ({"trial": "no_colon"}, "trial: expected 'module:attribute'"),
    ({"sample": {"loss": {"choices": ["hinge"], "stratified": True}}}, "sample.loss: choices: expected a non-empty"),
    ({"sample": {"lambda0": {"float": [0.1, 1.0], "stratified": "yes"}}}, "sample.lambda0: stratified: expected true"),
])
def test_field_errors(tmp_path, over, where):
    p = write(tmp_path, yaml.safe_dump(base(tmp_path, **over)))
    with pytest.raises(ConfigError) as e:
        Experiment.from_yaml(p)
    assert str(e.value).startswith(f"{p}: ") and where in str(e.value), str(e.value)


def test_trial_limit_defaults_to_four_and_to_no_limit_under_a_timeout(tmp_path):
    from nas.search.experiment import DEFAULT_TRIALS

    def run(**fields):
        return Experiment.from_yaml(write(tmp_path, yaml.safe_dump(base(tmp_path, run=fields)))).run

    assert run().trial_limit() == DEFAULT_TRIALS == 4 and run().timeout_s is None
    assert run().trial_limit(timeout_s=60) is None  # a timeout alone (--timeout): as many trials as fit
    assert run(timeout_s=600).trial_limit() is None and run(timeout_s=600).timeout_s == 600.0
    assert run(trials=7, timeout_s=600).trial_limit() == 7  # both: whichever comes first
    assert run(trials=7).trial_limit(timeout_s=60) == 7


def test_malformed_yaml_and_missing_file(tmp_path):
    p = write(tmp_path, "name: x\nsample: {seed: [1, 2\n")
    with pytest.raises(ConfigError, match=r"e\.yaml: \(yaml\): malformed YAML at line \d"):
        Experiment.from_yaml(p)
    with pytest.raises(ConfigError, match="no such experiment file"):
        Experiment.from_yaml(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"\(top\): expected a mapping"):
        Experiment.from_yaml(write(tmp_path, "- 1\n", "list.yaml"))


def test_table_for_another_space(tmp_path):
    d = base(tmp_path, space="tiny-llama")
    exp = Experiment.from_yaml(write(tmp_path, yaml.safe_dump(d)))
    with pytest.raises(LatencyTableError, match="latency_table: .*built for space hash"):
        exp.check()


@pytest.mark.parametrize("name", ["smoke", "minilm_cpu"])
def test_shipped_experiments_parse(name):
    exp = Experiment.from_yaml(ROOT / "experiments" / f"{name}.yaml")
    assert exp.name == name and exp.sample and exp.run.trials >= 3
    exp.search_config({k: p.example() for k, p in exp.sample.items()})
    exp.check()  # the shipped latency table belongs to the space


def test_tiny_table_by_hand(tmp_path):
    from nas.latency import latency_ms, load_table
    from nas.spaces import load_space

    space = load_space("tiny-bert")
    table = load_table(tiny_table(tmp_path / "t.json"))
    assert latency_ms(table, space, space.full()) == pytest.approx(1.95)


def test_van_der_corput_fills_strata():
    assert [van_der_corput(i) for i in range(8)] == [0, 0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875]
    for k in range(1, 7):  # the first 2^k points: one in each of 2^k equal strata
        assert sorted(int(van_der_corput(i) * 2 ** k) for i in range(2 ** k)) == list(range(2 ** k))
    with pytest.raises(ValueError):
        van_der_corput(-1)


@pytest.mark.parametrize("log", [False, True])
def test_stratified_values_cover_the_range(log):
    p = Param("target_fraction", "float", low=0.04, high=0.37, log=log, stratified=True)
    shift = stratum_shift(0)
    assert 0 < shift < 1 and stratum_shift(None) == 0.0 and stratum_shift(1) != shift
    vs = [p.stratified_value(i, shift) for i in range(16)]
    assert all(0.04 <= v < 0.37 for v in vs)
    # 16 trials put one value in each of 16 equal strata (log-spaced with log): none left empty
    span = math.log(0.37 / 0.04) if log else 0.33
    us = [(((math.log(v / 0.04) if log else v - 0.04) / span) - shift) % 1.0 for v in vs]
    assert sorted(round(u * 16) % 16 for u in us) == list(range(16))
    assert Param("n", "int", low=1, high=4, stratified=True).stratified_value(3, 0.9) in (1, 2, 3, 4)
    assert sorted(Param("n", "int", low=1, high=4, stratified=True).stratified_value(i) for i in range(4)) == [1, 2, 3, 4]
    with pytest.raises(ValueError):
        Param("loss", "choices", choices=("a",)).stratified_value(0)


def test_stratified_roundtrip(tmp_path):
    d = base(tmp_path, sample={"target_fraction": {"float": [0.3, 0.9], "stratified": True}, "seed": {"int": [0, 9]}})
    exp = Experiment.from_yaml(write(tmp_path, yaml.safe_dump(d)))
    assert exp.sample["target_fraction"].stratified and not exp.sample["seed"].stratified
    assert exp.to_dict()["sample"]["target_fraction"] == {"float": [0.3, 0.9], "stratified": True}
    assert Experiment.from_dict(exp.to_dict(), source="db").sample == exp.sample


def test_non_utf8_or_unprintable_experiment_file_is_one_typed_line(tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes("name: café\nspace: tiny-bert\n".encode("latin-1"))
    with pytest.raises(ConfigError) as e:
        Experiment.from_yaml(p)
    assert str(e.value) == f"{p}: not UTF-8 text (byte 9: invalid continuation byte); save it as UTF-8"
    p = write(tmp_path, "name: x\x07\nspace: tiny-bert\n", "bell.yaml")
    with pytest.raises(ConfigError) as e:
        Experiment.from_yaml(p)
    assert str(e.value).startswith(f"{p}: (yaml): malformed YAML") and "\n" not in str(e.value), str(e.value)


def test_bad_space_file_is_named_once(tmp_path):
    from nas.errors import SpaceError

    space = write(tmp_path, "name: t\nmodel: tiny-bert\nbits: x\n", "space.yaml")
    exp = Experiment.from_yaml(write(tmp_path, yaml.safe_dump(base(tmp_path, space="space.yaml"))))
    with pytest.raises(SpaceError) as e:
        exp.check()
    assert str(e.value) == f"{space}: bits: expected a list, got str"


# --- a decoder priced per phase: latency_tables, per-budget sampling, Halton strata -------------------------



def phases(tmp_path, name="p.yaml", **over):
    d = phases_dict(**over)
    for k, v in over.items():
        if v is None:
            d.pop(k)
    return write(tmp_path, yaml.safe_dump(d, sort_keys=False), name)


def test_phases_experiment_parses_and_builds_configs(tmp_path):
    exp = Experiment.from_yaml(phases(tmp_path))
    assert exp.latency_tables == {"ttft_ms": TTFT_TABLE, "tpot_ms": TPOT_TABLE} and exp.latency_table == ""
    assert exp.tables == dict(exp.latency_tables) and exp.config_table == TTFT_TABLE
    assert exp.objectives == ("quality", "ttft_ms", "tpot_ms", "size_mb")  # the default with latency_tables
    assert exp.directions == ("maximize", "minimize", "minimize", "minimize")
    assert exp.latency_objectives == ("ttft_ms", "tpot_ms")
    cfg = exp.search_config({"target_fractions.ttft_ms": 0.7, "target_fractions.tpot_ms": 0.8, "seed": 1})
    assert dict(cfg.latency_tables) == {"ttft_ms": TTFT_TABLE, "tpot_ms": TPOT_TABLE}
    assert cfg.latency_table == TTFT_TABLE and dict(cfg.target_fractions) == {"ttft_ms": 0.7, "tpot_ms": 0.8}
    again = Experiment.from_dict(json.loads(json.dumps(exp.to_dict())), source="db")
    assert again == dataclasses.replace(exp, source="db") and "latency_table" not in exp.to_dict()
    # the sampled entry is folded over trainer.target_fractions (which the experiment never mutates)
    d = phases_dict(trainer={**phases_dict()["trainer"], "target_fractions": {"tpot_ms": 0.75}},
                    sample={"target_fractions.ttft_ms": {"float": [0.6, 0.9]}, "seed": {"int": [0, 3]}})
    exp = Experiment.from_yaml(write(tmp_path, yaml.safe_dump(d), "fold.yaml"))
    assert dict(exp.search_config({"target_fractions.ttft_ms": 0.65, "seed": 0}).target_fractions) == {
        "tpot_ms": 0.75, "ttft_ms": 0.65}
    assert exp.trainer["target_fractions"] == {"tpot_ms": 0.75}


def test_phases_paths_resolve_and_one_table_stays_as_it_was(tmp_path):
    table = tiny_table(tmp_path / "t.json")
    d = phases_dict(latency_tables={"ttft_ms": "t.json", "tpot_ms": TPOT_TABLE})
    exp = Experiment.from_dict(d, source="e.yaml", base=tmp_path)
    assert exp.latency_tables == {"ttft_ms": str(table), "tpot_ms": TPOT_TABLE}
    one = Experiment.from_yaml(experiment_file(tmp_path))
    assert one.tables == {"latency_ms": one.latency_table} and one.config_table == one.latency_table
    assert one.latency_tables == {} and one.objectives == ("quality", "latency_ms", "size_mb")
    assert "latency_tables" not in one.to_dict()


def test_request_objective_needs_both_tables_and_output_tokens(tmp_path):
    trainer = {**phases_dict()["trainer"], "output_tokens": 16}
    exp = Experiment.from_yaml(phases(tmp_path, trainer=trainer,
                                      objectives=["quality", "request_ms", "ttft_ms", "size_mb"]))
    assert exp.objectives == ("quality", "request_ms", "ttft_ms", "size_mb")
    assert exp.latency_objectives == ("request_ms", "ttft_ms")


@pytest.mark.parametrize("over, where", [
    ({"latency_table": TTFT_TABLE}, "latency_tables: give either latency_table (one table) or latency_tables"),
    ({"latency_tables": None}, "latency_table: required (a non-empty string), or latency_tables:"),
    ({"latency_tables": {}}, "latency_tables: expected a mapping {budget: table}"),
    ({"latency_tables": ["a"]}, "latency_tables: expected a mapping {budget: table}"),
    ({"latency_tables": {"ttft_ms": TTFT_TABLE, "e2e_ms": TPOT_TABLE}},
     "latency_tables: 'e2e_ms' is not a latency one table prices; known: ttft_ms, tpot_ms"),
    ({"latency_tables": {"ttft_ms": TTFT_TABLE, "tpot_ms": ""}}, "latency_tables.tpot_ms: expected a table name"),
    ({"objectives": ["quality", "latency_ms"]}, "objectives: 'latency_ms' is priced by latency_table, but this "
                                                "experiment has latency_tables; use ttft_ms and tpot_ms"),
    ({"objectives": ["quality", "request_ms"]}, "objectives: 'request_ms' (ttft_ms + output_tokens·tpot_ms) is "
                                                "not priced: it needs latency_tables for ttft_ms and tpot_ms and "
                                                "trainer.output_tokens > 0"),
    ({"objectives": ["quality", "e2e_ms"]}, "objectives: unknown objective 'e2e_ms'; known: quality, latency_ms, "
                                            "ttft_ms, tpot_ms, request_ms, size_mb"),
    ({"latency_tables": {"ttft_ms": TTFT_TABLE}, "objectives": ["quality", "tpot_ms"]},
     "objectives: 'tpot_ms' is not priced: it needs latency_tables.tpot_ms (a decode table)"),
    ({"trainer": {"latency_tables": {}}}, "trainer.latency_tables: set at the top level"),
    ({"sample": {"latency_tables.ttft_ms": {"choices": ["x"]}}}, "sample.latency_tables.ttft_ms: not a field of"),
    ({"sample": {"colours.ttft_ms": {"float": [0.5, 0.9]}}}, "sample.colours.ttft_ms: not a field of"),
    ({"sample": {"target_fractions.": {"float": [0.5, 0.9]}}}, "sample.target_fractions.: not a field of"),
    ({"sample": {"target_fractions.ttft_ms": {"float": [0.5, 0.9]}, "target_fractions": {"choices": [{}]}}},
     "sample.target_fractions.ttft_ms: also sampled whole as sample.target_fractions"),
    ({"trainer": {"target_fractions": {"ttft_ms": 0.5}}}, "sample.target_fractions.ttft_ms: also fixed under "
                                                          "trainer.target_fractions"),
    ({"sample": {"target_fractions.ttft_ms": {"float": [1.2, 1.5]}}},
     "sample.target_fractions.ttft_ms: must be in (0, 1], got 1.35"),
    ({"sample": {"target_fractions.e2e_ms": {"float": [0.5, 0.9]}}},
     "sample.target_fractions.e2e_ms: 'e2e_ms' is not a budget this trial prices"),
])
def test_phases_field_errors(tmp_path, over, where):
    if "trainer" in over and "latency_tables" not in over["trainer"]:
        over = {**over, "trainer": {**phases_dict()["trainer"], **over["trainer"]}}
    p = phases(tmp_path, **over)
    with pytest.raises(ConfigError) as e:
        Experiment.from_yaml(p)
    assert str(e.value).startswith(f"{p}: ") and where in str(e.value), str(e.value)


def test_phases_check_names_the_budget_whose_table_is_wrong(tmp_path):
    from nas.errors import LatencyTableMismatchError

    exp = Experiment.from_yaml(phases(tmp_path))
    exp.check()  # both shipped tables fit tiny-llama, each of its budget's phase, every target reachable
    swapped = Experiment.from_yaml(phases(tmp_path, latency_tables={"ttft_ms": TPOT_TABLE, "tpot_ms": TTFT_TABLE}))
    with pytest.raises(LatencyTableMismatchError) as e:
        swapped.check()
    assert str(e.value).startswith(f"{swapped.source}: latency_tables.ttft_ms: phase: expected a prefill table")
    other = Experiment.from_yaml(phases(tmp_path, latency_tables={"ttft_ms": TTFT_TABLE,
                                                                  "tpot_ms": str(tiny_table(tmp_path / "t.json"))}))
    with pytest.raises(LatencyTableError, match=r"latency_tables\.tpot_ms: .*built for space hash"):
        other.check()
    low = Experiment.from_yaml(phases(tmp_path, sample={"target_fractions.tpot_ms": {"float": [0.1, 0.9]},
                                                        "seed": {"int": [0, 3]}}))
    with pytest.raises(ConfigError) as e:  # a per-budget range is checked before Ray starts
        low.check()
    assert str(e.value).startswith(f"{low.source}: sample.target_fractions.tpot_ms: 0.5 cannot run: target "), e.value
    assert "below the smallest architecture" in str(e.value)


def test_radical_inverse_and_primes():
    assert [prime(k) for k in range(6)] == [2, 3, 5, 7, 11, 13]
    assert [radical_inverse(i, 3) for i in range(5)] == pytest.approx([0, 1 / 3, 2 / 3, 1 / 9, 4 / 9])
    assert [radical_inverse(i, 2) for i in range(64)] == [van_der_corput(i) for i in range(64)]
    with pytest.raises(ValueError):
        radical_inverse(1, 1)


@pytest.mark.parametrize("seed", [None, 0, 5])
def test_two_stratified_budgets_cover_the_square_not_its_diagonal(tmp_path, seed):
    """Halton: the k-th stratified field takes the k-th prime base. The first 2^a·3^b trials put one point
    in each cell of the 2^a × 3^b grid (cells shifted with the seed's shift), and the first field keeps
    the base-2 points a single stratified target always took."""
    exp = Experiment.from_yaml(phases(tmp_path, sampler={"name": "tpe", "seed": seed}))
    lo, hi, shift = 0.6, 0.9, stratum_shift(seed)
    a, b = exp.sample["target_fractions.ttft_ms"], exp.sample["target_fractions.tpot_ms"]

    def unit(v, k=0):  # back to [0, 1), unshifted (field k is shifted by k·(√2 − 1) more)
        return ((v - lo) / (hi - lo) - shift - k * (2 ** 0.5 - 1)) % 1.0

    pts = [exp.stratified_values(n) for n in range(36)]
    assert set(pts[0]) == {"target_fractions.ttft_ms", "target_fractions.tpot_ms"}  # seed is not stratified
    assert abs(pts[0][a.name] - pts[0][b.name]) > 0.05  # trial 0 is off the diagonal too
    us = [(unit(p[a.name]), unit(p[b.name], 1)) for p in pts]
    for nx, ny in ((2, 3), (4, 3), (2, 9), (4, 9)):
        cells = {(int(x * nx + 1e-9) % nx, int(y * ny + 1e-9) % ny) for x, y in us[:nx * ny]}
        assert len(cells) == nx * ny, (nx, ny, sorted(cells))
    assert [p[a.name] for p in pts] == [a.stratified_value(n, shift) for n in range(36)]  # as before
    # the old scheme (every field on the base-2 points) would fill only the diagonal of a 2x2 grid
    diag = {(int(unit(a.stratified_value(n, shift)) * 2), int(unit(b.stratified_value(n, shift)) * 2))
            for n in range(4)}
    assert diag == {(0, 0), (1, 1)}
    assert all(0.6 <= v < 0.9 for p in pts for v in p.values())


def test_supernet_section_is_checked_before_anything_runs(tmp_path):
    ok = base(tmp_path, trial="trainers:dnas", supernet={"steps": 5, "random_archs": 1})
    exp = Experiment.from_dict(ok, source="e.yaml")
    assert dict(exp.supernet) == {"steps": 5, "random_archs": 1} and exp.to_dict()["supernet"] == exp.supernet
    assert "supernet" not in Experiment.from_dict(base(tmp_path, trial="trainers:dnas"), source="e.yaml").to_dict()
    for supernet, msg in (({"stepz": 5}, "e.yaml: supernet.stepz: unknown field; allowed: "),
                          ({"steps": 0}, "e.yaml: supernet.steps: must be a positive integer, got 0"),
                          ([1], "e.yaml: supernet: expected a mapping")):
        with pytest.raises(ConfigError, match=msg.replace(".", "\\.").replace("(", "\\(")):
            Experiment.from_dict({**ok, "supernet": supernet}, source="e.yaml")
    with pytest.raises(ConfigError, match="e.yaml: supernet: the trial plug-in tests.search.trials:light cannot "
                                          "train a shared supernet"):
        Experiment.from_dict(base(tmp_path, supernet={"steps": 5}), source="e.yaml")
    with pytest.raises(ConfigError, match="trainer.shared_supernet: set at the top level"):
        Experiment.from_dict({**ok, "trainer": {**ok["trainer"], "shared_supernet": "0" * 64}}, source="e.yaml")


def test_a_sampled_field_that_changes_the_shared_supernet_is_refused(tmp_path):
    d = base(tmp_path, trial="trainers:dnas", supernet={"steps": 5})
    d["sample"] = {**d["sample"], "max_length": {"int": [16, 32]}}
    exp = Experiment.from_yaml(write(tmp_path, yaml.safe_dump(d)))
    with pytest.raises(ConfigError, match="e.yaml: sample.max_length: changes the shared supernet"):
        exp.check()
    d["sample"].pop("max_length")
    Experiment.from_yaml(write(tmp_path, yaml.safe_dump(d))).check()  # target, λ, loss and seed leave it alone

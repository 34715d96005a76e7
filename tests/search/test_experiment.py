"""Experiment files: parsing, field-level errors, the SearchConfig of a trial."""

import json
import math
from pathlib import Path

import pytest
import yaml

from nas.errors import ConfigError, LatencyTableError
from nas.search.experiment import Experiment, Param, stratum_shift, van_der_corput
from tests.search.fixtures import experiment_file, tiny_table

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

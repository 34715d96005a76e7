import json

import pytest

from nas.errors import LatencyTableError
from nas.latency.table import LatencyTable, load_table
from tests.latency.conftest import make_table

DEVICE = {"cpu": "Test CPU", "isa": ["avx2"], "cores": 2, "fingerprint": "abc123"}
RUNTIME = {"name": "onnxruntime-cpu", "version": "1.31.1", "provider": "CPUExecutionProvider"}


def test_save_load_round_trip(tmp_path, hand_table):
    path = hand_table.save(tmp_path / "t.json")
    back = load_table(path)
    assert back.to_dict() == hand_table.to_dict()
    assert back.ms("attn:heads=2:bits=8") == 1.5
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]  # no temporary left behind


def test_failed_save_leaves_previous_file_intact(tmp_path, hand_space, hand_table):
    path = hand_table.save(tmp_path / "t.json")
    before = path.read_text()
    bad = make_table(hand_space, calibration={"scale": object()})  # not JSON-serialisable
    with pytest.raises(TypeError):
        bad.save(path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_truncated_json_is_a_clear_error(tmp_path, hand_table):
    path = hand_table.save(tmp_path / "t.json")
    path.write_text(path.read_text()[:200])
    with pytest.raises(LatencyTableError, match="corrupt or truncated"):
        load_table(path)


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.update(schema=99), "schema"),
    (lambda d: d.pop("entries"), "malformed.*entries"),
    (lambda d: d["entries"]["rest"].pop("median_ms"), "malformed"),
    (lambda d: d.update(threads="two"), "malformed"),
    (lambda d: d.update(calibration=[1.0]), "calibration: expected an object"),
    (lambda d: d["calibration"].update(bit_scale={"8": 0.0}), r"calibration\.bit_scale\.8: scale must be positive"),
])
def test_malformed_tables(tmp_path, hand_table, mutate, match):
    d = hand_table.to_dict()
    mutate(d)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(d))
    with pytest.raises(LatencyTableError, match=match):
        load_table(path)


def test_missing_file():
    with pytest.raises(LatencyTableError, match="no such latency table"):
        load_table("no-such-table.t9")


def test_same_environment_is_silent(hand_table, recwarn):
    assert hand_table.check_environment(device=DEVICE, runtime=RUNTIME, strict=True) == []
    assert not recwarn.list


def test_other_device_warns_and_strict_raises(hand_table):
    other = {**DEVICE, "cpu": "Other CPU", "fingerprint": "fff000"}
    with pytest.warns(UserWarning, match="device.*Test CPU.*Other CPU"):
        problems = hand_table.check_environment(device=other, runtime=RUNTIME)
    assert len(problems) == 1
    with pytest.raises(LatencyTableError, match="device"):
        hand_table.check_environment(device=other, runtime=RUNTIME, strict=True)


def test_other_runtime_version_warns_and_strict_raises(hand_table):
    newer = {**RUNTIME, "version": "1.32.0"}
    with pytest.warns(UserWarning, match="runtime.version: table has '1.31.1', this is '1.32.0'"):
        hand_table.check_environment(device=DEVICE, runtime=newer)
    with pytest.raises(LatencyTableError, match="runtime.version"):
        hand_table.check_environment(device=DEVICE, runtime=newer, strict=True)


def test_check_space_lists_missing_keys(hand_space):
    table = make_table(hand_space, entries={"rest": 1.0})
    with pytest.raises(LatencyTableError, match="5 missing"):
        table.check_space(hand_space)
    assert isinstance(table, LatencyTable)


def test_shipped_name_resolves_to_the_devices_own_table():
    name = "minilm-l6.onnxruntime-cpu.t1.b1.s128"
    own = load_table(name, fingerprint="60ce96d48035")
    assert own.device["fingerprint"] == "60ce96d48035"
    assert own.path == f"latency_luts/60ce96d48035/{name}.json"
    default = load_table(name, fingerprint="000000000000")
    assert default.path == f"latency_luts/{name}.json"
    assert default.device["fingerprint"] != "000000000000"
    # the default table names its own device: another machine is warned, not silently trusted
    with pytest.warns(UserWarning, match="device"):
        assert default.check_environment(device={"fingerprint": "000000000000"})


def test_device_folders_hold_only_tables_of_that_device():
    from importlib import resources

    root = resources.files("latency_luts")
    folders = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith("__")]
    assert folders
    for folder in folders:
        for f in folder.iterdir():
            t = load_table(str(f))
            assert t.device["fingerprint"] == folder.name, f
            assert (root / f.name).is_file(), f"{f}: no default table of that name"

import json
import re

import pytest

from nas.errors import LatencyTableError
from nas.latency.table import LatencyTable, load_table
from tests.latency.conftest import ENTRIES, make_table

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


def test_table_sha256_is_sha256_json_of_to_dict(tmp_path, hand_table):
    from nas.files import sha256_json
    from nas.latency.table import table_sha256

    assert table_sha256(hand_table) == sha256_json(hand_table.to_dict())
    # the file's path and formatting play no part: a saved and reloaded table keeps its hash
    assert table_sha256(load_table(hand_table.save(tmp_path / "t.json"))) == table_sha256(hand_table)


def test_find_table_by_hash_among_installed_tables(tmp_path, monkeypatch):
    from nas.latency.table import find_table, installed_tables, table_sha256

    tables = list(installed_tables())
    assert {t.path.split("latency_luts/")[1] for t in tables} >= {
        "tiny-bert.onnxruntime-cpu.t1.b1.s32.json", "60ce96d48035/minilm-l6.onnxruntime-cpu.t1.b1.s128.json"}
    monkeypatch.chdir(tmp_path)  # the working directory plays no part
    for t in tables:
        assert find_table(table_sha256(t)).to_dict() == t.to_dict()


def test_find_table_hint_that_holds_another_table_names_both_hashes(tmp_path, hand_space, hand_table):
    from nas.latency.table import find_table, table_sha256

    other = make_table(hand_space, entries={**ENTRIES, "rest": 9.0})
    path = other.save(tmp_path / "t.json")
    want, got = table_sha256(hand_table), table_sha256(other)
    assert want != got
    with pytest.raises(LatencyTableError) as e:
        find_table(want, hint=path, extra_dirs=[tmp_path / "nowhere"])
    msg = str(e.value)
    assert f"no latency table has sha256 {want}" in msg
    assert f"recorded path {str(path)!r} resolves to {path} with sha256 {got} (a different table)" in msg
    assert "installed table(s) in latency_luts/" in msg and f"{tmp_path / 'nowhere'} (no such folder)" in msg
    # the hint is taken when it holds the table
    assert find_table(got, hint=path).path == str(path)


def test_find_table_in_a_copy_folder(tmp_path, hand_space, hand_table):
    from nas.latency.table import find_table, table_sha256

    copies = tmp_path / "tables"
    make_table(hand_space, entries={**ENTRIES, "rest": 9.0}).save(copies / "a.json")  # another table
    (copies / "b.json").write_text("{not json")  # skipped, not fatal
    hand_table.save(copies / f"{table_sha256(hand_table)}.json")
    found = find_table(table_sha256(hand_table), hint=tmp_path / "gone.json", extra_dirs=[copies])
    assert found.to_dict() == hand_table.to_dict() and found.path == str(copies / f"{table_sha256(hand_table)}.json")
    (copies / f"{table_sha256(hand_table)}.json").unlink()
    with pytest.raises(LatencyTableError, match=rf"{copies} \(2 file\(s\)\); skipped 1 unreadable file\(s\): .*b.json"):
        find_table(table_sha256(hand_table), extra_dirs=[copies])


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d["entries"]["rest"].update(median_ms=-0.25), r"entries\.rest\.median_ms: -0\.25 is not a positive"),
    (lambda d: d["entries"]["rest"].update(median_ms=0), r"entries\.rest\.median_ms: 0 is not a positive"),
    (lambda d: d["entries"]["overhead"].update(median_ms=float("nan")), r"entries\.overhead\.median_ms: nan is not"),
    (lambda d: d["entries"]["overhead"].update(median_ms=float("inf")), r"entries\.overhead\.median_ms: inf is not"),
    (lambda d: d["entries"]["overhead"].update(median_ms="0.5"), r"entries\.overhead\.median_ms: '0\.5' is not"),
    (lambda d: d["entries"]["embed:bits=32"].update(iqr_ms=-0.1), r"entries\.embed:bits=32\.iqr_ms: -0\.1 is not"),
    (lambda d: d["entries"]["rest"].update(iqr_ms=float("nan")), r"entries\.rest\.iqr_ms: nan is not"),
    (lambda d: d["entries"].update(rest=0.25), r"entries\.rest: expected an object with median_ms, got 0\.25"),
    (lambda d: d.update(entries={}), r"entries: no entries"),
    (lambda d: d.update(entries=[]), r"entries: expected an object of entries, got list"),
])
def test_bad_entries_name_the_file_and_key(tmp_path, hand_table, mutate, match):
    d = hand_table.to_dict()
    mutate(d)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(d))  # NaN and Infinity as Python's json writes them
    with pytest.raises(LatencyTableError, match=rf"^{re.escape(str(path))}: {match}"):
        load_table(path)


def test_non_utf8_table(tmp_path, hand_table):
    path = hand_table.save(tmp_path / "t.json")
    path.write_bytes(path.read_bytes().replace(b"Test CPU", "Tést CPU".encode("latin-1")))
    with pytest.raises(LatencyTableError, match=rf"^{re.escape(str(path))}: not UTF-8 text \(byte \d+: invalid continuation byte\)"):
        load_table(path)


def test_a_decoder_table_timing_int8_layers_with_another_kernel_is_refused():
    """A decoder exports its 8-bit layers as MatMulNBits: a table whose rows say MatMulInteger priced another graph."""
    import dataclasses

    import nas

    space = nas.load_space("tiny-llama")
    table = load_table("tiny-llama.onnxruntime-cpu.t1.b1.c32.decode")
    table.check_space(space)  # the shipped table timed the kernel export writes
    assert "MatMulNBits" in table.entries["ffn:width=16:bits=8"]["kernel"]
    assert "MatMulInteger" in table.entries["head:bits=8"]["kernel"]  # the LM head keeps MatMulInteger
    old = "quantize_dynamic int8 per-channel symmetric (DynamicQuantizeLinear + MatMulInteger)"
    entries = {k: {**e, "kernel": old} if k.endswith(":bits=8") else e for k, e in table.entries.items()}
    with pytest.raises(LatencyTableError, match=r"^attn:heads=\d+:bits=8: .*MatMulInteger.*rebuild"):
        dataclasses.replace(table, entries=entries).check_space(space)

from nas.latency.device import device_info, fingerprint, parse_cpuinfo

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480C
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile amx_int8 other_flag
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480C
flags\t\t: fpu sse4_2
"""


def test_parse_cpuinfo_keeps_model_and_isa_flags_of_the_first_cpu():
    model, isa = parse_cpuinfo(CPUINFO)
    assert model == "Intel(R) Xeon(R) Platinum 8480C"
    assert isa == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile", "amx_int8"]


def test_fingerprint_changes_with_cpu_flags_and_cores():
    base = fingerprint("X", ["avx2"], 2)
    assert base == fingerprint("X", ["avx2"], 2) and len(base) == 12
    assert len({base, fingerprint("Y", ["avx2"], 2), fingerprint("X", ["avx2", "avx512f"], 2),
                fingerprint("X", ["avx2"], 4)}) == 4


def test_device_info_of_a_given_cpuinfo(tmp_path):
    p = tmp_path / "cpuinfo"
    p.write_text(CPUINFO)
    d = device_info(p)
    assert d["cpu"].startswith("Intel") and "amx_int8" in d["isa"] and d["cores"] >= 1
    assert d["fingerprint"] == fingerprint(d["cpu"], d["isa"], d["cores"])

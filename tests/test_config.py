"""Device settings: a bad file never bricks the board (both interpreters)."""

import json

from both import run_both

SHOW = """
import config
cfg, problems = config.load()
print(cfg["odr_hz"], cfg["drain_ms"], cfg["imu_addrs"], cfg["trace"])
print(sorted(problems))
"""


def write(tmp_path, text):
    for sub in ("cpython", "micropython"):
        (tmp_path / sub).mkdir(exist_ok=True)
        (tmp_path / sub / "config.json").write_text(text)


def test_missing_file_gives_defaults_and_says_so(tmp_path):
    out = run_both(SHOW, tmp_path)
    assert out.splitlines() == ["52 500 [106] False", "[(3, 0)]"]


def test_corrupt_file_falls_back_to_defaults(tmp_path):
    write(tmp_path, '{"odr_hz": 104, "drain_ms": 2')  # torn by a power cut
    out = run_both(SHOW, tmp_path)
    assert out.splitlines() == ["52 500 [106] False", "[(1, 0)]"]


def test_file_that_is_not_an_object_falls_back(tmp_path):
    write(tmp_path, "[1, 2, 3]")
    assert run_both(SHOW, tmp_path).splitlines()[1] == "[(1, 0)]"


def test_valid_overrides_apply(tmp_path):
    write(tmp_path, json.dumps({"odr_hz": 104, "drain_ms": 250, "imu_addrs": [106, 107], "trace": True}))
    out = run_both(SHOW, tmp_path)
    assert out.splitlines() == ["104 250 [106, 107] True", "[]"]


def test_bad_values_keep_their_defaults_and_name_the_key(tmp_path):
    write(tmp_path, json.dumps({"odr_hz": 50, "drain_ms": "fast", "trace": 1, "imu_addrs": [0x50], "colour": 3}))
    out = run_both(SHOW + "print(sorted([config.SCHEMA[k - 1][0] for c, k in problems if k]))\n", tmp_path)
    lines = out.splitlines()
    assert lines[0] == "52 500 [106] False"
    assert sorted(eval(lines[2])) == ["drain_ms", "imu_addrs", "odr_hz", "trace"]
    assert "(4, 0)" in lines[1]  # the unknown key is reported too


def test_save_writes_only_changes_and_round_trips(tmp_path):
    out = run_both(
        """
        import config
        cfg = config.defaults()
        cfg["odr_hz"] = 26
        config.save(cfg)
        print(open("config.json").read())
        again, problems = config.load()
        print(again == cfg, problems, config.crc(again) == config.crc(cfg))
        """,
        tmp_path,
    )
    assert out.splitlines() == ['{"odr_hz": 26}', "True [] True"]

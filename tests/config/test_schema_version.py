"""schema_version: stamped on every JSON servesim writes, accepted when absent, a newer major refused in one line."""

from __future__ import annotations

import json

import pytest

from servesim.config.outfile import SCHEMA_VERSION, check_schema_version, stamp, write_json
from servesim.errors import ServesimError
from servesim.latency.calibration import DEFAULT_CALIBRATION, load_calibration, save_calibration

from tests.reliability._cli import run_cli


def test_stamp_puts_the_version_first_and_changes_nothing_else():
    assert list(stamp({"b": 1, "a": 2})) == ["schema_version", "b", "a"]
    assert stamp({"schema_version": "0.1", "x": 1}) == {"schema_version": SCHEMA_VERSION, "x": 1}
    assert stamp([1, 2]) == [1, 2]


def test_write_json_stamps(tmp_path):
    write_json(tmp_path / "x.json", {"k": 1})
    assert json.loads((tmp_path / "x.json").read_text()) == {"schema_version": SCHEMA_VERSION, "k": 1}


@pytest.mark.parametrize("value, ok", [("1.0", True), ("1.7", True), ("0.9", True), ("2.0", False), ("x", False), (None, False)])
def test_check_schema_version(value, ok):
    if ok:
        check_schema_version({"schema_version": value}, "f.json")
    else:
        with pytest.raises(ServesimError, match=r"^f\.json: schema_version"):
            check_schema_version({"schema_version": value}, "f.json")
    check_schema_version({}, "f.json")  # a file written before schema_version existed


def test_calibration_round_trip_with_and_without_version(tmp_path):
    cal = load_calibration()  # the shipped file
    path = tmp_path / "c.json"
    save_calibration(cal, path)
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION
    assert load_calibration(path) == cal
    old = json.loads(DEFAULT_CALIBRATION.read_text())
    old.pop("schema_version", None)
    path.write_text(json.dumps(old))
    assert load_calibration(path) == cal
    path.write_text(json.dumps({**old, "schema_version": "2.0"}))
    with pytest.raises(ServesimError, match="schema_version 2.0 is newer than this servesim reads"):
        load_calibration(path)


def test_cli_outputs_carry_it(tmp_path, capsys):
    out = tmp_path / "r.json"
    code, stdout, err = run_cli(["run", "--latency-model", "roofline-v2", "--num-requests", "3", "-o", str(out), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out.read_text())["schema_version"] == SCHEMA_VERSION
    assert json.loads(stdout)["schema_version"] == SCHEMA_VERSION
    code, stdout, err = run_cli(["step", "--decode", "4x100", "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["schema_version"] == SCHEMA_VERSION


def test_sweep_lines_carry_it_and_resume_refuses_a_newer_major(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("base: {latency_model: roofline-v2, workload: {input_tokens: 10, output_tokens: 2, arrival: synchronous, num_requests: 2}}\n"
                    "grid: {tp: [1, 2]}\n")
    out = tmp_path / "r.jsonl"
    code, _, err = run_cli(["sweep", str(spec), "-o", str(out)], capsys)
    assert code == 0, err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 2 and all(x["schema_version"] == SCHEMA_VERSION for x in lines)
    timings = [json.loads(x) for x in out.with_name("r.timings.jsonl").read_text().splitlines()]
    assert all(x["schema_version"] == SCHEMA_VERSION for x in timings)
    # older lines (no schema_version) resume: nothing reruns, the file is unchanged but for the stamp
    out.write_text("".join(json.dumps({k: v for k, v in x.items() if k != "schema_version"}) + "\n" for x in lines))
    code, _, err = run_cli(["sweep", str(spec), "-o", str(out)], capsys)
    assert code == 0, err
    assert [json.loads(x) for x in out.read_text().splitlines()] == lines
    newer = {**lines[0], "schema_version": "2.0"}
    out.write_text(json.dumps(newer) + "\n")
    code, _, err = run_cli(["sweep", str(spec), "-o", str(out)], capsys)
    assert code == 2 and "schema_version 2.0 is newer" in err and len(err.strip().splitlines()) == 1

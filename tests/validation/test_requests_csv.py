"""requests-csv loader on a real excerpt of the bundled Llama-2-7B reasoning run (10 first requests and
the switch to 300 s client timeouts at t = 180 s)."""

from __future__ import annotations

import csv
import gzip

import pytest

from servesim.validation import load_experiment, load_requests_csv

from gt_helpers import DATA, write_manifest

CSV = DATA / "requests_excerpt.csv"


@pytest.fixture(scope="module")
def rows():
    with open(CSV, newline="") as f:
        return list(csv.DictReader(f))


def test_rows_become_requests_and_measurements(rows):
    run = load_requests_csv(CSV)
    assert (run.mode, run.concurrency, len(run.requests)) == ("open", None, len(rows))
    first = rows[0]
    m, s = run.measured[0], run.requests[0]
    assert s.arrival_s == float(first["arrival_time_s"]) and s.input_tokens == int(first["input_tokens"])
    n = int(first["output_tokens"])
    assert m.itl_ms == pytest.approx((float(first["e2e_ms"]) - float(first["ttft_ms"])) / (n - 1), rel=1e-12)
    assert m.recorded_output_tokens == int(first["recorded_output_tokens"]) and m.imputed
    assert run.measured[5].recorded_output_tokens is None and not run.measured[5].imputed


def test_failed_rows(rows):
    run = load_requests_csv(CSV)
    failed = [m for m in run.measured if not m.ok]
    assert len(failed) == sum(r["ok"] == "0" for r in rows) == 8
    assert all(m.ttft_ms is None and m.itl_ms is None and m.e2e_ms > 300_000 for m in failed)
    assert run.notes["num_errored"] == 8
    assert run.measured_means()["num_ok"] == 14


def test_gzip_closed_loop_and_optional_columns(tmp_path):
    text = "arrival_time_s,input_tokens,output_tokens,ttft_ms,e2e_ms,prefix_group,prefix_tokens,itl_ms,stage\n" \
           "0.5,600,10,50,140,sys-a,100,,1\n0.0,600,10,40,130,sys-a,100,9.5,0\n"
    (tmp_path / "r.csv.gz").write_bytes(gzip.compress(text.encode()))
    run = load_requests_csv(tmp_path / "r.csv.gz", mode="closed", concurrency=2, stage_names=["a", "b"])
    assert [s.arrival_s for s in run.requests] == [0.0, 0.5]  # sorted by arrival
    assert [s.client for s in run.requests] == [0, 1]
    assert run.measured[0].itl_ms == 9.5  # given
    assert run.measured[1].itl_ms == pytest.approx(10.0)  # computed (140 - 50) / 9
    assert run.requests[0].prefix_group == "sys-a" and run.requests[0].prefix_tokens == 100
    assert [s.stage for s in run.requests] == [0, 1] and run.stage_names == ("a", "b")


def test_manifest_with_profile_stage_names(tmp_path):
    (tmp_path / "r.csv").write_text(CSV.read_text())
    (tmp_path / "profile.yaml").write_text((DATA / "ip_reasoning" / "profile.yaml").read_text())
    write_manifest(tmp_path, {"format": "requests-csv", "path": "r.csv", "profile": "profile.yaml",
                              "run_name": "x", "aggregates": {"ttft_mean_ms": 1.5}})
    run = load_experiment(tmp_path).runs[0]
    assert run.name == "x" and run.stage_names == ("stage0: 4 rps x 1200 s",)
    assert run.aggregates == {"ttft_mean_ms": 1.5}

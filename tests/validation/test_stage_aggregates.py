"""The stage-aggregates ground-truth format, the inference_perf workload it replays, and their comparison."""

from __future__ import annotations

from pathlib import Path

import pytest

from servesim.errors import GroundTruthError, WorkloadError
from servesim.validation import load_experiment
from servesim.validation.compare import aggregate_saturation_possible
from servesim.validation.runner import ModelChoice, compare, replay
from servesim.workload import build_source, parse_workload

from gt_helpers import write_manifest

CSV = """stage_index,metric_name,actual_ms
0,ttft_mean,20.0
0,itl_mean,5.0
0,e2e_mean,100.0
1,ttft_mean,30.0
1,itl_mean,6.0
1,e2e_mean,130.0
1,e2e_p90,150.0
-1,ttft_mean,26.0
-1,itl_mean,5.6
-1,e2e_mean,118.0
-1,e2e_p99,160.0
"""
IP = {"shared_prefix": {"num_groups": 2, "num_prompts_per_group": 3, "system_prompt_len": 100,
                        "question_len": 400, "output_len": 16},
      "stages": [{"rate": 2, "duration": 3}, {"rate": 4, "duration": 1}], "arrival": "constant"}


def _exp(tmp_path: Path, csv: str = CSV, **gt) -> Path:
    (tmp_path / "m.csv").write_text(csv)
    spec = {"format": "stage-aggregates", "path": "m.csv", "run_name": "r", "workload": {"inference_perf": IP, "seed": 1}}
    spec.update(gt)
    return write_manifest(tmp_path, {k: v for k, v in spec.items() if v is not None}, model="qwen2.5-7b-instruct",
                          tensor_parallel_size=1, engine={"max_num_seqs": 8, "num_cpu_blocks": 100})


def _requests(spec):
    src = build_source(spec)
    out = []
    while src.peek_arrival_s() is not None:
        out.append(src.pop())
    return out


def test_constant_stages_and_cycled_prompts_by_hand():
    spec = parse_workload({"inference_perf": {**IP, "shared_prefix": {**IP["shared_prefix"], "extra_input_tokens": 7}}})
    reqs = _requests(spec)
    # stage 0: 2 rps for 3 s -> 0, 0.5, ..., 2.5; stage 1: 4 rps for 1 s from t = 3 -> 3, 3.25, 3.5, 3.75
    assert [r.arrival_s for r in reqs] == [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.25, 3.5, 3.75]
    assert [r.stage for r in reqs] == [0] * 6 + [1] * 4
    assert {r.input_tokens for r in reqs} == {100 + 400 + 7} and {r.output_tokens for r in reqs} == {16}
    # 2 x 3 = 6 prompts sent in order, cyclically; each resend shares its whole prompt
    assert [r.prefix_group for r in reqs] == [f"prompt-{k % 6}" for k in range(10)]
    assert all(r.prefix_tokens == r.input_tokens for r in reqs)


def test_poisson_stage_counts_and_seed():
    ip = {**IP, "stages": [{"rate": 50, "duration": 40}, {"rate": 100, "duration": 20}], "arrival": "poisson"}
    a = _requests(parse_workload({"inference_perf": ip, "seed": 3}))
    b = _requests(parse_workload({"inference_perf": ip, "seed": 3}))
    assert [(r.arrival_s, r.input_tokens) for r in a] == [(r.arrival_s, r.input_tokens) for r in b]
    for stage, expected in ((0, 2000), (1, 2000)):
        n = sum(r.stage == stage for r in a)
        assert abs(n - expected) < 5 * expected**0.5  # Poisson count, 5 sigma
    assert min(r.arrival_s for r in a if r.stage == 1) >= 40.0


@pytest.mark.parametrize("data, match", [
    ({"inference_perf": {**IP, "stages": []}}, "stages"),
    ({"inference_perf": {**IP, "arrival": "gamma"}}, "arrival"),
    ({"inference_perf": {**IP, "shared_prefix": {**IP["shared_prefix"], "num_unique_system_prompts": 9}}},
     "num_unique_system_prompts: unknown key"),
    ({"inference_perf": IP, "input_tokens": 5}, "input_tokens cannot be combined with inference_perf"),
])
def test_inference_perf_workload_errors(data, match):
    with pytest.raises(WorkloadError, match=match) as exc:
        parse_workload(data)
    assert "\n" not in str(exc.value)


def test_loader_reads_stages_and_drops(tmp_path):
    exp = load_experiment(_exp(tmp_path, drop_metrics={"itl_mean": "client token counts"}))
    (run,) = exp.runs
    assert run.stage_names == ("stage0: 2 rps x 3 s", "stage1: 4 rps x 1 s")
    assert run.aggregates == {"ttft_mean_ms": 26.0, "e2e_mean_ms": 118.0, "e2e_p99_ms": 160.0,
                              "stage0_ttft_mean_ms": 20.0, "stage0_e2e_mean_ms": 100.0,
                              "stage1_ttft_mean_ms": 30.0, "stage1_e2e_mean_ms": 130.0, "stage1_e2e_p90_ms": 150.0}
    assert run.measured_means(1) == {"ttft_mean_ms": 30.0, "e2e_mean_ms": 130.0, "e2e_p90_ms": 150.0}
    assert run.notes["dropped_metrics"] == {"itl_mean": "client token counts"}
    assert exp.engine["num_cpu_blocks"] == 100 and "num_cpu_blocks" not in exp.engine_kwargs()


@pytest.mark.parametrize("csv, gt, match", [
    (CSV, {"workload": None}, r"experiment.yaml: ground_truth.workload: missing required key"),
    (CSV.replace("0,itl_mean", "0,tpot_mean"), {}, r"m.csv: line 3.metric_name='tpot_mean': not allowed"),
    (CSV + "2,ttft_mean,1\n", {}, r"m.csv: stage_index=2: the workload has 2 load stage\(s\)"),
    ("\n".join(l for l in CSV.splitlines() if not l.startswith("-1,")) + "\n", {}, r"no whole-run rows"),
    (CSV.replace("-1,e2e_p99,160.0", "-1,ttft_mean,27.0"), {}, r"line 12: stage -1 ttft_mean given twice"),
    (CSV.replace("20.0", "abc"), {}, r"m.csv: line 2.actual_ms='abc': expected a number"),
    (CSV, {"drop_metrics": ["itl_mean"]}, r"ground_truth.drop_metrics=\['itl_mean'\]: expected a mapping"),
    (CSV, {"workload": {"inference_perf": {**IP, "stages": [{"rate": -1, "duration": 1}]}}},
     r"experiment.yaml: ground_truth.workload: inference_perf.stages.0.rate=-1"),
])
def test_manifest_errors_are_one_line(tmp_path, csv, gt, match):
    with pytest.raises(GroundTruthError, match=match) as exc:
        load_experiment(_exp(tmp_path, csv, **gt))
    assert "\n" not in str(exc.value)


def test_compare_per_stage_equals_the_records(tmp_path):
    exp = load_experiment(_exp(tmp_path))
    (run,) = exp.runs
    result = replay(exp, run, ModelChoice("roofline-v2-corrected", "none"))
    comp = compare(exp, run, result)
    rows = {(r.stage, r.metric): r for r in comp.rows}
    assert set(rows) == {("all", "ttft_mean"), ("all", "e2e_mean"), ("all", "itl_mean"), ("all", "e2e_p99"),
                         (run.stage_names[0], "ttft_mean"), (run.stage_names[0], "e2e_mean"), (run.stage_names[0], "itl_mean"),
                         (run.stage_names[1], "ttft_mean"), (run.stage_names[1], "e2e_mean"), (run.stage_names[1], "itl_mean"),
                         (run.stage_names[1], "e2e_p90")}
    recs = [r for r in result.records if r.stage == 1]
    assert len(recs) == 4
    ttft = sum((r.first_token_s - r.arrival_s) * 1e3 for r in recs) / 4
    row = rows[(run.stage_names[1], "ttft_mean")]
    assert row.predicted == pytest.approx(ttft) and row.actual == 30.0
    assert row.signed_error == pytest.approx((ttft - 30.0) / 30.0 * 100)
    # measured TTFT mean 26 ms: 4.1 x 26 ms < 1 s rules measured saturation out
    assert comp.saturated_measured is False


def test_aggregate_saturation_bound():
    assert aggregate_saturation_possible(243.0) is False  # 4.1 x 243 = 996 ms
    assert aggregate_saturation_possible(244.0) is True  # 1000.4 ms
    assert aggregate_saturation_possible(None) is True


def test_fitted_on_names_the_units_even_when_the_start_is_kept(tmp_path):
    from servesim.latency.calibration import load_calibration
    from dataclasses import replace
    from servesim.validation.calibrate import fit

    exp = load_experiment(_exp(tmp_path))
    start = replace(load_calibration("default"), name="fold", fitted_on=["some/other-run"])
    result = fit([(exp, exp.runs[0])], start=start, iterations=1)
    assert result.calibration.fitted_on == ["test-exp/r"] and result.calibration.name == "fit"


def test_fit_window_keeps_the_stages_and_shortens_them(tmp_path):
    from servesim.validation.crossval import window_run

    (run,) = load_experiment(_exp(tmp_path)).runs
    cut = window_run(run, 2.0)
    assert [(s.rate, s.duration_s) for s in cut.workload_spec.inference_perf.stages] == [(2, 2.0), (4, 1.0)]
    assert cut.aggregates == run.aggregates and cut.stage_names == run.stage_names
    assert [r.arrival_s for r in _requests(cut.workload_spec)] == [0, 0.5, 1, 1.5, 2, 2.25, 2.5, 2.75]
    assert window_run(run, 10.0) is run and window_run(run, None) is run
    # the window spans at least 10 measured E2E means: 118 ms -> 1.18 s, so a 0.5 s window becomes 1.18 s
    short = window_run(run, 0.5)
    assert [s.duration_s for s in short.workload_spec.inference_perf.stages] == [pytest.approx(1.18), 1.0]


def test_calibrate_leaves_out_aggregate_runs_only_when_saturation_cannot_be_ruled_out(tmp_path):
    from servesim.cli.calibrate import _measured_saturated

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ok = load_experiment(_exp(tmp_path / "a"))  # mean TTFT 26 ms
    slow = load_experiment(_exp(tmp_path / "b", CSV.replace("-1,ttft_mean,26.0", "-1,ttft_mean,300.0")))
    assert _measured_saturated([ok]) == set() and _measured_saturated([slow]) == {"test-exp/r"}

"""Every user-facing input is validated before work starts: one line on stderr naming the file or flag, the field,
the bad value and what is allowed; exit code 2; no traceback; no output file.

Table-driven through the real CLI entry point (`servesim.cli.main`, in process for speed; a few cases again in a
subprocess). Each row: an id, the argv, and substrings the one-line message must contain.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from servesim.cli import main

FILES: dict[str, str] = {
    # model config.json
    "m_nohidden.json": '{"num_hidden_layers": 2, "num_attention_heads": 4}',
    "m_badhidden.json": '{"hidden_size": "abc", "num_hidden_layers": 2, "num_attention_heads": 4}',
    "m_nanhidden.json": '{"hidden_size": NaN, "num_hidden_layers": 2, "num_attention_heads": 4}',
    "m_neglayers.json": '{"hidden_size": 64, "num_hidden_layers": -2, "num_attention_heads": 4}',
    "m_trunc.json": '{"hidden_size": 64, "num_hid',
    "m_badquant.json": '{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100, '
                       '"quantization_config": {"quant_method": "compressed-tensors", "config_groups": [1]}}',
    # hardware
    "hw_neg.json": '{"name": "X", "bf16_tflops": -1, "hbm_tb_s": 3, "memory_gb": 80}',
    "hw_unknown.json": '{"name": "X", "bf16_tflops": 100, "hbm_tb_s": 3, "memory_gb": 80, "colour": 1}',
    "hw_bw.json": '{"name": "X", "bf16_tflops": 100, "hbm_tb_s": 3, "memory_gb": 80, "bw_efficiency": 1.5}',
    # traces
    "t_empty.csv": "",
    "t_header_only.csv": "arrival_time_s,input_tokens,output_tokens\n",
    "t_truncated.csv": "arrival_time_s,input_tokens,output_tokens\n0.0,100,10\n0.5,1",
    "t_nan.csv": "arrival_time_s,input_tokens,output_tokens\nnan,100,10\n",
    "t_negative.csv": "arrival_time_s,input_tokens,output_tokens\n-1,100,10\n",
    "t_unsorted.csv": "arrival_time_s,input_tokens,output_tokens\n1.0,100,10\n0.5,100,10\n",
    "t_nocolumn.csv": "arrival_time_s,input_tokens\n0,10\n",
    "t_zero_output.csv": "arrival_time_s,input_tokens,output_tokens\n0,10,0\n",
    "t_bad.jsonl": '{"arrival_time_s": 0, "input_tokens": 5, "output_tokens": 2}\n{"arrival_time_s": 1, "input_tok\n',
    "t_long.csv": "arrival_time_s,input_tokens,output_tokens\n0.0,100,10\n0.1,5000,10\n0.2,100,10\n",
    # workload YAML
    "w_unknown.yaml": "input_tokens: 100\noutput_tokens: 10\narrival: {process: poisson, rate: 1}\nnum_requests: 5\nrat: 3\n",
    "w_minmax.yaml": "input_tokens: {kind: uniform, min: 100, max: 10}\noutput_tokens: 10\narrival: {process: poisson, rate: 1}\nnum_requests: 5\n",
    "w_syntax.yaml": "input_tokens: [1,\n",
    "w_list.yaml": "- 1\n- 2\n",
    "w_norate.yaml": "input_tokens: 100\noutput_tokens: 10\narrival: {process: poisson}\nnum_requests: 5\n",
    # experiment.yaml
    "e_unknown/experiment.yaml": "name: x\nmodel: llama-2-7b-hf\nhardware: H100\ntensor_parallel_size: 1\nengine: {}\n"
                                 "ground_truth: {format: requests-csv, path: r.csv}\nbogus: 1\n",
    "e_tp/experiment.yaml": "name: x\nmodel: llama-2-7b-hf\nhardware: H100\ntensor_parallel_size: 0\nengine: {}\n"
                            "ground_truth: {format: requests-csv, path: r.csv}\n",
    "e_format/experiment.yaml": "name: x\nmodel: llama-2-7b-hf\nhardware: H100\ntensor_parallel_size: 1\nengine: {}\n"
                                "ground_truth: {format: csv, path: r.csv}\n",
    "e_nodata/experiment.yaml": "name: x\nmodel: llama-2-7b-hf\nhardware: H100\ntensor_parallel_size: 1\nengine: {}\n"
                                "ground_truth: {format: requests-csv, path: r.csv}\n",
    "e_engine/experiment.yaml": "name: x\nmodel: llama-2-7b-hf\nhardware: H100\ntensor_parallel_size: 1\nengine: {max_num_seq: 4}\n"
                                "ground_truth: {format: requests-csv, path: r.csv}\n",
    # calibration
    "c_trunc.json": '{"theta": ',
    "c_feature.json": '{"theta": {"bogus": 1}}',
    "c_negative.json": '{"theta": {"step": -1}}',
    "c_field.json": '{"theta": {}, "colour": 1}',
    # sweeps
    "s_unknown.yaml": "base: {model: llama-2-7b-hf}\ngrid: {bogus: [1]}\n",
    "s_negrate.yaml": "base: {workload: {input_tokens: 10, output_tokens: 2, arrival: {process: poisson, rate: 1}, num_requests: 2}}\n"
                      "grid: {rate: [1, -2]}\n",
    "s_latency.yaml": "base: {latency_model: bogus, workload: {input_tokens: 10, output_tokens: 2, arrival: synchronous, num_requests: 2}}\n"
                      "grid: {tp: [1]}\n",
    "s_model.yaml": "base: {workload: {input_tokens: 10, output_tokens: 2, arrival: synchronous, num_requests: 2}}\n"
                    "grid: {model: [llama-2-7b-hf, lama-2-7b]}\n",
    "s_syntax.yaml": "base: [1\n",
    "s_list.yaml": "base: [1]\n",
    "s_ok.yaml": "base: {workload: {input_tokens: 10, output_tokens: 2, arrival: synchronous, num_requests: 2}}\ngrid: {tp: [1]}\n",
    "a_folder/keep.txt": "",
}

RUN = ["run", "--num-requests", "3"]
# (id, argv, substrings of the one-line message). "OUT" in argv is replaced by a path that must not be created.
CASES: list[tuple[str, list[str], list[str]]] = [
    # model config
    ("model-missing-hidden_size", [*RUN, "--model", "m_nohidden.json", "-o", "OUT"], ["m_nohidden.json", "hidden_size", "missing"]),
    ("model-non-numeric-hidden_size", [*RUN, "--model", "m_badhidden.json", "-o", "OUT"], ["m_badhidden.json", "hidden_size", "'abc'", "integer"]),
    ("model-nan-hidden_size", [*RUN, "--model", "m_nanhidden.json"], ["hidden_size", "nan", "integer"]),
    ("model-negative-layers", [*RUN, "--model", "m_neglayers.json"], ["num_hidden_layers", "-2", ">= 1"]),
    ("model-truncated-json", [*RUN, "--model", "m_trunc.json"], ["m_trunc.json", "not valid JSON"]),
    ("model-bad-quantization", [*RUN, "--model", "m_badquant.json"], ["quantization_config.config_groups", "[1]", "object"]),
    ("model-missing-file", [*RUN, "--model", "./nope.json"], ["--model", "nope.json", "no such file"]),
    ("model-unknown-did-you-mean", [*RUN, "--model", "lama-2-7b"], ["--model lama-2-7b", "did you mean 'llama-2-7b'"]),
    ("heads-not-divisible-by-tp", [*RUN, "--tp", "3", "-o", "OUT"], ["num_attention_heads=32", "tensor_parallel_size=3"]),
    ("kv-heads-vs-tp", [*RUN, "--model", "qwen2.5-7b-instruct", "--tp", "7"], ["num_key_value_heads=4", "tensor_parallel_size=7"]),
    ("model-does-not-fit", [*RUN, "--model", "llama-2-70b-hf", "-o", "OUT"],
     ["does not fit on H100-SXM at TP1", "weights need 128.5 GiB per GPU", "71.3 GiB available", "--tp"]),
    # hardware
    ("gpu-unknown-did-you-mean", [*RUN, "--hardware", "H1000"], ["--hardware H1000", "did you mean 'H100-SXM'", "presets:"]),
    ("hardware-config-missing", [*RUN, "--hardware-config", "nope.json"], ["--hardware-config nope.json", "cannot read"]),
    ("hardware-negative-tflops", [*RUN, "--hardware-config", "hw_neg.json"], ["hw_neg.json", "bf16_tflops", "-1", "> 0"]),
    ("hardware-unknown-field", [*RUN, "--hardware-config", "hw_unknown.json"], ["hw_unknown.json", "unknown field 'colour'", "allowed:"]),
    ("hardware-bw-efficiency", [*RUN, "--hardware-config", "hw_bw.json"], ["bw_efficiency", "1.5", "(0, 1]"]),
    # engine flags
    ("block-size-zero", [*RUN, "--block-size", "0", "-o", "OUT"], ["block_size=0", "greater than or equal to 1"]),
    ("block-size-negative", [*RUN, "--block-size", "-16"], ["block_size=-16", "greater than or equal to 1"]),
    ("max-num-seqs-zero", [*RUN, "--max-num-seqs", "0"], ["max_num_seqs=0", "greater than or equal to 1"]),
    ("max-num-batched-tokens-zero", [*RUN, "--max-num-batched-tokens", "0"], ["max_num_batched_tokens=0", "greater than or equal to 1"]),
    ("gpu-memory-utilization-above-1", [*RUN, "--gpu-memory-utilization", "1.5"], ["gpu_memory_utilization=1.5", "less than or equal to 1"]),
    ("num-gpu-blocks-override-1", [*RUN, "--num-gpu-blocks-override", "1"], ["num_gpu_blocks=1", ">= 2"]),
    ("long-prefill-threshold-negative", [*RUN, "--long-prefill-token-threshold", "-1"], ["long_prefill_token_threshold=-1", "greater than or equal to 0"]),
    ("max-model-len-zero", [*RUN, "--max-model-len", "0"], ["max_model_len=0", "greater than or equal to 1"]),
    ("tp-zero", [*RUN, "--tp", "0", "-o", "OUT"], ["--tp='0'", "greater than or equal to 1"]),
    # workload flags
    ("rate-zero", [*RUN, "--rate", "0", "-o", "OUT"], ["arrival.rate=0.0", "greater than 0"]),
    ("rate-negative", [*RUN, "--rate", "-1"], ["arrival.rate=-1.0", "greater than 0"]),
    ("rate-not-a-number", [*RUN, "--rate", "abc"], ["--rate='abc'", "valid number"]),
    ("rate-nan", [*RUN, "--rate", "nan"], ["arrival.rate=nan", "finite"]),
    ("num-requests-zero", ["run", "--num-requests", "0"], ["num_requests=0", "greater than or equal to 1"]),
    ("num-requests-fraction", ["run", "--num-requests", "2.5"], ["--num-requests='2.5'", "valid integer"]),
    ("prompt-tokens-zero", [*RUN, "--prompt-tokens", "0"], ["input_tokens", "value=0", ">= 1"]),
    ("output-tokens-negative", [*RUN, "--output-tokens", "-3"], ["output_tokens", "value=-3", ">= 1"]),
    ("prompt-min-above-max", [*RUN, "--prompt-tokens", "100", "--prompt-tokens-min", "200", "--prompt-tokens-max", "50", "-o", "OUT"],
     ["--prompt-tokens-max=50", "must be >= --prompt-tokens-min (200)"]),
    ("arrival-unknown", [*RUN, "--arrival", "bogus"], ["arrival.process='bogus'", "'poisson'"]),
    ("concurrency-zero", [*RUN, "--concurrency", "0"], ["arrival.concurrency=0", "greater than or equal to 1"]),
    ("duration-negative", [*RUN, "--duration", "-1"], ["duration_s=-1.0", "greater than 0"]),
    ("cv-with-poisson", [*RUN, "--cv", "2"], ["--cv", "does not apply to arrival 'poisson'"]),
    ("frontend-latency-negative", [*RUN, "--frontend-latency-ms", "-1"], ["--frontend-latency-ms", "finite number >= 0"]),
    # traces
    ("trace-empty", ["run", "--trace", "t_empty.csv", "-o", "OUT"], ["t_empty.csv", "empty trace file"]),
    ("trace-header-only", ["run", "--trace", "t_header_only.csv"], ["t_header_only.csv", "no requests after the header"]),
    ("trace-truncated", ["run", "--trace", "t_truncated.csv", "-o", "OUT"], ["t_truncated.csv: line 3", "output_tokens is missing"]),
    ("trace-nan-arrival", ["run", "--trace", "t_nan.csv"], ["t_nan.csv: line 2", "arrival_time_s='nan'", "finite"]),
    ("trace-negative-arrival", ["run", "--trace", "t_negative.csv"], ["t_negative.csv: line 2", "arrival_time_s='-1'", ">= 0"]),
    ("trace-unsorted", ["run", "--trace", "t_unsorted.csv", "-o", "OUT"], ["t_unsorted.csv: line 3", "earlier than the previous row", "sort the trace"]),
    ("trace-missing-column", ["run", "--trace", "t_nocolumn.csv"], ["t_nocolumn.csv", "missing column 'output_tokens'"]),
    ("trace-zero-output", ["run", "--trace", "t_zero_output.csv"], ["t_zero_output.csv: line 2", "output_tokens='0'", ">= 1"]),
    ("trace-bad-jsonl", ["run", "--trace", "t_bad.jsonl"], ["t_bad.jsonl: line 2", "not valid JSON"]),
    ("trace-missing-file", ["run", "--trace", "nope.csv"], ["nope.csv", "cannot read trace"]),
    ("trace-with-rate", ["run", "--trace", "t_long.csv", "--rate", "3"], ["--trace cannot be combined with --rate"]),
    # workload YAML
    ("workload-unknown-key", ["run", "--workload", "w_unknown.yaml", "-o", "OUT"], ["w_unknown.yaml", "rat: unknown key", "allowed:", "arrival"]),
    ("workload-min-above-max", ["run", "--workload", "w_minmax.yaml"], ["w_minmax.yaml", "input_tokens", "max=10", ">= min (100)"]),
    ("workload-yaml-syntax", ["run", "--workload", "w_syntax.yaml"], ["w_syntax.yaml", "not valid YAML at line 2"]),
    ("workload-not-a-mapping", ["run", "--workload", "w_list.yaml"], ["w_list.yaml", "expected a mapping", "list"]),
    ("workload-missing-rate", ["run", "--workload", "w_norate.yaml"], ["w_norate.yaml", "arrival", "exactly one of rate or stages"]),
    ("workload-missing-file", ["run", "--workload", "nope.yaml"], ["nope.yaml", "cannot read workload file"]),
    ("workload-unknown-preset", ["run", "--workload", "chatty"], ["preset='chatty'", "must be one of chat"]),
    # experiment.yaml
    ("experiment-unknown-key", ["validate", "e_unknown", "-o", "OUT"], ["e_unknown/experiment.yaml", "bogus: unknown key", "allowed:"]),
    ("experiment-tp-zero", ["validate", "e_tp"], ["e_tp/experiment.yaml", "tensor_parallel_size=0", "an integer >= 1"]),
    ("experiment-bad-format", ["validate", "e_format"], ["ground_truth.format='csv'", "requests-csv"]),
    ("experiment-data-missing", ["validate", "e_nodata"], ["ground_truth.path='r.csv'", "file not found"]),
    ("experiment-engine-typo", ["validate", "e_engine"], ["engine.max_num_seq: unknown key", "max_num_seqs"]),
    ("experiment-folder-missing", ["validate", "nope_dir"], ["nope_dir", "experiment manifest not found"]),
    # calibration
    ("calibration-truncated", [*RUN, "--latency-model", "calibrated", "--calibration", "c_trunc.json", "-o", "OUT"], ["--calibration c_trunc.json", "not valid JSON"]),
    ("calibration-unknown-feature", [*RUN, "--latency-model", "calibrated", "--calibration", "c_feature.json"], ["theta.bogus", "unknown feature", "allowed:"]),
    ("calibration-negative-theta", [*RUN, "--latency-model", "calibrated", "--calibration", "c_negative.json"], ["theta.step=-1", ">= 0"]),
    ("calibration-unknown-field", [*RUN, "--latency-model", "calibrated", "--calibration", "c_field.json"], ["unknown field 'colour'"]),
    ("calibration-missing-file", [*RUN, "--latency-model", "calibrated", "--calibration", "nope.json"], ["--calibration nope.json", "cannot read"]),
    ("calibration-without-calibrated-model", [*RUN, "--latency-model", "roofline-v2", "--calibration", "c_negative.json"],
     ["--calibration c_negative.json", "only used with --latency-model calibrated"]),
    # sweeps
    ("sweep-unknown-grid-key", ["sweep", "s_unknown.yaml", "-o", "OUT"], ["s_unknown.yaml", "grid.bogus: unknown run parameter", "allowed:"]),
    ("sweep-negative-rate-point", ["sweep", "s_negrate.yaml", "-o", "OUT"], ["sweep point 1 (rate=-2)", "arrival.rate=-2", "greater than 0"]),
    ("sweep-unknown-latency-model", ["sweep", "s_latency.yaml", "-o", "OUT"], ["sweep point 0", "latency_model='bogus'", "roofline-v2"]),
    ("sweep-unknown-model-point", ["sweep", "s_model.yaml", "-o", "OUT"], ["sweep point 1 (model=lama-2-7b)", "did you mean"]),
    ("sweep-yaml-syntax", ["sweep", "s_syntax.yaml"], ["s_syntax.yaml", "invalid YAML"]),
    ("sweep-base-not-mapping", ["sweep", "s_list.yaml"], ["s_list.yaml", "base", "dictionary"]),
    ("sweep-missing-file", ["sweep", "nope.yaml"], ["sweep file nope.yaml", "not found"]),
    ("sweep-output-folder-missing", ["sweep", "s_ok.yaml", "-o", "nodir/r.jsonl"], ["--output nodir/r.jsonl", "folder nodir does not exist"]),
    # latency model / overhead strings
    ("overhead-unknown", [*RUN, "--latency-model", "roofline-v2", "--overhead", "bogus", "-o", "OUT"], ["--overhead bogus", "unknown variant", "allowed: none, fixed, per-layer"]),
    ("overhead-bad-constant", [*RUN, "--latency-model", "roofline-v2", "--overhead", "per-layer:abc"], ["--overhead per-layer:abc", "'abc'", "number >= 0"]),
    ("latency-model-unknown", [*RUN, "--latency-model", "roofline-v3", "-o", "OUT"], ["--latency-model roofline-v3", "unknown model", "roofline-v2"]),
    ("step-overhead-unknown", ["step", "--overhead", "some"], ["--overhead some", "unknown variant"]),
    ("step-prefill-not-a-number", ["step", "--prefill", "abc"], ["--prefill 'abc'", "LEN or LEN@CTX"]),
    # outputs and usage
    ("output-folder-missing", [*RUN, "-o", "nodir/r.json"], ["--output nodir/r.json", "folder nodir does not exist"]),
    ("requests-csv-folder-missing", [*RUN, "--requests-csv", "nodir/r.csv"], ["--requests-csv nodir/r.csv", "folder nodir does not exist"]),
    ("output-is-a-folder", [*RUN, "-o", "a_folder"], ["--output a_folder", "is a folder"]),
    ("requests-csv-is-a-folder", [*RUN, "--requests-csv", "a_folder"], ["--requests-csv a_folder", "is a folder"]),
    ("capacity-output-is-a-folder", ["capacity", "--slo", "ttft_p99_ms=100", "-o", "a_folder"], ["--output a_folder", "is a folder"]),
    ("capacity-bad-slo", ["capacity", "--slo", "ttft_p99=100"], ["ttft_p99=100"]),
    ("unknown-flag", [*RUN, "--bogus"], ["No such option: --bogus"]),
    ("flag-without-value", ["run", "--num-requests"], ["--num-requests", "requires an argument"]),
    ("unknown-command", ["simulate"], ["No such command 'simulate'"]),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad-input")
    for name, text in FILES.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_the_table_is_big_enough():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case_id,argv,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line(case_id, argv, expected, workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    out_file = workdir / f"out-{case_id}.json"
    argv = [str(out_file) if a == "OUT" else a for a in argv]
    code, out, err = run_cli(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, (case_id, code, out, err)
    assert len(lines) == 1 and lines[0].startswith("servesim: error: "), err
    assert "Traceback" not in err and "Traceback" not in out
    for piece in expected:
        assert piece in lines[0], (piece, lines[0])
    assert not out_file.exists(), "no output file on a refused run"
    assert not list(workdir.glob(f".out-{case_id}*")), "no temporary file left behind"


def test_request_longer_than_max_model_len_is_rejected_and_counted(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    code, out, err = run_cli(["run", "--trace", "t_long.csv", "--max-model-len", "1000", "--latency-model", "roofline-v2", "-o", "long.json"], capsys)
    assert code == 0, err
    doc = json.loads((workdir / "long.json").read_text())
    assert doc["summary"]["rejected"] == 1 and doc["summary"]["completed"] == 2
    rejected = [r for r in doc["requests"] if r["rejected"]]
    assert [r["id"] for r in rejected] == [1] and "rejected 1" in out


def test_sweep_that_fails_validation_writes_nothing(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    for spec in ("s_negrate.yaml", "s_latency.yaml", "s_model.yaml"):
        code, _, err = run_cli(["sweep", spec], capsys)
        assert code == 2, err
        assert not (workdir / spec.replace(".yaml", ".results.jsonl")).exists()


@pytest.mark.parametrize("argv", [["run", "--rate", "abc"], ["run", "--trace", "t_unsorted.csv"], ["experiment"]])
def test_real_process_never_prints_a_traceback(argv, workdir):
    r = subprocess.run([sys.executable, "-m", "servesim", *argv], capture_output=True, text=True, cwd=workdir)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    if argv != ["experiment"]:  # a bare command group prints its help instead
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


# ---------------------------------------------------------------------------------------------------------
# Calibration files with bad metadata (found by this suite, fixed in latency/calibration.py).
CALIBRATION_CRASHES = {
    "notes-not-a-mapping": '{"theta": {}, "notes": [1, 2]}',
    "fitted_on-not-a-list": '{"theta": {}, "fitted_on": 5}',
}


@pytest.mark.parametrize("name", sorted(CALIBRATION_CRASHES))
def test_calibration_file_with_bad_metadata_fails_cleanly(name, workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    (workdir / f"cal-{name}.json").write_text(CALIBRATION_CRASHES[name])
    try:
        code, _, err = run_cli([*RUN, "--latency-model", "calibrated", "--calibration", f"cal-{name}.json"], capsys)
    except Exception as exc:  # noqa: BLE001 - the bug: an uncaught exception escapes main()
        pytest.fail(f"uncaught {type(exc).__name__}: {exc}")
    assert code == 2 and "servesim: error:" in err


def test_calibration_flags_must_be_booleans(tmp_path):
    from servesim.errors import ServesimError
    from servesim.latency.calibration import load_calibration

    p = tmp_path / "c.json"
    p.write_text('{"theta": {}, "layers_over_tp": "false"}')
    with pytest.raises(ServesimError, match="layers_over_tp"):
        load_calibration(p)

"""A generated pass over every option of every command with boundary values (0, -1, nan, inf, huge, empty, wrong type).

The options are read from the typer/click command tree, so a new flag is covered without editing this file. Each
(command, flag, value) that is invalid must give exit code 2, exactly one stderr line naming the flag (or the field
it sets), no traceback, and nothing written: the run happens in an empty temporary folder that must stay empty,
and -o points at a path that must not be created. The values that ARE valid for a flag are listed in ALLOWED
(a documented per-flag table of ranges) and skipped; a flag missing from it accepts none of the boundary values.

In process (servesim.cli.main) with tiny workloads (3 requests) so the pass stays fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from servesim.cli import _register, app

from ._cli import run_cli

# Boundary values, by name; "huge" depends on the option's type.
VALUES = {"zero": "0", "neg": "-1", "nan": "nan", "inf": "inf", "huge": None, "empty": "", "wrong": "abc"}
HUGE = {int: "99999999999999999999", float: "1e300", str: "9" * 40}

# Valid boundary values per (command, flag): these are skipped, with the range that makes them valid.
PATHS_OK = {"zero", "neg", "nan", "inf", "huge", "wrong"}  # any non-empty name is a valid output file name
ALLOWED: dict[tuple[str, str], set[str]] = {
    ("run", "--seed"): {"zero"},  # seeds: [0, 2**63 - 1]
    ("validate", "--seed"): {"zero"},
    ("capacity", "--seed"): {"zero"},
    ("experiment h2b", "--seed"): {"zero"},
    ("run", "--long-prefill-token-threshold"): {"zero", "huge"},  # >= 0 (0 = no cap; any cap above the prompt is no cap)
    ("run", "--prefill-instances"): {"zero"},  # 0 = no prefill/decode pools (the default); else with --decode-instances, <= 1024
    ("run", "--decode-instances"): {"zero"},  # 0 = no prefill/decode pools (the default)
    ("run", "--max-num-seqs"): {"huge"},  # >= 1: vLLM accepts any; the scheduler never holds more than the requests
    ("run", "--max-num-batched-tokens"): {"huge"},  # >= 1, as in vLLM
    ("capacity", "--max-num-seqs"): {"huge"},
    ("capacity", "--max-num-batched-tokens"): {"huge"},
    ("run", "--prompt-tokens-min"): {"zero"},  # [0, mean]
    ("run", "--output-tokens-min"): {"zero"},
    ("run", "--prompt-tokens-stdev"): {"zero"},  # [0, 2**31 - 1]; 0 = constant lengths
    ("run", "--output-tokens-stdev"): {"zero"},
    ("capacity", "--prompt-tokens-stdev"): {"zero"},
    ("capacity", "--output-tokens-stdev"): {"zero"},
    ("run", "--prefix-tokens"): {"zero"},  # [0, 2**31 - 1]
    ("run", "--rate"): {"huge"},  # (0, inf): 1e300 req/s sends the 3 requests at once
    ("run", "--duration"): {"huge"},  # (0, inf): the 3 requests end the run first
    ("capacity", "--duration"): {"huge"},
    ("run", "--frontend-latency-ms"): {"zero"},  # [0, 60 s]
    ("run", "--max-cpu-loras"): {"huge"},
    ("capacity", "--max-cpu-loras"): {"huge"},  # >= --max-loras: a cap on cached adapters (CPU memory is not modelled)
    ("run", "--output"): PATHS_OK,
    ("run", "--requests-csv"): PATHS_OK,
    ("capacity", "--output"): PATHS_OK,
    ("sweep", "--output"): PATHS_OK,
    ("validate", "--output"): PATHS_OK,
    ("calibrate", "--output"): PATHS_OK,
    ("calibrate", "--report"): PATHS_OK,
    ("calibrate", "--fit-window"): {"zero", "huge"},  # [0, inf): 0 = whole runs; a window longer than a run = whole run
    ("calibrate", "--iterations"): {"huge"},  # >= 1 (stops when converged)
    ("calibrate", "--workers"): {"huge"},  # >= 1 (capped by the number of folds)
    ("sweep", "--workers"): {"huge"},  # >= 1 (capped by the number of points)
    ("capacity", "--workers"): {"huge"},
    ("experiment h2b", "--output-dir"): PATHS_OK | {"empty"},  # a folder name to create ('' is the current folder)
    ("validate", "--plots"): PATHS_OK | {"empty"},
    ("sweep", "--plot"): set(),  # a PNG path: the grid in BASE has no rate, so every value is refused
    ("run", "--request-rate"): {"inf", "huge"},  # (0, inf]: inf = every request at t=0 (vllm bench's default)
    ("run", "--kv-offloading-size"): {"zero"},  # [0, 65536] GiB; 0 = off
    ("capacity", "--kv-offloading-size"): {"zero"},
    ("validate", "--kv-offloading-size"): {"zero"},  # overrides every manifest's setting; 0 = off
}
# Left out, with the reason: sweep --ray-address without Ray installed is the optional-dependency check (issue 11
# part A, sweep/runner.py opens its journal first); it is refused with one line, but the journal is already there.
SKIP: set[tuple[str, str]] = {("sweep", "--ray-address")}

# Minimal valid invocation per command (OUT: a path that must not be created); EXTRA: what a flag needs beside it.
BASE = {
    "run": ["run", "--num-requests", "3", "--latency-model", "roofline-v2", "-o", "OUT"],
    "step": ["step"],
    "models": ["models"],
    "capacity": ["capacity", "--slo", "ttft_p99_ms=500", "--num-requests", "3", "-o", "OUT"],
    "sweep": ["sweep", "s.yaml", "-o", "OUT.jsonl"],
    "validate": ["validate", "e"],
    "calibrate": ["calibrate", "e"],
    "experiment h2b": ["experiment", "h2b"],
}
EXTRA = {
    ("run", "--prompt-tokens-stdev"): ["--prompt-tokens", "100"],
    ("run", "--prompt-tokens-min"): ["--prompt-tokens", "100"],
    ("run", "--prompt-tokens-max"): ["--prompt-tokens", "100"],
    ("run", "--output-tokens-stdev"): ["--output-tokens", "10"],
    ("run", "--output-tokens-min"): ["--output-tokens", "10"],
    ("run", "--output-tokens-max"): ["--output-tokens", "10"],
    ("capacity", "--prompt-tokens-stdev"): ["--prompt-tokens", "100"],
    ("capacity", "--output-tokens-stdev"): ["--output-tokens", "10"],
    ("run", "--cv"): ["--arrival", "gamma"],
    ("run", "--trace-format"): ["--trace", "t.csv"],
    ("run", "--trace-columns"): ["--trace", "t.csv"],
    ("run", "--tokenizer"): ["--trace", "sg.json", "--rate", "5"],
    ("run", "--burstiness"): ["--request-rate", "4"],
    ("run", "--calibration"): ["--latency-model", "calibrated"],
    ("step", "--calibration"): ["--latency-model", "calibrated"],
    ("run", "--max-loras"): ["--enable-lora"],
    ("run", "--max-lora-rank"): ["--enable-lora"],
    ("run", "--max-cpu-loras"): ["--enable-lora"],
    ("run", "--lora-adapters"): ["--enable-lora"],
    ("capacity", "--max-loras"): ["--enable-lora"],
    ("capacity", "--max-lora-rank"): ["--enable-lora"],
    ("capacity", "--max-cpu-loras"): ["--enable-lora"],
    ("capacity", "--lora-adapters"): ["--enable-lora"],
    ("step", "--max-lora-rank"): ["--enable-lora"],
    ("step", "--lora-adapters"): ["--enable-lora"],
}
# What the one-line message may call a flag instead of its own name (the field it sets).
ALIASES = {
    "--tp": ("tensor_parallel_size",), "--prompt-tokens": ("input_tokens",), "--output-tokens": ("output_tokens",),
    "--duration": ("duration_s",), "--num-gpu-blocks-override": ("num_gpu_blocks",), "--rate": ("arrival.rate", "rate"),
    "--arrival": ("arrival.process",), "--concurrency": ("arrival.concurrency",), "--cv": ("arrival.cv",),
    "--prefill": ("--prefill",), "--decode": ("--decode",), "--trace": ("trace",), "--rate-min": ("--rate-min",),
    "--rate-max": ("--rate-max",), "--kv-offloading-size": ("kv_offloading_size",), "--kv-offloading-backend": ("kv_offloading_backend",), "--slo": ("--slo",), "--ray-address": ("--ray",), "--prompt-tokens-min": ("--prompt-tokens",),
    "--prompt-tokens-max": ("--prompt-tokens",), "--output-tokens-min": ("--output-tokens",), "--output-tokens-max": ("--output-tokens",),
    "--trace-format": ("trace.format",), "--trace-columns": ("trace.columns",), "--tokenizer": ("--tokenizer",),
    "--burstiness": ("arrival.burstiness",),
}
FILES = {
    "s.yaml": "base: {latency_model: roofline-v2, workload: {input_tokens: 10, output_tokens: 2, arrival: synchronous, num_requests: 2}}\n"
              "grid: {tp: [1]}\n",
    "e/experiment.yaml": "name: x\nmodel: llama-2-7b-hf\nhardware: H100\ntensor_parallel_size: 1\nengine: {}\n"
                         "ground_truth: {format: requests-csv, path: r.csv}\n",
    "t.csv": "arrival_time_s,input_tokens,output_tokens\n0,10,2\n",
    "sg.json": '[{"conversations": [{"from": "human", "value": "hello there"}, {"from": "gpt", "value": "hi"}]}]',
    "e/r.csv": "arrival_time_s,input_tokens,output_tokens,ttft_ms,e2e_ms\n0.0,10,2,10.0,20.0\n1.0,10,2,10.0,20.0\n",
}


def _options() -> list[tuple[str, str, type]]:
    """(command path, long flag, value type) for every value-taking option of every command."""
    _register()
    root = typer.main.get_command(app)
    out: list[tuple[str, str, type]] = []

    def walk(cmd, path: list[str]) -> None:  # type: ignore[no-untyped-def]
        if hasattr(cmd, "commands"):
            for name, sub in sorted(cmd.commands.items()):
                walk(sub, [*path, name])
            return
        for p in cmd.params:
            if not type(p).__name__.endswith("Option") or p.is_flag or p.name == "help":
                continue
            flag = next((o for o in p.opts if o.startswith("--")), p.opts[0])
            kind = getattr(p, "bare_type", None) or str
            kind = kind if kind in (int, float) else str
            out.append((" ".join(path), flag, kind))

    walk(root, [])
    return out


def _cases() -> list[tuple[str, str, str, str]]:
    cases = []
    for command, flag, kind in _options():
        if (command, flag) in SKIP:
            continue
        for name, value in VALUES.items():
            if name in ALLOWED.get((command, flag), set()):
                continue
            cases.append((command, flag, name, HUGE[kind] if value is None else value))
    return cases


CASES = _cases()


def test_every_command_is_covered():
    commands = {c for c, _, _ in _options()}
    assert commands <= set(BASE), f"add a BASE invocation for {sorted(commands - set(BASE))}"
    assert len(CASES) >= 300  # grows with every new flag


@pytest.fixture()
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flags-files")
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize("command,flag,name,value", CASES, ids=[f"{c}:{f}={n}" for c, f, n, _ in CASES])
def test_invalid_flag_value_is_refused(command, flag, name, value, files, tmp_path, monkeypatch, capsys):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = tmp_path / "out.json"
    base = [str(out) if a == "OUT" else str(out.with_suffix(".jsonl")) if a == "OUT.jsonl" else (str(files / a) if (files / a).exists() and a not in ("run", "step") else a) for a in BASE[command]]
    extra = [str(files / a) if a.endswith((".csv", ".json")) else a for a in EXTRA.get((command, flag), [])]
    argv = [*base, *extra, flag, value]
    code, stdout, err = run_cli(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, (argv, code, stdout[-300:], err[-500:])
    assert len(lines) == 1 and lines[0].startswith("servesim: error: "), err
    assert "Traceback" not in err + stdout
    names = (flag, flag.lstrip("-").replace("-", "_"), *ALIASES.get(flag, ()))
    assert any(n in lines[0] for n in names), (names, lines[0])
    assert not out.exists() and not out.with_suffix(".jsonl").exists(), "nothing written on a refused command"
    assert not list(cwd.iterdir()), f"nothing written in the working folder: {list(cwd.iterdir())}"

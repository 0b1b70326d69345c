"""One-off fuzzer for servesim's file loaders (NOT collected by pytest: run it by hand).

    .venv/bin/python tests/reliability/fuzz_loaders.py --seconds 600            # every target, time split evenly
    .venv/bin/python tests/reliability/fuzz_loaders.py --target trace_csv --seconds 60

Contract under test: a loader given any file content either returns or raises a `ServesimError` subclass
with a one-line message. Any other exception (or a multi-line message) is a bug; each distinct one is
reported once, keyed by exception type and the innermost servesim frame, with the smallest input seen.

Inputs are drawn with hypothesis from valid seed files: structural mutations of the parsed document
(replace any value with an adversarial one: NaN, ±inf, huge/negative/zero numbers, wrong types, empty
containers; delete or add keys; duplicate or drop list items) and textual mutations of the serialised
file (truncation, byte insertion, deletion). Targets: trace readers (CSV, JSONL, inference-perf JSON),
workload YAML, experiment manifests with each ground-truth format, calibration JSON, model config.json,
hardware JSON.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import math
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from servesim.errors import ServesimError  # noqa: E402

DATA = ROOT / "src" / "servesim" / "data"
TESTDATA = ROOT / "tests"

# ----------------------------------------------------------------------------- adversarial values
WEIRD_SCALARS = [
    0, -1, 1, 2, -(2**63), 2**63, 10**30, 1e308, -1e308, 1e-320, 0.5, -0.0, math.nan, math.inf, -math.inf,
    True, False, None, "", " ", "abc", "1", "1.5", "nan", "inf", "-1", "0x10", "1e999", "\u00e9\u4e2d", "\x00",
    [], {}, [1], {"a": 1}, [None], "a\nb",
]
scalar = st.one_of(
    st.sampled_from(WEIRD_SCALARS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
)
json_value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6).map(copy.deepcopy)  # fresh objects: mutations must not touch WEIRD_SCALARS


def _nodes(doc: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every node of a JSON-like tree (the root is ())."""
    out = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _nodes(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:40]):  # long lists: the first items are representative
            out += _nodes(v, path + (i,))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _set(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def mutate_tree(data: st.DataObject, doc: Any, keys: list[str]) -> Any:
    """Apply 1-4 random structural mutations to a deep copy of doc."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 4), label="n_mutations")):
        paths = _nodes(doc)
        path = data.draw(st.sampled_from(paths), label="path")
        node = _get(doc, path)
        op = data.draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "dup", "empty", "stringify"]), label="op")
        if op == "replace" or (op in ("delete", "dup") and not path):
            doc = _set(doc, path, data.draw(json_value, label="value"))
        elif op == "delete":
            parent = _get(doc, path[:-1])
            del parent[path[-1]]
        elif op == "add" and isinstance(node, dict):
            node[data.draw((st.sampled_from(keys) | st.text(max_size=8)) if keys else st.text(max_size=8), label="key")] = data.draw(json_value, label="value")
        elif op == "add" and isinstance(node, list):
            node.append(data.draw(json_value, label="value"))
        elif op == "dup" and isinstance(_get(doc, path[:-1]), list):
            _get(doc, path[:-1]).insert(path[-1], copy.deepcopy(node))
        elif op == "empty":
            doc = _set(doc, path, type(node)() if isinstance(node, (list, dict, str)) else 0)
        elif op == "stringify":
            doc = _set(doc, path, json.dumps(node) if not isinstance(node, str) else node + "x")
    return doc


def mutate_text(data: st.DataObject, text: str) -> str:
    """Textual damage: truncate, insert or delete characters."""
    op = data.draw(st.sampled_from(["none", "none", "truncate", "insert", "delete", "garbage"]), label="text_op")
    if op == "none" or not text:
        return text
    i = data.draw(st.integers(0, len(text)), label="at")
    if op == "truncate":
        return text[:i]
    if op == "insert":
        return text[:i] + data.draw(st.text(max_size=6) | st.sampled_from([",", "\n", '"', "{", "]", ":", "\t", "- ", "&a", "*a", "!!python/object:x {}"]), label="ins") + text[i:]
    if op == "delete":
        j = data.draw(st.integers(i, min(len(text), i + 20)), label="to")
        return text[:i] + text[j:]
    return data.draw(st.text(max_size=40), label="garbage")


def dump_json(doc: Any) -> str:
    return json.dumps(doc, allow_nan=True, default=str)


def dump_yaml(doc: Any) -> str:
    try:
        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError:
        return dump_json(doc)  # JSON is YAML


def dump_csv(rows: Any) -> str:
    """rows: list of lists (header first); non-list input is written as JSON (a broken CSV)."""
    if not isinstance(rows, list):
        return dump_json(rows)
    buf = io.StringIO()
    w = csv.writer(buf)
    for r in rows:
        w.writerow(r if isinstance(r, list) else [r])
    return buf.getvalue()


def read_csv_rows(path: Path) -> list[list[str]]:
    return [list(r) for r in csv.reader(io.StringIO(path.read_text()))]


# ----------------------------------------------------------------------------- targets
class Target:
    """One loader: seed documents, how a mutated document is written, and the call under test."""

    def __init__(self, name: str, seeds: list[Any], dump: Callable[[Any], str], filename: str,
                 call: Callable[[Path, Path], Any], keys: list[str], setup: Callable[[Path], None] | None = None) -> None:
        self.name, self.seeds, self.dump, self.filename, self.call, self.keys, self.setup = name, seeds, dump, filename, call, keys, setup


def _drain(source: Any, n: int = 50) -> None:
    """Pull up to n requests from a RequestSource (generated sources validate lazily)."""
    for _ in range(n):
        if source.peek_arrival_s() is None:
            return
        source.pop()


def call_trace(folder: Path, file: Path) -> None:
    from servesim.workload import ListSource, read_trace

    trace = read_trace(file)
    _drain(ListSource(trace.specs, where=str(file)))


def call_workload(folder: Path, file: Path) -> None:
    from servesim.workload import build_source, load_workload_yaml

    spec = load_workload_yaml(file)
    _drain(build_source(spec, 0))


def call_manifest(folder: Path, file: Path) -> None:
    from servesim.validation import load_experiment

    exp = load_experiment(folder)
    exp.engine_kwargs()


def call_calibration(folder: Path, file: Path) -> None:
    from servesim.config import load_hardware, load_model
    from servesim.latency.calibration import load_calibration
    from servesim.latency.plan import StepPlan

    cal = load_calibration(file)
    lm = cal.model(load_model("llama-2-7b-hf"), load_hardware("H100"), 1)
    lm.step_time(StepPlan((128,), (0,), (100, 200)))
    json.dumps(cal.to_dict())  # the run's config embeds it


def call_model(folder: Path, file: Path) -> None:
    from servesim.config import load_model

    spec = load_model(file)
    spec.check_tp(1)
    for attr in ("weight_bytes", "kv_bytes_per_token", "param_count", "active_param_count"):
        getattr(spec, attr)
    spec.kv_bytes_per_token_per_gpu(1)


def call_hardware(folder: Path, file: Path) -> None:
    from servesim.config import load_hardware

    hw = load_hardware("H100", file)
    hw.peak_flops(2.0)
    hw.hbm_bytes_per_s


def _ip_setup(src: Path) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        for f in src.iterdir():
            shutil.copy(f, folder / f.name)
    return setup


def targets() -> dict[str, Target]:
    trace_rows = [["arrival_time_s", "input_tokens", "output_tokens", "prefix_group", "prefix_tokens", "stage", "id"],
                  ["0.0", "120", "8", "g1", "64", "0", "0"], ["0.25", "300", "16", "", "", "1", "1"],
                  ["0.5", "90", "4", "g1", "64", "1", "2"]]
    trace_us = [["arrival_time_us", "input_tokens", "output_tokens"], ["0", "10", "2"], ["1500", "20", "3"]]
    jsonl_rows = [{"arrival_time_s": 0.0, "input_tokens": 100, "output_tokens": 5, "prefix_group": "a", "prefix_tokens": 32},
                  {"arrival_s": 0.1, "input_tokens": 50, "output_tokens": 7}]
    ip_replay = json.loads((TESTDATA / "workload" / "data" / "inference_perf_replay_excerpt.json").read_text())
    ip_replay["requests"] = ip_replay["requests"][:6]
    workloads = [
        {"input_tokens": {"kind": "gaussian", "mean": 512, "stdev": 256, "min": 2, "max": 2048}, "output_tokens": 64,
         "arrival": {"process": "poisson", "rate": 4}, "num_requests": 20, "seed": 3},
        {"shared_prefix": {"num_groups": 2, "users_per_group": 3, "system_prompt_len": 100, "question_len": 20, "output_len": 8},
         "arrival": {"process": "constant", "stages": [{"rate": 5, "duration_s": 2}, {"rate": 9, "duration": 1}]}},
        {"input_tokens": {"kind": "empirical", "values": [10, 20, 30]}, "output_tokens": {"kind": "lognormal", "mean": 50, "stdev": 20, "max": 400},
         "prefix_tokens": 16, "arrival": {"process": "concurrency", "concurrency": 4, "think_time_s": 0.1}, "num_requests": 10},
        {"input_tokens": {"kind": "uniform", "min": 1, "max": 9}, "output_tokens": {"kind": "exponential", "mean": 30},
         "arrival": {"process": "gamma", "rate": 3, "cv": 2}, "duration_s": 5},
        {"trace": {"path": "t.csv", "sort": True}, "num_requests": 2},
    ]
    wl_keys = ["input_tokens", "output_tokens", "prefix_tokens", "shared_prefix", "arrival", "num_requests", "duration_s",
               "trace", "seed", "kind", "mean", "stdev", "min", "max", "values", "file", "column", "process", "rate", "cv",
               "stages", "concurrency", "think_time_s", "path", "format", "sort", "errors", "stage_durations_s", "value"]

    def wl_setup(folder: Path) -> None:
        (folder / "t.csv").write_text(dump_csv(trace_rows))

    base_manifest = {
        "name": "fz", "model": "llama-2-7b-hf", "hardware": "H100", "tensor_parallel_size": 1,
        "engine": {"max_num_seqs": 64, "max_num_batched_tokens": 2048, "block_size": 16, "num_gpu_blocks": 2000,
                   "enable_prefix_caching": True, "max_model_len": 4096},
    }
    req_csv = "arrival_time_s,input_tokens,output_tokens,ttft_ms,e2e_ms,prefix_group,prefix_tokens,ok\n0.0,100,10,50,200,g,32,1\n0.5,80,5,40,120,,,1\n1.0,60,3,30,90,,,0\n"
    agg = {"runs": [{"name": "r1", "mode": "closed", "concurrency": 1,
                     "aggregates": {"ttft_mean_ms": 50.0, "e2e_mean_ms": 900.0, "itl_mean_ms": 8.0},
                     "workload": {"prompt_tokens": 256, "output_tokens": 64, "num_requests": 5}}]}
    manifests = [
        ({**base_manifest, "ground_truth": {"format": "requests-csv", "path": "r.csv"}}, "r.csv", req_csv),
        ({**base_manifest, "ground_truth": {"format": "aggregate", "path": "a.yaml"}}, "a.yaml", dump_yaml(agg)),
        ({**base_manifest, "ground_truth": {"format": "guidellm", "path": "g.json", "benchmarks": [0, 1], "sample": "replay"}}, "g.json",
         (TESTDATA / "validation" / "data" / "guidellm_excerpt.json").read_text()),
        ({**base_manifest, "ground_truth": {"format": "inference-perf-replay",
                                             "path": "20260218-150956-codellama-34b-tp2-codegen.json", "profile": "profile.yaml"}},
         None, None),
    ]
    man_keys = ["name", "model", "hardware", "tensor_parallel_size", "engine", "ground_truth", "notes", "source", "format",
                "path", "mode", "concurrency", "benchmarks", "profile", "row", "columns", "workload", "stages", "runs"]

    out: dict[str, Target] = {
        "trace_csv": Target("trace_csv", [trace_rows, trace_us], dump_csv, "t.csv", call_trace, []),
        "trace_jsonl": Target("trace_jsonl", [jsonl_rows], lambda rows: "\n".join(dump_json(r) for r in rows) if isinstance(rows, list) else dump_json(rows),
                              "t.jsonl", call_trace, ["arrival_time_s", "arrival_s", "arrival_time_us", "input_tokens", "output_tokens", "prefix_group", "prefix_tokens", "stage", "id"]),
        "trace_inference_perf": Target("trace_inference_perf", [ip_replay], dump_json, "t.json", call_trace,
                                       ["requests", "config", "index", "arrival_time_us", "input_tokens", "output_tokens", "has_error", "prefix_group", "system_prompt_len"]),
        "workload_yaml": Target("workload_yaml", workloads, dump_yaml, "w.yaml", call_workload, wl_keys, wl_setup),
        "calibration": Target("calibration", [json.loads((DATA / "calibration" / "default.json").read_text())], dump_json, "c.json", call_calibration,
                              ["theta", "frontend_latency_s", "frontend_per_token_s", "layers_over_tp", "pad_cuda_graphs", "name", "fitted_on", "notes"]),
        "model_config": Target("model_config", [json.loads((DATA / "models" / m / "config.json").read_text()) for m in
                                                ("llama-2-7b-hf", "deepseek-v2-lite", "llama-4-scout-17b-16e-instruct-fp8-dynamic", "mixtral-8x7b-v0.1", "qwen3-30b-a3b", "glm-5.2-fp8")],
                               dump_json, "config.json", call_model,
                               ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size",
                                "vocab_size", "torch_dtype", "quantization_config", "text_config", "num_local_experts", "num_experts_per_tok",
                                "kv_lora_rank", "max_position_embeddings", "model_type", "interleave_moe_layer_step", "config_groups", "bits"]),
        "hardware": Target("hardware", [
            {"name": "X1", "bf16_tflops": 989, "hbm_tb_s": 3.35, "memory_gb": 80, "nvlink_gb_s": 450, "bw_efficiency": 0.8},
            {"H100": {"TFlopsPeak": 989.5, "BwPeakTBs": 3.35, "bwEfficiencyFactor": 0.82, "perLayerOverhead": 100, "MemoryGiB": 80}},
            {"MyGPU": {"TFlopsPeak": 500, "BwPeakTBs": 2.0}},
            json.loads((DATA / "hardware" / "presets.json").read_text()),
        ], dump_json, "hw.json", call_hardware,
            ["name", "bf16_tflops", "fp8_tflops", "hbm_tb_s", "memory_gb", "usable_memory_bytes", "usable_memory_gib", "memory_gib",
             "TFlopsPeak", "TFlopsFP8", "BwPeakTBs", "bwEfficiencyFactor", "perLayerOverhead", "MemoryGiB", "aliases", "H100"]),
    }
    for i, (man, data_name, data_text) in enumerate(manifests):
        fmt = man["ground_truth"]["format"]
        setup: Callable[[Path], None]
        if data_name is None:
            setup = _ip_setup(TESTDATA / "validation" / "data" / "ip_codegen")
        else:
            def setup(folder: Path, data_name: str = data_name, data_text: str = data_text) -> None:
                (folder / data_name).write_text(data_text)
        out[f"manifest_{fmt}"] = Target(f"manifest_{fmt}", [man], dump_yaml, "experiment.yaml", call_manifest, man_keys, setup)
        if data_name is not None:
            # The same experiment with its data file fuzzed instead of the manifest.
            if data_name.endswith(".csv"):
                doc, dump = read_csv_rows_text(data_text), dump_csv
            elif data_name.endswith(".yaml"):
                doc, dump = yaml.safe_load(data_text), dump_yaml
            else:
                doc, dump = json.loads(data_text), dump_json

            def setup2(folder: Path, man: dict = man) -> None:
                (folder / "experiment.yaml").write_text(dump_yaml(man))
            out[f"data_{fmt}"] = Target(f"data_{fmt}", [doc], dump, data_name, call_manifest,
                                        ["ttft_ms", "e2e_ms", "ok", "runs", "aggregates", "workload", "benchmarks", "requests", "successful", "errored", "info", "timings"],
                                        setup2)
    return out


def read_csv_rows_text(text: str) -> list[list[str]]:
    return [list(r) for r in csv.reader(io.StringIO(text))]


# ----------------------------------------------------------------------------- the loop
class Findings:
    def __init__(self) -> None:
        self.bugs: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls = 0
        self.clean_errors = 0

    def record(self, target: str, content: str, exc: BaseException) -> None:
        tb = traceback.extract_tb(exc.__traceback__)
        frames = [f for f in tb if "/servesim/" in f.filename]
        where = f"{Path(frames[-1].filename).relative_to(ROOT / 'src')}:{frames[-1].lineno}" if frames else (f"{tb[-1].filename}:{tb[-1].lineno}" if tb else "?")
        key = (target, type(exc).__name__, where)
        old = self.bugs.get(key)
        if old is None or len(content) < len(old["input"]):
            self.bugs[key] = {"input": content, "message": str(exc)[:300], "count": (old or {}).get("count", 0) + 1}
        else:
            old["count"] += 1


def fuzz_target(t: Target, seconds: float, findings: Findings, work: Path) -> int:
    deadline = time.monotonic() + seconds
    runs = 0

    @settings(max_examples=40, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def one(data: st.DataObject) -> None:
        nonlocal runs
        seed = data.draw(st.sampled_from(t.seeds), label="seed")
        doc = mutate_tree(data, seed, t.keys) if data.draw(st.booleans(), label="structural") else seed
        content = mutate_text(data, t.dump(doc))
        folder = Path(tempfile.mkdtemp(dir=work))
        try:
            if t.setup is not None:
                t.setup(folder)
            file = folder / t.filename
            file.write_text(content, encoding="utf-8", errors="surrogatepass")
            runs += 1
            findings.calls += 1
            try:
                t.call(folder, file)
            except ServesimError as exc:
                findings.clean_errors += 1
                if "\n" in str(exc):
                    findings.record(t.name, content, RuntimeError(f"multi-line ServesimError: {exc!s}"))
            except RecursionError as exc:
                findings.record(t.name, content, exc)
            except Exception as exc:  # noqa: BLE001 - every other exception is a finding
                findings.record(t.name, content, exc)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    while time.monotonic() < deadline:
        one()
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=600.0, help="total wall time, split evenly over the targets")
    ap.add_argument("--target", action="append", help="fuzz only these targets (repeatable)")
    ap.add_argument("--report", type=Path, help="write findings as JSON")
    args = ap.parse_args()
    all_targets = targets()
    names = args.target or list(all_targets)
    for n in names:
        if n not in all_targets:
            sys.exit(f"unknown target {n!r} (targets: {', '.join(all_targets)})")
    findings = Findings()
    per = args.seconds / len(names)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="servesim-fuzz-") as tmp:
        for n in names:
            t0 = time.monotonic()
            runs = fuzz_target(all_targets[n], per, findings, Path(tmp))
            bugs = sum(1 for k in findings.bugs if k[0] == n)
            print(f"{n:28s} {runs:7d} inputs in {time.monotonic() - t0:6.1f} s, {bugs} distinct non-ServesimError exceptions", flush=True)
    print(f"total: {findings.calls} inputs, {findings.clean_errors} clean ServesimErrors, {len(findings.bugs)} findings, "
          f"{time.monotonic() - started:.0f} s")
    for (target, exc, where), info in sorted(findings.bugs.items()):
        print(f"\n[{target}] {exc} at {where} (x{info['count']}): {info['message']}")
        text = info["input"]
        print("  input: " + (repr(text) if len(text) <= 500 else repr(text[:250]) + " ... " + repr(text[-250:])))
    if args.report:
        args.report.write_text(json.dumps([{"target": k[0], "exception": k[1], "where": k[2], **v} for k, v in findings.bugs.items()], indent=2))


if __name__ == "__main__":
    main()

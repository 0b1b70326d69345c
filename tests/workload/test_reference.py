"""README's workload-YAML reference and its three examples: generated from / checked against the pydantic models,
each example run as the README says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from servesim.workload import reference as ref
from servesim.workload.spec import WorkloadSpec, load_workload_yaml, parse_workload, preset

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLES = ("chat", "closed-loop", "bursty-stages")
BLOCK = re.compile(r"`(examples/[\w-]+\.yaml)`:\n\n```yaml\n(.*?)```", re.S)


def servesim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "servesim", *args], capture_output=True, text=True, cwd=ROOT)


def test_readme_reference_is_the_generated_one():
    start, end = README.index(ref.BEGIN), README.index(ref.END) + len(ref.END)
    # When this fails after a change to workload/spec.py: python -m servesim.workload.reference README.md
    assert README[start:end] == ref.reference_markdown()


def test_every_key_of_every_model_is_in_the_reference():
    models = ref.models()
    assert WorkloadSpec in models and len(models) == len(ref.SECTION)
    fields = {(m, name) for m in models for name in m.model_fields}
    assert set(ref.MEANING) == fields  # a new field needs its meaning; a removed one leaves none behind
    assert set(ref.RULES) <= fields
    text = ref.reference_markdown()
    for m in models:
        assert f"**{ref.SECTION[m]}**" in text
        for name in m.model_fields:
            assert f"| `{name}`" in text, (m.__name__, name)


def test_reference_rows_match_the_models_behaviour(tmp_path):
    """Spot-check the generated claims against what parse_workload accepts and refuses."""
    text = ref.reference_markdown()
    assert "| `prefix_tokens` | integer | `0` | ≥ 0, ≤ 2,147,483,647 |" in text
    assert "| `num_requests` | integer | unset | ≥ 1, ≤ 10,000,000 |" in text
    assert "| `duration_s` (also `duration`) | number | required | > 0 |" in text
    base = {"input_tokens": 8, "output_tokens": 4, "arrival": {"process": "poisson", "rate": 1}}
    assert parse_workload({**base, "num_requests": 10_000_000}).num_requests == 10_000_000
    for bad in ({"num_requests": 10_000_001}, {"num_requests": 0}, {"prefix_tokens": -1, "num_requests": 1},
                {"num_requests": 1, "seed": -1}, {"num_requests": 1, "seed": 2**63}):
        with pytest.raises(Exception):
            parse_workload({**base, **bad})
    assert parse_workload({**base, "num_requests": 1, "seed": 2**63 - 1}).seed == 2**63 - 1
    # the shorthands the type column names
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_time_s,input_tokens,output_tokens\n0.0,10,2\n")
    assert parse_workload({"input_tokens": 5, "output_tokens": 3, "arrival": "synchronous", "num_requests": 1}).input_tokens.kind == "constant"
    assert parse_workload({"trace": str(trace)}).trace.path == str(trace)
    # the per-process rules table
    assert "| `gamma` | `cv` | `rate`, `stages` |" in text
    with pytest.raises(Exception, match="needs cv"):
        parse_workload({**base, "arrival": {"process": "gamma", "rate": 1}, "num_requests": 1})
    with pytest.raises(Exception, match="does not apply"):
        parse_workload({**base, "arrival": {"process": "synchronous", "rate": 1}, "num_requests": 1})
    assert "| `uniform` | `min`, `max` | — |" in text


def test_readme_blocks_are_the_example_files():
    blocks = dict(BLOCK.findall(README))
    assert set(blocks) == {f"examples/{n}.yaml" for n in EXAMPLES}
    for path, body in blocks.items():
        assert (ROOT / path).read_text(encoding="utf-8") == body, path


def test_chat_example_is_the_default_workload():
    assert load_workload_yaml(ROOT / "examples/chat.yaml") == preset("chat")
    default = servesim("run", "--json")
    from_file = servesim("run", "--workload", "examples/chat.yaml", "--json")
    assert default.returncode == from_file.returncode == 0, default.stderr + from_file.stderr
    assert json.loads(default.stdout) == json.loads(from_file.stdout)


@pytest.mark.parametrize("name,expected", [("chat", 500), ("closed-loop", 400), ("bursty-stages", None)])
def test_each_example_runs(name, expected):
    out = servesim("run", "--workload", f"examples/{name}.yaml", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["rejected"] == 0
    if expected is not None:
        assert summary["completed"] == expected
    else:  # three stages, 4 / 12 / 6 req/s for 30 s each: 660 arrivals expected (gamma gaps, CV 2)
        doc = yaml.safe_load((ROOT / f"examples/{name}.yaml").read_text())
        expected_arrivals = sum(s["rate"] * s["duration_s"] for s in doc["arrival"]["stages"])
        assert expected_arrivals == 660 and 0.8 * 660 < summary["completed"] < 1.2 * 660

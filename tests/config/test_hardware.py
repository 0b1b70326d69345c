"""Hardware presets and files in servesim's and BLIS's layouts."""

import json

import pytest

from servesim.config import load_hardware
from servesim.config.hardware import preset_names
from servesim.errors import ConfigError

SHARED_BLIS = {"H100": {"TFlopsPeak": 989.5, "BwPeakTBs": 3.35, "bwEfficiencyFactor": 0.82, "perLayerOverhead": 100, "MemoryGiB": 80.0}}


def test_presets_and_aliases():
    for name in ["H100-SXM", "H100-PCIe", "H200", "A100-80GB", "A100-40GB", "L40S", "B200", "MI300X"]:
        assert name in preset_names()
    h = load_hardware("H100")
    assert h.name == "H100-SXM" and h.bf16_tflops == 989.5 and h.fp8_tflops == 1979.0 and h.hbm_tb_s == 3.35
    assert h.peak_flops(2) == 989.5e12 and h.peak_flops(1) == 1979e12
    assert load_hardware("h200").hbm_tb_s == 4.8


def test_mi300x_preset_from_the_amd_datasheet():
    h = load_hardware("mi300x")
    assert (h.name, h.bf16_tflops, h.fp8_tflops, h.hbm_tb_s, h.memory_gb, h.nvlink_gb_s) == ("MI300X", 1307.4, 2614.9, 5.3, 192, 896)
    assert h.usable_memory_bytes == 205_822_885_888  # what rocm-smi / torch report: 191.6875 GiB
    assert "AMD Instinct MI300X data sheet" in h.source


def test_blis_layout(tmp_path):
    path = tmp_path / "hw.json"
    path.write_text(json.dumps({**SHARED_BLIS, "A100-80": {"TFlopsPeak": 312, "BwPeakTBs": 2.039, "bwEfficiencyFactor": 0.0}}))
    h = load_hardware("H100", path)
    assert h.bf16_tflops == 989.5 and h.bw_efficiency == 0.82 and h.per_layer_overhead_us == 100
    a = load_hardware("A100-80", path)
    assert a.bw_efficiency == 1.0  # BLIS: 0 means "off"
    assert a.hbm_tb_s == 2.039


def test_servesim_layout(tmp_path):
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps({"name": "MyGPU", "bf16_tflops": 500, "hbm_tb_s": 2.0, "memory_gb": 64}))
    h = load_hardware(None, path)
    assert h.name == "MyGPU" and h.fp8_tflops == 500 and h.usable_memory_bytes == 64e9


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"H100": {"TFlopsPeak": -1, "BwPeakTBs": 3.35}}, "'TFlopsPeak'=-1 must be > 0"),
        ({"H100": {"TFlopsPeak": 989.5, "BwPeakTBs": "fast"}}, "'BwPeakTBs'='fast' must be a number"),
        ({"name": "x", "bf16_tflops": 1, "hbm_tb_s": 1, "memory_gb": 1, "colour": "red"}, "unknown field 'colour'"),
        ({"name": "x", "bf16_tflops": 1, "memory_gb": 1}, "missing required field 'hbm_tb_s'"),
    ],
)
def test_bad_hardware_files(tmp_path, body, fragment):
    path = tmp_path / "hw.json"
    path.write_text(json.dumps(body))
    with pytest.raises(ConfigError) as err:
        load_hardware("H100", path)
    assert fragment in str(err.value)


def test_unknown_gpu():
    with pytest.raises(ConfigError, match="unknown GPU; did you mean 'H100-SXM'"):
        load_hardware("H1000")

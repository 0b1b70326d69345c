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
        # BLIS's own step-time coefficients: checked as numbers though servesim does not use them
        ({"H100": {"TFlopsPeak": 989.5, "BwPeakTBs": 3.35, "mfuDecode": 1.5}}, "'mfuDecode'=1.5 must be a fraction in [0, 1]"),
        ({"H100": {"TFlopsPeak": 989.5, "BwPeakTBs": 3.35, "mfuPrefill": "high"}}, "'mfuPrefill'='high' must be a number"),
        ({"H100": {"TFlopsPeak": 989.5, "BwPeakTBs": 3.35, "BwEffConstant": 0.7, "bwEfficiencyFactor": 0.8}}, "the same quantity"),
        ({"H100": {"TFlopsPeak": 989.5, "BwPeakTBs": 3.35, "mfuDecod": 0.3}}, "unknown field 'mfuDecod'"),
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


# BLIS's hardware_config.json as inference-sim ships it: v1 (Jan–Mar 2026, BwEffConstant and its own overhead and
# MFU coefficients) and HEAD (TFlopsFP8, mfuPrefill/mfuDecode, MemoryGiB). Values are BLIS's H100 / L40S entries.
BLIS_V1 = {"H100": {"TFlopsPeak": 989.5, "BwPeakTBs": 3.35, "BwEffConstant": 0.72, "TOverheadMicros": 500.0,
                    "perLayerOverhead": 20.0, "mfuPrefill": 0.65, "mfuDecode": 0.12, "allReduceLatency": 20.0,
                    "tpScalingExponent": 0.13, "mfuPrefillMultiplier": 2.20, "mfuDecodeMultiplier": 1.80,
                    "prefillBwFactor": 0.75, "decodeBwFactor": 0.92, "vectorPeakFraction": 0.10,
                    "prefillOverheadMicros": 500.0, "mixedPrefillOverheadMicros": 150.0}}
BLIS_HEAD = {"H100": {"TFlopsPeak": 989.5, "TFlopsFP8": 1979, "BwPeakTBs": 3.35, "mfuPrefill": 0.45, "mfuDecode": 0.30,
                      "MemoryGiB": 80},
             "MyGPU": {"TFlopsPeak": 362, "TFlopsFP8": 733, "BwPeakTBs": 0.864, "mfuPrefill": 0.45, "mfuDecode": 0.30,
                       "MemoryGiB": 48}}


def test_blis_current_layout_loads_and_says_what_is_unused(tmp_path):
    path = tmp_path / "hardware_config.json"
    path.write_text(json.dumps(BLIS_HEAD))
    h = load_hardware("H100", path)
    preset = load_hardware("H100")
    assert (h.bf16_tflops, h.fp8_tflops, h.hbm_tb_s) == (989.5, 1979.0, 3.35)
    assert h.bw_efficiency == preset.bw_efficiency  # no bandwidth field in HEAD's layout: the preset's stands
    assert "not used: mfuPrefill, mfuDecode" in h.source
    g = load_hardware("MyGPU", path)  # no preset: MemoryGiB is the memory
    assert g.usable_memory_bytes == 48 * 2**30 and g.fp8_tflops == 733


def test_blis_v1_layout_maps_bw_eff_constant(tmp_path):
    path = tmp_path / "hardware_config.json"
    path.write_text(json.dumps(BLIS_V1))
    h = load_hardware("H100", path)
    assert h.bw_efficiency == 0.72 and h.per_layer_overhead_us == 20.0
    assert "TOverheadMicros" in h.source and "mixedPrefillOverheadMicros" in h.source


def test_blis_file_changes_step_time_only_through_used_fields(tmp_path):
    from servesim.api import step_time

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"H100": {"TFlopsPeak": 989.5, "BwPeakTBs": 3.35, "mfuPrefill": 0.45, "mfuDecode": 0.30}}))
    b.write_text(json.dumps({"H100": {"TFlopsPeak": 989.5, "BwPeakTBs": 3.35, "mfuPrefill": 0.9, "mfuDecode": 0.9}}))
    ta = step_time("llama-2-7b-hf", load_hardware("H100", a), decode=[512] * 8).seconds
    tb = step_time("llama-2-7b-hf", load_hardware("H100", b), decode=[512] * 8).seconds
    assert ta == tb > 0

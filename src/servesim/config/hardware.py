"""GPU presets from datasheets, and hardware files in servesim's or BLIS's JSON layout."""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from servesim.config.bundled import DATA_DIR
from servesim.config.jsonfile import read_json
from servesim.errors import ConfigError

GIB = 1 << 30


HOST_LINK_FRACTION = 50.0 / 64.0  # effective / raw per-direction PCIe rate the presets' host_link_gb_s assume


@dataclass(frozen=True, slots=True)
class Hardware:
    """One GPU: dense tensor-core peaks, HBM, interconnect, and the roofline's default efficiencies."""

    name: str
    bf16_tflops: float  # dense BF16/FP16 tensor-core peak, TFLOP/s
    fp8_tflops: float  # dense FP8 tensor-core peak, TFLOP/s (= bf16 where the GPU has no FP8 units)
    hbm_tb_s: float  # peak memory bandwidth, TB/s (1e12 bytes/s)
    memory_gb: float  # datasheet memory, GB
    usable_memory_bytes: float  # total device memory as the driver reports it
    nvlink_gb_s: float = 0.0  # per-GPU NVLink bandwidth, GB/s (0 = none)
    pcie_gb_s: float = 64.0
    host_link_gb_s: float = 0.0  # effective GPU<->CPU copy bandwidth per direction, GB/s (CPU KV offload; 0 = none given)
    kernel_tables: str = "h100"  # which measured kernel tables stand in for this GPU
    bw_efficiency: float = 0.82  # sustained / peak HBM bandwidth (the seed report's H1)
    per_layer_overhead_us: float = 100.0  # BLIS `perLayerOverhead` (µs per layer / TP per step)
    source: str = ""

    def host_copy_bytes_per_s(self) -> float:
        """Effective pinned CPU<->GPU copy bandwidth per direction, bytes/s (KV offload and LoRA adapter loads)."""
        # host_link_gb_s where the preset gives it (docs/LATENCY.md "CPU KV offload"); else the same ~78 % of the raw
        # per-direction PCIe rate the presets assume (50 of 64 GB/s on Gen5 x16).
        return (self.host_link_gb_s or self.pcie_gb_s * HOST_LINK_FRACTION) * 1e9

    def peak_flops(self, bytes_per_weight: float) -> float:
        """Dense tensor-core peak in FLOP/s for weights of this width (FP8 path at <= 1 byte)."""
        return (self.fp8_tflops if bytes_per_weight <= 1.0 else self.bf16_tflops) * 1e12

    @property
    def bf16_flops(self) -> float:
        """Dense BF16 peak in FLOP/s."""
        return self.bf16_tflops * 1e12

    @property
    def hbm_bytes_per_s(self) -> float:
        """Peak HBM bandwidth in bytes/s."""
        return self.hbm_tb_s * 1e12


@lru_cache(maxsize=1)
def _presets() -> dict[str, dict[str, Any]]:
    raw = json.loads((DATA_DIR / "hardware" / "presets.json").read_text())
    return {k: v for k, v in raw.items() if not k.startswith("_")}


def preset_names() -> list[str]:
    """Names of the bundled GPU presets."""
    return list(_presets())


def _preset_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for name, body in _presets().items():
        for alias in [name, *body.get("aliases", [])]:
            index[alias.lower()] = name
    return index


def _from_servesim(name: str, body: dict[str, Any], where: str) -> Hardware:
    known = {f for f in Hardware.__dataclass_fields__} | {"aliases", "usable_memory_gib", "memory_gib"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field {_name(unknown[0])} (allowed: {', '.join(sorted(known - {'name'}))})")
    fields = {k: body[k] for k in body if k in Hardware.__dataclass_fields__}
    if "usable_memory_gib" in body:
        fields["usable_memory_bytes"] = _num(body, "usable_memory_gib", where) * GIB
    if "memory_gib" in body and "memory_gb" not in body:
        fields["memory_gb"] = _num(body, "memory_gib", where) * 1.073741824
    for key in ("bf16_tflops", "hbm_tb_s", "memory_gb"):
        if key not in fields:
            raise ConfigError(f"{where}: missing required field '{key}'")
        _num(fields, key, where)
    fields.setdefault("fp8_tflops", fields["bf16_tflops"])
    fields.setdefault("usable_memory_bytes", float(fields["memory_gb"]) * 1e9)
    for key in ("fp8_tflops", "usable_memory_bytes", "nvlink_gb_s", "bw_efficiency", "per_layer_overhead_us", "host_link_gb_s"):
        if key in fields:
            _num(fields, key, where, allow_zero=key in ("nvlink_gb_s", "per_layer_overhead_us", "host_link_gb_s"))
    if "bw_efficiency" in fields and not 0 < fields["bw_efficiency"] <= 1:
        raise ConfigError(f"{where}: field 'bw_efficiency'={fields['bw_efficiency']} must be in (0, 1]")
    return Hardware(name=str(fields.pop("name", name)), **fields)


def _name(text: object) -> str:
    """A key or name for a one-line message: quoted as typed, or repr() when it holds control characters."""
    t = str(text)
    return f"'{t}'" if t.isprintable() else repr(t)


def _num(body: dict[str, Any], key: str, where: str, allow_zero: bool = False) -> float:
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
        raise ConfigError(f"{where}: field '{key}'={value!r} must be a number")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{where}: field '{key}'={value} must be {'>= 0' if allow_zero else '> 0'}")
    return float(value)


# BLIS `hardware_config.json` keys → servesim fields (bwEfficiencyFactor 0 means "off" = 1.0). BwEffConstant is
# BLIS v1's name for the same sustained/peak HBM bandwidth ratio (inference-sim hardware_config.json, Jan–Mar 2026).
BLIS_FIELDS = {
    "TFlopsPeak": "bf16_tflops",
    "TFlopsFP8": "fp8_tflops",
    "BwPeakTBs": "hbm_tb_s",
    "bwEfficiencyFactor": "bw_efficiency",
    "BwEffConstant": "bw_efficiency",
    "perLayerOverhead": "per_layer_overhead_us",
    "MemoryGiB": "memory_gib",
}
# BLIS's own step-time coefficients: accepted (checked to be numbers >= 0) and not used. servesim takes GEMM and
# attention efficiencies from its measured kernel tables and its overheads from --overhead/--latency-model
# (docs/LATENCY.md), so BLIS's static MFUs (mfuPrefill, mfuDecode: fractions of TFlopsPeak) would double-count.
BLIS_UNUSED = ("mfuPrefill", "mfuDecode", "mfuPrefillMultiplier", "mfuDecodeMultiplier", "TOverheadMicros",
               "allReduceLatency", "tpScalingExponent", "prefillBwFactor", "decodeBwFactor", "vectorPeakFraction",
               "prefillOverheadMicros", "mixedPrefillOverheadMicros")
# Fields that are fractions (of a peak): must lie in [0, 1] (0 = BLIS's "off" for bwEfficiencyFactor).
BLIS_FRACTIONS = ("bwEfficiencyFactor", "BwEffConstant", "mfuPrefill", "mfuDecode", "vectorPeakFraction")


def _from_blis(name: str, body: dict[str, Any], where: str, base: Hardware | None) -> Hardware:
    allowed = (*BLIS_FIELDS, *BLIS_UNUSED)
    unknown = sorted(k for k in body if k not in allowed and not k.startswith("_"))
    if unknown:
        raise ConfigError(f"{where}: unknown field {_name(unknown[0])} (BLIS layout allows {', '.join(allowed)})")
    if "bwEfficiencyFactor" in body and "BwEffConstant" in body:
        raise ConfigError(f"{where}: fields 'bwEfficiencyFactor' and 'BwEffConstant' are the same quantity; give one")
    for key in BLIS_FRACTIONS:
        if key in body and _num(body, key, where, allow_zero=True) > 1:
            raise ConfigError(f"{where}: field '{key}'={body[key]} must be a fraction in [0, 1]")
    unused = [k for k in BLIS_UNUSED if k in body]
    for key in unused:
        _num(body, key, where, allow_zero=True)
    note = f"; not used: {', '.join(unused)} (servesim's kernel tables and overhead models replace them)" if unused else ""
    fields: dict[str, Any] = {}
    for key, target in BLIS_FIELDS.items():
        if key in body:
            fields[target] = _num(body, key, where, allow_zero=key in ("bwEfficiencyFactor", "BwEffConstant", "perLayerOverhead"))
    if fields.get("bw_efficiency") == 0:
        fields["bw_efficiency"] = 1.0
    if "memory_gib" in fields:
        gib = fields.pop("memory_gib")
        fields["memory_gb"] = gib * 1.073741824
        fields["usable_memory_bytes"] = gib * (1 << 30)
    if base is not None:
        fields.pop("usable_memory_bytes", None)  # the preset knows what the driver reports; BLIS calls MemoryGiB "reserved"
    if base is not None:
        if "bf16_tflops" in fields and "fp8_tflops" not in fields:
            fields["fp8_tflops"] = fields["bf16_tflops"] * (base.fp8_tflops / base.bf16_tflops)
        return replace(base, name=name, source=f"{where} (BLIS layout) over preset {base.name}{note}", **fields)
    for key in ("bf16_tflops", "hbm_tb_s"):
        if key not in fields:
            raise ConfigError(f"{where}: missing required field '{[k for k, v in BLIS_FIELDS.items() if v == key][0]}'")
    fields.setdefault("fp8_tflops", 2 * fields["bf16_tflops"])
    fields.setdefault("memory_gb", 80.0)
    fields.setdefault("usable_memory_bytes", fields["memory_gb"] * 1e9)
    return Hardware(name=name, source=f"{where} (BLIS layout){note}", **fields)


def get_preset(name: str) -> Hardware:
    """A bundled GPU preset by name or alias (case-insensitive)."""
    index = _preset_index()
    key = name.strip().lower()
    if key not in index:
        close = difflib.get_close_matches(key, list(index), n=1, cutoff=0.5)
        hint = f"; did you mean '{index[close[0]]}'?" if close else ""
        raise ConfigError(f"--hardware {name}: unknown GPU{hint} (presets: {', '.join(preset_names())})")
    canonical = index[key]
    return _from_servesim(canonical, _presets()[canonical], f"preset {canonical}")


def load_hardware(name: str | None = "H100", config_file: str | Path | None = None) -> Hardware:
    """Resolve --hardware NAME and optional --hardware-config FILE (servesim or BLIS layout) to Hardware."""
    if name is not None and not isinstance(name, (str, Path)):
        raise ConfigError(f"--hardware {name!r}: expected a GPU preset name (e.g. H100), a hardware JSON path or a Hardware")
    if name is not None and not str(name).strip():
        raise ConfigError(f"--hardware {name!r}: expected a GPU preset name (e.g. H100), a hardware JSON path or a Hardware")
    if config_file is not None and not str(config_file).strip():
        raise ConfigError(f"--hardware-config {config_file!r}: expected a path to a hardware JSON file")
    if config_file is None:
        path = Path(str(name)).expanduser()
        if name and path.suffix == ".json" and path.is_file():
            config_file, name = path, None
        else:
            return get_preset(name or "H100")
    path = Path(config_file).expanduser()
    where = str(path)
    raw = read_json(path, f"--hardware-config {where}")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: expected a JSON object describing a GPU")
    if any(k in raw for k in (*BLIS_FIELDS, *BLIS_UNUSED)) or any(k in raw for k in Hardware.__dataclass_fields__):
        entries = {str(raw.get("name", name or path.stem)): raw}
    else:
        entries = {k: v for k, v in raw.items() if not k.startswith("_")}
    wanted = name
    if wanted is None or wanted not in entries:
        lower = {k.lower(): k for k in entries}
        if wanted is not None and wanted.lower() in lower:
            wanted = lower[wanted.lower()]
        elif wanted is not None and wanted.lower() in _preset_index():
            canonical = _preset_index()[wanted.lower()]
            aliases = {a.lower() for a in [canonical, *_presets()[canonical].get("aliases", [])]}
            match = [k for k in entries if k.lower() in aliases]
            wanted = match[0] if match else (next(iter(entries)) if len(entries) == 1 else None)
        else:
            wanted = next(iter(entries)) if len(entries) == 1 else None
    if wanted is None or wanted not in entries:
        raise ConfigError(f"{where}: no entry for GPU {_name(name)} (entries: {', '.join(_name(e) for e in entries)})")
    body = entries[wanted]
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: entry {_name(wanted)} must be a JSON object")
    if any(k in body for k in (*BLIS_FIELDS, *BLIS_UNUSED)):
        base = None
        try:
            base = get_preset(wanted)
        except ConfigError:
            pass
        return _from_blis(wanted, body, f"{where}[{wanted if str(wanted).isprintable() else repr(wanted)}]", base)
    return _from_servesim(wanted, body, f"{where}[{wanted if str(wanted).isprintable() else repr(wanted)}]")

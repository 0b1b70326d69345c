"""LoRA adapters in one engine: GPU slots and the CPU cache (both LRU), and each step's LoRA work (docs/LATENCY.md, "LoRA")."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from servesim.engine.invariants import InvariantError
from servesim.latency.plan import LoraStep


class LoraSlots:
    """vLLM's worker-side adapter caches: max_loras GPU slots and max_cpu_loras CPU entries, least recently used out."""

    def __init__(self, max_loras: int, max_cpu_loras: int) -> None:
        self.max_loras = max_loras
        self.max_cpu_loras = max_cpu_loras
        self.gpu: OrderedDict[str, None] = OrderedDict()  # resident adapters, least recently used first
        self.cpu: OrderedDict[str, None] = OrderedDict()
        self.cpu_loads = 0  # adapters copied CPU -> GPU over the run
        self.disk_loads = 0  # adapters read from disk over the run

    def activate(self, adapters: Sequence[str]) -> tuple[int, int]:
        """Make a batch's adapters GPU-resident, in batch order; return (CPU -> GPU loads, disk loads) this step."""
        # vLLM LRUCacheWorkerLoRAManager._apply_adapters: each adapter not in the CPU cache is loaded from disk and
        # added (evicting the LRU one); activate_adapter puts it in a GPU slot, evicting the LRU slot when full.
        gpu, cpu = self.gpu, self.cpu
        loads = disk = 0
        for name in adapters:
            if name in cpu:
                cpu.move_to_end(name)
            else:
                disk += 1
                cpu[name] = None
                if len(cpu) > self.max_cpu_loras:
                    cpu.popitem(last=False)
            if name in gpu:
                gpu.move_to_end(name)
                continue
            loads += 1
            gpu[name] = None
            if len(gpu) > self.max_loras:
                gpu.popitem(last=False)  # the batch has <= max_loras adapters, all just used: the victim is not one
        self.cpu_loads += loads
        self.disk_loads += disk
        return loads, disk

    def step(self, scheduled: Sequence, num_new: Sequence[int]) -> LoraStep:
        """The LoRA work of a scheduled step (requests and their token counts); loads the batch's adapters."""
        adapters: dict[str, None] = {}
        tokens = 0
        for req, n in zip(scheduled, num_new):
            name = req.spec.lora
            if name is not None:
                adapters[name] = None
                tokens += n
        loads, disk = self.activate(list(adapters))
        return LoraStep(tokens, len(adapters), loads, disk)


def check_lora(out, slots: LoraSlots, step: int) -> None:
    """Raise InvariantError if a step's batch has more distinct adapters than max_loras, or the GPU holds more."""
    names = {r.spec.lora for r in out.scheduled if r.spec.lora is not None}
    if len(names) > slots.max_loras:
        rid = next(r.id for r in out.scheduled if r.spec.lora is not None)
        raise InvariantError("lora_batch_adapters", step, rid, f"{len(names)} distinct adapters > max_loras={slots.max_loras}")
    if len(slots.gpu) > slots.max_loras or not names <= set(slots.gpu):
        raise InvariantError("lora_gpu_resident", step, None,
                             f"{len(slots.gpu)} adapters resident (max_loras={slots.max_loras}); batch needs {sorted(names)}")
    if len(slots.cpu) > slots.max_cpu_loras:
        raise InvariantError("lora_cpu_cache", step, None, f"{len(slots.cpu)} adapters cached > max_cpu_loras={slots.max_cpu_loras}")

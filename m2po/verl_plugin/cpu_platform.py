"""A CPU platform for verl 0.9.1: device ``cpu``, collective backend ``gloo``.

verl has no CPU platform: ``verl.plugin.platform`` probes nvidia/npu/rocm and falls back to ``nvidia``,
whose ``current_device()`` fails without CUDA. verl's own seam for new hardware is the platform
registry (``PlatformRegistry.register``) loaded from an external module, so the CPU mode of
:mod:`m2po.verl_plugin.launch` starts every process with::

    VERL_USE_EXTERNAL_MODULES=m2po.verl_plugin.cpu_platform   # imported by verl's __init__
    VERL_PLATFORM=cpu                                          # selects it (never auto-detected)

Importing this module only registers the class (it imports nothing heavy: verl imports it while
initialising itself). :func:`use_cpu_platform` does the same from Python and installs the platform
with ``set_platform`` when verl was imported before the environment variables were set.

The device module is ``torch.cpu`` plus the memory and RNG calls verl makes on ``torch.cuda``
(``empty_cache``, ``max_memory_allocated``, ``mem_get_info``, ``get_rng_state``, ...), answered for
host memory: ``current_device()`` is ``"cpu"``, so ``tensor.to(get_device_id())`` stays on the CPU.
"""

from __future__ import annotations

import os
import types
from contextlib import contextmanager
from typing import Any, Optional

import torch
from verl.plugin.platform import PlatformBase, PlatformRegistry, set_platform

__all__ = ["CPU_DEVICE_MODULE", "PLATFORM_ENV", "PlatformCPU", "loopback_interface", "use_cpu_platform"]

#: the environment that makes every verl process of a run use this platform
PLATFORM_ENV = {"VERL_USE_EXTERNAL_MODULES": __name__, "VERL_PLATFORM": "cpu"}


def loopback_interface() -> str:
    """The loopback network interface (``lo`` on Linux, ``lo0`` on macOS), for ``GLOO_SOCKET_IFNAME``: gloo
    otherwise picks the interface of the machine's hostname, i.e. a real network address."""
    import socket

    names = [name for _, name in socket.if_nameindex()]
    for name in ("lo", "lo0", *[n for n in names if n.startswith("lo")]):
        if name in names:
            return name
    return "lo"


def _host_memory() -> tuple[int, int]:
    import psutil

    vm = psutil.virtual_memory()
    return int(vm.available), int(vm.total)


def _make_device_module() -> types.ModuleType:
    """``torch.cpu`` with the ``torch.cuda`` calls verl makes, for host memory (no caching allocator)."""
    mod = types.ModuleType("m2po_verl_cpu_device")
    for name in dir(torch.cpu):
        if not name.startswith("_"):
            setattr(mod, name, getattr(torch.cpu, name))
    zero = lambda *a, **k: 0  # noqa: E731 - no device allocator on the CPU
    none = lambda *a, **k: None  # noqa: E731
    mod.current_device = lambda: "cpu"
    mod.device_count = lambda: 1
    mod.is_available = lambda: True
    mod.set_device = none
    mod.synchronize = none
    mod.empty_cache = none
    mod.ipc_collect = none
    mod.reset_peak_memory_stats = none
    mod.set_per_process_memory_fraction = none
    mod.memory_allocated = zero
    mod.memory_reserved = zero
    mod.max_memory_allocated = zero
    mod.max_memory_reserved = zero
    mod.mem_get_info = lambda *a, **k: _host_memory()
    mod.get_device_name = lambda *a, **k: "cpu"
    mod.manual_seed = torch.manual_seed
    mod.manual_seed_all = torch.manual_seed
    mod.get_rng_state = lambda *a, **k: torch.get_rng_state()
    mod.set_rng_state = lambda state, *a, **k: torch.set_rng_state(state)
    return mod


CPU_DEVICE_MODULE = _make_device_module()


@PlatformRegistry.register(platform="cpu")
class PlatformCPU(PlatformBase):
    """verl's platform interface answered for the host CPU (gloo collectives, no Ray accelerator)."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> types.ModuleType:
        return CPU_DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # never picked by auto-detection: only VERL_PLATFORM=cpu (or use_cpu_platform) selects it
        return False

    def current_device(self) -> str:  # type: ignore[override]  (verl passes it to .to() / torch.device())
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: Optional[int] = None) -> None:  # noqa: UP045 - base signature
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[None, None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "CPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None


def use_cpu_platform() -> PlatformCPU:
    """Make this process's verl platform the CPU one (also for verl imported before the env was set)."""
    os.environ.update(PLATFORM_ENV)
    platform = PlatformCPU()
    set_platform(platform)
    return platform

"""Compute devices behind one small backend each: resolve, synchronise, identify, restrict, count.

After Zeus's ``zeus/device``: everything that differs between kinds of accelerator sits in one
:class:`DeviceBackend`, so the trial pipeline, the meters and the launcher ask the backend instead
of testing ``device.type == "cuda"``. Supporting another vendor (ROCm GPUs, Intel Gaudi) is one
backend here plus its meter in ``optuna_energy.host.meters``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import torch

from optuna_energy.host.meters import GpuId


class DeviceError(ValueError):
    """A device name this machine cannot run; the message says what is allowed."""


def _cuda_identity(device: torch.device) -> GpuId:
    """UUID and PCI bus id: how NVML finds a CUDA device under ``CUDA_VISIBLE_DEVICES``."""
    properties = torch.cuda.get_device_properties(device)
    uuid = getattr(properties, "uuid", None)
    bus = getattr(properties, "pci_bus_id", None)
    pci_bus_id = None
    if bus is not None:
        domain, device_id = getattr(properties, "pci_domain_id", 0), getattr(properties, "pci_device_id", 0)
        pci_bus_id = f"{domain:04x}:{bus:02x}:{device_id:02x}.0"
    return GpuId(uuid=str(uuid) if uuid is not None else None, pci_bus_id=pci_bus_id)


def _cuda_peak_memory(device: torch.device, run: Callable[[], object]) -> int:
    """Peak bytes the caching allocator held while ``run`` ran, above what it held before."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - before)


def _count_nvidia_gpus() -> int:
    """NVIDIA GPUs on this node as NVML sees them, whatever ``CUDA_VISIBLE_DEVICES`` hides."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no library, no driver, no device: all mean "no GPU"
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    finally:
        pynvml.nvmlShutdown()


def _cuda_available_memory(device: torch.device) -> int:
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def _host_available_memory(device: torch.device) -> int:
    """The machine's available RAM: MemAvailable (free plus reclaimable cache) where Linux says it."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass(frozen=True)
class DeviceBackend:
    """What optuna-energy needs to know about one kind of device."""

    kind: str
    """``torch.device(...).type``."""
    visible: Callable[[], int]
    """How many such devices this process can use (0: none)."""
    synchronize: Callable[[torch.device], None]
    """Wait until queued work has finished, so a measurement window's edge is where it says."""
    identity: Callable[[torch.device], GpuId | None]
    """What meters identify the physical device by."""
    visible_devices_env: str | None = None
    """The variable that restricts a worker process to some devices, for the launcher."""
    count_on_node: Callable[[], int] = lambda: 0
    """Devices on the node, for the launcher (before any restriction)."""
    pins_host_memory: bool = False
    """Copies from pinned host memory are faster (and are what the paper's timing includes)."""
    peak_memory: Callable[[torch.device, Callable[[], object]], int] | None = None
    """Peak device memory a callable allocates, where the device's allocator can tell."""
    available_memory: Callable[[torch.device], int] = _host_available_memory
    """Bytes a new model may still use on the device (the machine's RAM for the CPU)."""


BACKENDS: dict[str, DeviceBackend] = {
    "cpu": DeviceBackend(kind="cpu", visible=lambda: 1, synchronize=lambda device: None,
                         identity=lambda device: None),
    "cuda": DeviceBackend(kind="cuda", visible=torch.cuda.device_count,
                          synchronize=torch.cuda.synchronize, identity=_cuda_identity,
                          visible_devices_env="CUDA_VISIBLE_DEVICES", count_on_node=_count_nvidia_gpus,
                          pins_host_memory=True, peak_memory=_cuda_peak_memory,
                          available_memory=_cuda_available_memory),
}
"""Device kinds by ``torch.device.type``."""


def backend(device: torch.device | str) -> DeviceBackend:
    kind = torch.device(device).type
    if kind not in BACKENDS:
        raise DeviceError(f"no backend for device {str(device)!r}; allowed: {', '.join(BACKENDS)}")
    return BACKENDS[kind]


def available_memory(device: torch.device) -> int:
    """Bytes a new model may still use on ``device``."""
    return backend(device).available_memory(device)


def parse_device_name(name: str) -> tuple[str, int | None]:
    """``auto``, a kind or ``kind:N`` as ``(kind, N)``, checking only the spelling.

    Raises:
        DeviceError: A name no backend takes; the message lists what is allowed.
    """
    if name == "auto":
        return name, None
    kind, colon, index = name.partition(":")
    if kind not in BACKENDS or (colon and (not index.isdigit() or kind == "cpu")):
        allowed = ", ".join(["auto", *(f"{k}, {k}:N" if k != "cpu" else k for k in BACKENDS)])
        raise DeviceError(f"unknown device {name!r}; allowed: {allowed}")
    return kind, int(index) if colon else None


def resolve_device(name: str) -> torch.device:
    """The torch device for ``auto`` (the first accelerator that is visible, else the CPU), a kind
    (``cpu``, ``cuda``) or ``kind:N``.

    Raises:
        DeviceError: Another name, or a device this machine does not have.
    """
    kind, index = parse_device_name(name)
    if kind == "auto":
        return torch.device(next((kind for kind, entry in BACKENDS.items()
                                  if kind != "cpu" and entry.visible() > 0), "cpu"))
    present = BACKENDS[kind].visible()
    if (index or 0) >= present:
        raise DeviceError(f"device is {name!r} but this machine has "
                          f"{f'{present} {kind} device(s)' if present else f'no {kind} device'}; "
                          "use 'auto' or 'cpu'")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    """Wait until the device has finished its queued work."""
    backend(device).synchronize(device)


def identity(device: torch.device) -> GpuId | None:
    """What the device's meters find it by (``None`` for the CPU)."""
    return backend(device).identity(device)

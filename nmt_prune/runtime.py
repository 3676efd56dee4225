"""Process-level settings that make CPU training faster, and what a run ran on."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>


def keep_freed_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Ask glibc malloc to serve large blocks from the heap and not to give freed memory back.

    By default glibc maps every block over 32 MiB (at most) freshly from the kernel and unmaps it
    on free. A training step allocates and frees the same large tensors (logits, gradients)
    every step, so each step pays for hundreds of thousands of page faults: measured here as
    15-50% system CPU time. With this, freed blocks are reused. Peak memory is unchanged; the
    process just keeps its high-water mark. Returns False (and does nothing) off glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, threshold_bytes) == 1
        ok &= libc.mallopt(_M_TRIM_THRESHOLD, threshold_bytes) == 1
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    if not ok:
        log.debug("mallopt refused; malloc settings unchanged")
    return ok


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_record(accelerator: str = "auto") -> dict[str, Any]:
    """results.json ``machine``: what the job ran on. A GPU's numbers differ from a CPU's in the
    last bits, and so can two CPUs' (torch picks its kernels by the instruction set it finds:
    ``cpu_capability``), so the same seed and config can train another model on another machine:
    a study that mixes machines says which is which. ``device`` is ``cuda:<name>`` where
    Lightning's ``accelerator`` resolves to the GPU, else ``cpu``."""
    import torch

    gpu = torch.cuda.is_available() and str(accelerator) in ("auto", "gpu", "cuda")
    return {
        "device": f"cuda:{torch.cuda.get_device_name(0)}" if gpu else "cpu",
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }

"""Memory figures of the running process, from Linux's ``/proc``, shared by the benchmarks.

``VmHWM`` (the peak resident set) sees allocations that ``tracemalloc`` misses (BLAS buffers,
LAPACK workspaces, torch's allocator), and can be reset so that a block's own peak is measured.
"""

from __future__ import annotations


def status() -> dict[str, int]:
    """VmRSS / VmHWM of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) * 1024
    return out


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False

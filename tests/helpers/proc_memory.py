"""A process's memory as Linux reports it (fuzz harness and memory benchmarks share this)."""
from __future__ import annotations

from pathlib import Path


def status_kb(key: str, pid: int | str = "self") -> int:
    """A ``/proc/<pid>/status`` field in kB (``VmRSS``, ``VmHWM``, ``VmData``, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def reset_peak(pid: int | str = "self") -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False

"""What every benchmark report says about the machine it ran on.

The scripts in this folder are run as ``python benchmarks/<name>.py``, so this
module is importable as ``_machine`` (the script's folder is on ``sys.path``).
"""

from __future__ import annotations

import os
import platform


def describe() -> dict:
    """Platform, CPU model and count, Python, and the load average now.

    Call it before the timed work: other jobs on the machine slow every
    timing down, and ``load_average_at_start`` (1, 5 and 15 minutes) shows
    how busy the machine already was. Numbers taken on different CPUs
    (``cpu_model``) are not comparable.
    """
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
    }
    return info


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None

"""What machine a benchmark ran on (every figure is reported with it)."""

import platform


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what platform reports."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"

"""Convert a weights file for a runtime in a child process (``python -m
har.runtimes.convert``), so that PyTorch and the converter's memory peak never sit in
the process that then runs the model.

:func:`har.runtimes.load_runtime` uses it on the first run of a ``.pth`` when PyTorch
is not loaded yet (``har predict`` on OpenVINO or ONNX Runtime): the child loads the
file into PyTorch, writes the cached export (an OpenVINO IR or an ONNX, see
:mod:`har.runtimes.export`) and exits; the parent then compiles the export as any later
run does. Measured on a ResNet-34 ``.pth`` (docs/performance.md).

The child says nothing but the one-time ``note:`` line: any failure exits 1 quietly,
and the parent converts in its own process, which reports the error in one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# the child's exit code once the export is in the cache
CONVERTED = 0


def convert_in_child(model: str, weights: Path, kind: str, sha256: str | None = None,
                     timeout_s: float = 3600.0) -> bool:
    """Write the cached ``kind`` export ("xml" or "onnx") of ``weights`` in a child
    process; True when it did. Never raises for the child's failures."""
    env = {k: v for k, v in os.environ.items() if k != "HAR_PROFILE"}
    cmd = [sys.executable, "-m", "har.runtimes.convert", model, str(weights), kind]
    if sha256:
        cmd.append(sha256)
    from .base import profile

    prof = profile()
    parent_mb = _rss_mb() if prof is not None else None
    try:
        done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError):
        return False
    if prof is not None:  # the machine's peak meanwhile: the child's plus this process's
        import resource

        prof.notes["converter"] = {
            "child_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "parent_rss_mb": parent_mb, "rc": done.returncode}
    return done.returncode == CONVERTED


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) / 1024 for line in fh
                        if line.startswith("VmRSS"))
    except (OSError, StopIteration, ValueError):
        return None


def _main(argv: list[str]) -> int:
    try:
        model, weights, kind = argv[:3]
        sha256 = argv[3] if len(argv) > 3 else None
        from ..models.zoo import get_entry, load_model
        from .export import export_onnx_cached, export_openvino_cached

        module = load_model(model, weights=weights, device="cpu", sha256=sha256)
        preset = getattr(getattr(module, "har_info", None), "preset", None) \
            or get_entry(model).preset
        shape = (preset.clip_len, preset.crop, preset.crop)
        export = export_openvino_cached if kind == "xml" else export_onnx_cached
        export(module, shape)
    except BaseException:  # noqa: BLE001 - the parent converts itself and reports
        return 1
    return CONVERTED


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

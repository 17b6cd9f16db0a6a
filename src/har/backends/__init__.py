"""Old name of :mod:`har.runtimes` (kept importable; new code imports har.runtimes)."""

from ..runtimes import *  # noqa: F401,F403
from ..runtimes import (SUPPORTED_PRECISIONS, Backend, __getattr__, _installed,  # noqa: F401
                        _need, auto_backend, available_backends, check_precision,
                        export_onnx, export_onnx_cached, export_openvino, load_runtime,
                        make_backend)

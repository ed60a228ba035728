"""Model files shipped inside Python packages, and the CPU ONNX Runtime sessions that run them."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnxruntime


def package_file(package: str, *parts: str, install_hint: str) -> Path:
    """The file ``parts`` inside installed ``package``, found without importing the package (an
    import can have side effects: silero_vad's sets torch's thread count for the process).
    ``install_hint`` completes the error when the package or the file is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {package} package is not installed: {install_hint}")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        raise RuntimeError(f"model file not found in the {package} package: {path} ({install_hint})")
    return path


@functools.cache
def cpu_session(model: Path, num_threads: int) -> onnxruntime.InferenceSession:
    """One session per model file and thread count in this process: run() is thread-safe and the
    models used here keep no state between calls, so every caller shares it."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])

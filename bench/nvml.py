"""GPU 0 through NVML, so that a reading process never opens a CUDA context of its own on the measured GPU."""

from __future__ import annotations


def gpu():
    """pynvml and GPU 0's handle, or None where no GPU can be read."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        return pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
    except pynvml.NVMLError:
        return None


def name(found) -> str:
    """The name of the GPU that ``gpu()`` found."""
    pynvml, handle = found
    value = pynvml.nvmlDeviceGetName(handle)
    return value.decode() if isinstance(value, bytes) else value

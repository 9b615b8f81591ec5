"""A model run bare in its runtime on random inputs: timing of kernel stacks and whole models
where the device path's image interface does not apply (several inputs, no metadata)."""

from __future__ import annotations

import os
from pathlib import Path


def raw_runner(model: str | os.PathLike | bytes, threads: int):
    """A no-argument callable running one inference of `model` (a .onnx path, or a .tflite
    path or flatbuffer bytes) on fixed random inputs."""
    if isinstance(model, (str, os.PathLike)) and str(model).endswith(".onnx"):
        from .onnxrt import new_session, random_feeds

        session = new_session(model, threads=threads)
        feeds = random_feeds(session)
        return lambda: session.run(None, feeds)
    from .litert import fill_random_inputs, new_interpreter

    content = model if isinstance(model, bytes) else Path(model).read_bytes()
    interpreter = new_interpreter(model_content=content, threads=threads, provider="xnnpack")
    fill_random_inputs(interpreter)
    return interpreter.invoke

"""LiteRT (TFLite) backend: ai_edge_litert, else tflite_runtime, else tf.lite.

XNNPACK: LiteRT's Python interpreter applies XNNPACK as its *default delegate* when the op
resolver is BUILTIN (ai_edge_litert/interpreter.py: OpResolverType; there is no separate
XNNPACK delegate library to load in the wheel). We ask for that resolver by name, and check
it took effect: delegated partitions show up as nodes named DELEGATE in the execution plan.
provider="builtin" (BUILTIN_WITHOUT_DEFAULT_DELEGATES) runs LiteRT's own kernels instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from types import SimpleNamespace

import numpy as np

from ..artifact import read_tflite_metadata
from ..errors import VitedgeError
from ..limits import check_input_shape, check_tensor_bytes
from .base import Runtime, first_line

# provider name -> OpResolverType member name
PROVIDERS = {
    "xnnpack": "BUILTIN",
    "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
    "reference": "BUILTIN_REF",
}
# What LiteRT prints from C++ on stderr when XNNPACK starts: not news for our users.
_NATIVE_NOISE = ("INFO: Created TensorFlow Lite XNNPACK delegate",)


def interpreter_module():
    """(module with Interpreter and OpResolverType, package name); the first one installed."""
    try:
        import ai_edge_litert.interpreter as mod

        return mod, "ai-edge-litert"
    except ImportError:
        pass
    try:
        import tflite_runtime.interpreter as mod

        return mod, "tflite-runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf  # heavy, last resort: a workstation without LiteRT
    except ImportError:
        raise VitedgeError("no TFLite runtime installed: pip install ai-edge-litert") from None
    return SimpleNamespace(Interpreter=tf.lite.Interpreter, OpResolverType=tf.lite.experimental.OpResolverType), "tensorflow"


def new_interpreter(*, model_path=None, model_content: bytes | None = None, threads: int | None = None,
                    provider: str | None = "xnnpack", preserve_all_tensors: bool = False):
    """A LiteRT interpreter (every one vitedge builds comes from here), tensors not yet allocated.

    provider: "xnnpack" (the BUILTIN resolver, XNNPACK as default delegate), "builtin" (LiteRT's
    own kernels) or "reference"; None keeps the runtime's own default. `preserve_all_tensors`
    keeps intermediate tensors readable after `invoke` (per-layer error)."""
    mod, package = interpreter_module()
    kwargs: dict = {}
    if threads is not None:
        kwargs["num_threads"] = threads
    if preserve_all_tensors:
        kwargs["experimental_preserve_all_tensors"] = True
    if provider is not None:
        name = provider.lower()
        if name not in PROVIDERS:
            raise VitedgeError(f"unknown TFLite provider {provider!r}; choose one of: {', '.join(PROVIDERS)}")
        resolver = getattr(mod, "OpResolverType", None)
        if resolver is not None:
            kwargs["experimental_op_resolver_type"] = getattr(resolver, PROVIDERS[name])
        elif name != "xnnpack":
            raise VitedgeError(f"this {package} cannot select provider {name}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's "moved to LiteRT" notice
        if model_content is not None:
            return mod.Interpreter(model_content=model_content, **kwargs)
        return mod.Interpreter(model_path=str(model_path), **kwargs)


def op_list(interpreter) -> list[dict]:
    """The interpreter's execution plan: one dict per node (op_name, index, inputs, outputs).
    A private LiteRT API (`_get_ops_details`), wrapped here only."""
    return interpreter._get_ops_details()  # noqa: SLF001


def op_types(model_content: bytes) -> list[str]:
    """The sorted op types of a flatbuffer, as LiteRT sees them (no delegate)."""
    interpreter = new_interpreter(model_content=model_content, provider="builtin")
    return sorted({op["op_name"] for op in op_list(interpreter)})


def fill_random_inputs(interpreter, seed: int = 0) -> None:
    """Allocate and set every input to random values of its type (timing and profiling)."""
    interpreter.allocate_tensors()
    rng = np.random.default_rng(seed)
    for d in interpreter.get_input_details():
        if np.issubdtype(d["dtype"], np.floating):
            value = rng.standard_normal(d["shape"]).astype(d["dtype"])
        else:
            info = np.iinfo(d["dtype"])
            value = rng.integers(max(info.min, -64), min(info.max, 64), size=d["shape"]).astype(d["dtype"])
        interpreter.set_tensor(d["index"], value)


def _package_version(package: str) -> str:
    try:
        from importlib.metadata import version

        return version(package if package != "tensorflow" else "tensorflow-cpu")
    except Exception:
        return ""


@contextlib.contextmanager
def _native_stderr(lines: list[str]):
    """Capture what native code writes to file descriptor 2 while the block runs.

    LiteRT logs from C++ (not through Python), so only a file-descriptor redirect keeps its
    INFO line off the user's stderr. The captured lines are returned in `lines`.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            lines.extend(ln for ln in text.splitlines() if ln.strip())


def _replay(lines: list[str]) -> None:
    """Pass on anything LiteRT said that is not its routine start-up line."""
    for line in lines:
        if not line.startswith(_NATIVE_NOISE):
            print(line, file=sys.stderr)


def _declared_bytes(interpreter) -> int:
    """Bytes of every tensor in the model at its declared shapes (what allocate_tensors reserves)."""
    total = 0
    for detail in interpreter.get_tensor_details():
        count = 1
        for d in detail["shape"]:
            count *= max(int(d), 1)
        total += count * np.dtype(detail["dtype"]).itemsize
    return total


class LiteRTRuntime(Runtime):
    name = "litert"

    def __init__(self, path, threads=None, provider=None):
        super().__init__(path, read_tflite_metadata(path), threads)
        _, self.package = interpreter_module()
        self.provider = (provider or "xnnpack").lower()
        if self.provider not in PROVIDERS:
            raise VitedgeError(f"unknown TFLite provider {provider!r}; choose one of: {', '.join(PROVIDERS)}")
        native: list[str] = []
        try:
            with _native_stderr(native):
                self.interpreter = new_interpreter(model_path=self.path, threads=self.threads, provider=self.provider)
                for detail in self.interpreter.get_input_details():  # before their memory exists
                    check_input_shape(self._shape(detail), str(self.path))
                check_tensor_bytes(_declared_bytes(self.interpreter), str(self.path))
                self.interpreter.allocate_tensors()  # XNNPACK is applied here
        except VitedgeError:
            raise
        except Exception as exc:
            detail = next((ln for ln in native if "ERROR" in ln), None) or first_line(exc)
            raise VitedgeError(f"{self.path}: LiteRT cannot load it ({detail[:200]})") from None
        _replay(native)
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise VitedgeError(f"{self.path}: {len(inputs)} inputs and {len(outputs)} outputs; "
                               "an image classifier has one of each")
        self._in, self._out = inputs[0], outputs[0]
        for detail in (self._in, self._out):
            if detail["dtype"] not in (np.float32, np.int8, np.uint8, np.int16):
                raise VitedgeError(f"{self.path}: tensor {detail['name']} has type "
                                   f"{np.dtype(detail['dtype']).name}, not supported")
            if detail["dtype"] != np.float32 and not detail["quantization"][0]:
                raise VitedgeError(f"{self.path}: integer tensor {detail['name']} has no scale/zero point")

    # -- tensors -------------------------------------------------------------------------------
    @staticmethod
    def _shape(detail) -> tuple:
        sig = detail.get("shape_signature")
        sig = detail["shape"] if sig is None or len(sig) == 0 else sig
        return tuple(None if d < 0 else int(d) for d in sig)

    @property
    def raw_input_shape(self):
        return self._shape(self._in)

    @property
    def raw_output_shape(self):
        return self._shape(self._out)

    @property
    def input_dtype(self) -> str:
        return np.dtype(self._in["dtype"]).name

    @property
    def xnnpack_partitions(self) -> int:
        """How many parts of the graph XNNPACK took over (0: it runs nowhere)."""
        try:
            return sum(op.get("op_name") == "DELEGATE" for op in op_list(self.interpreter))
        except Exception:  # a private API; older runtimes may lack it
            return -1

    def describe(self):
        parts = self.xnnpack_partitions
        return {**super().describe(), "package": self.package, "version": _package_version(self.package),
                "provider": self.provider, "xnnpack_partitions": parts, "input_dtype": self.input_dtype}

    def version(self):
        return f"{self.package} {_package_version(self.package)}".strip()

    # -- running -------------------------------------------------------------------------------
    def _resize_for(self, n: int) -> None:
        if int(self._in["shape"][0]) == n:
            return
        native: list[str] = []
        with _native_stderr(native):
            self.interpreter.resize_tensor_input(self._in["index"], [n, *self._in["shape"][1:]])
            self.interpreter.allocate_tensors()
        _replay(native)
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]

    def _run(self, batch):
        self._resize_for(len(batch))
        x = batch
        if self._in["dtype"] != np.float32:
            # Quantize with the input tensor's own scale and zero point: q = round(x / s) + z.
            scale, zero = self._in["quantization"]
            info = np.iinfo(self._in["dtype"])
            x = np.clip(np.rint(batch / scale) + zero, info.min, info.max).astype(self._in["dtype"])
        self.interpreter.set_tensor(self._in["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self._out["index"])
        if y.dtype != np.float32:
            scale, zero = self._out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return np.array(y, dtype=np.float32)

"""The registry of artifact formats (plug-in interface: `vitedge/formats/base.py`).

    from vitedge import formats
    formats.get("onnx").precisions          # ('fp32', 'fp16', 'dynamic', 'int8')
    formats.for_path("m_int8.tflite").name  # 'tflite' (a clear VitedgeError for other suffixes)
    [f.name for f in formats.all_formats()] # registration order: tflite, onnx, ort, ...

Built-in formats are the modules named in BUILTIN_MODULES, each defining `FORMAT`; other
packages add theirs through the "vitedge.formats" entry-point group. Loading them imports no
TensorFlow: format modules import their converters inside functions.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from ..errors import UsageError, VitedgeError
from .base import ArtifactFormat, Converted, Converter, ExportContext

# One line per built-in format, in the order `--format all`, help texts and tables use.
BUILTIN_MODULES = (
    "vitedge.formats.tflite",
    "vitedge.formats.onnx",
    "vitedge.formats.ort",
    "vitedge.formats.openvino",  # optional extra: vitedge[openvino]
)
ENTRY_POINT_GROUP = "vitedge.formats"

_REGISTRY: dict[str, ArtifactFormat] = {}
_builtins_loaded = False
_plugins_loaded = False


def register(fmt: ArtifactFormat) -> ArtifactFormat:
    """Add `fmt` (replacing a format of the same name); returns it."""
    if not fmt.name or not fmt.suffixes:
        raise ValueError(f"a format needs a name and at least one suffix: {fmt!r}")
    for other in _REGISTRY.values():
        clash = set(other.suffixes) & set(fmt.suffixes)
        if other.name != fmt.name and clash:
            raise ValueError(f"format {fmt.name} claims {sorted(clash)}, already {other.name}'s")
    _REGISTRY[fmt.name] = fmt
    return fmt


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_MODULES:
            register(importlib.import_module(module).FORMAT)


def _load() -> None:
    """Built-in formats, then the entry-point plug-ins (which add formats, never replace one).

    Scanning entry points imports importlib.metadata and reads every installed package's
    metadata (tens of ms), so `get` and `for_path` look at the built-in formats first and scan
    only for a name or suffix they do not know: predict's cold start does not pay for it."""
    global _plugins_loaded
    _load_builtins()
    if _plugins_loaded:
        return
    _plugins_loaded = True
    try:
        from importlib.metadata import entry_points

        found = entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # broken package metadata must not stop the built-in formats
        found = ()
    builtin = set(_REGISTRY)
    for ep in found:
        try:
            fmt = ep.load()
            if fmt.name not in builtin:
                register(fmt)
        except Exception:  # a third-party plug-in that fails to import or clashes is skipped, not fatal
            continue


def all_formats() -> list[ArtifactFormat]:
    """Every registered format, in registration order."""
    _load()
    return list(_REGISTRY.values())


def names() -> list[str]:
    return [f.name for f in all_formats()]


def get(name: str) -> ArtifactFormat:
    """The format called `name`; a UsageError naming the choices otherwise."""
    _load_builtins()
    fmt = _REGISTRY.get(str(name).lower())
    if fmt is None:
        _load()
        fmt = _REGISTRY.get(str(name).lower())
    if fmt is None:
        raise UsageError(f"unknown format {name!r}; choose {', '.join(names())}")
    return fmt


def suffixes() -> dict[str, str]:
    """{suffix: format name} of every registered format."""
    return {s: f.name for f in all_formats() for s in f.suffixes}


def for_path(path: str | os.PathLike) -> ArtifactFormat:
    """The format of a file, from its suffix; a clear VitedgeError for any other suffix."""
    suffix = Path(path).suffix.lower()
    _load_builtins()
    for fmt in _REGISTRY.values():
        if suffix in fmt.suffixes:
            return fmt
    table = suffixes()
    if suffix not in table:
        known = list(table)
        expected = ", ".join(known[:-1]) + f" or {known[-1]}" if len(known) > 1 else known[0]
        raise VitedgeError(f"{path}: unknown artifact type {suffix or '(none)'}; expected {expected}")
    return _REGISTRY[table[suffix]]




def read_metadata(path: str | os.PathLike) -> dict | None:
    """The vitedge metadata inside an artifact, or None if it has none (a foreign file)."""
    path = Path(path)
    if not path.exists():
        raise VitedgeError(f"{path}: no such file")
    if path.is_dir():
        raise VitedgeError(f"{path}: is a directory, not a model file")
    if path.stat().st_size == 0:
        raise VitedgeError(f"{path}: empty file (0 bytes)")
    return for_path(path).read_metadata(path)


__all__ = ["ArtifactFormat", "Converted", "Converter", "ExportContext", "all_formats", "for_path", "get",
           "names", "read_metadata", "register", "suffixes"]

"""The formats registry with a real third-party plug-in installed through an entry point.

A package on sys.path with a dist-info folder declaring `[vitedge.formats]` is what pip leaves
behind for a plug-in; the registry must find it, must not let it replace a built-in format, and
must not scan entry points at all when a built-in suffix is looked up (predict's cold start).
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = textwrap.dedent('''
    from vitedge.formats.base import ArtifactFormat

    class Foo(ArtifactFormat):
        name = "foo"
        title = "Foo"
        suffixes = (".foo",)
        precisions = ("fp32",)

        def read_metadata(self, path):
            return {"from": "plugin"}

    class FakeOnnx(Foo):  # tries to take over a built-in format's name
        name = "onnx"
        suffixes = (".fakeonnx",)

    FORMAT = Foo()
    EVIL = FakeOnnx()
''')


def _site_with_plugin(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "foo_plugin").mkdir(parents=True)
    (site / "foo_plugin" / "__init__.py").write_text(PLUGIN)
    info = site / "foo_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: foo-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[vitedge.formats]\nfoo = foo_plugin:FORMAT\nevil = foo_plugin:EVIL\n")
    return site


def _run(site: Path, code: str) -> dict:
    env_path = f"{site}{':' + str(ROOT)}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_builtin_suffix_is_found_without_scanning_entry_points(tmp_path):
    out = _run(_site_with_plugin(tmp_path), textwrap.dedent('''
        import json, sys
        from vitedge import formats
        name = formats.for_path("m.tflite").name
        json.dump({"name": name, "scanned": "importlib.metadata" in sys.modules,
                   "known": sorted(formats._REGISTRY)}, sys.stdout)
    '''))
    assert out["name"] == "tflite"
    assert out["scanned"] is False
    assert "foo" not in out["known"]


def test_a_plugin_format_is_found_by_suffix_and_name_and_cannot_replace_a_builtin(tmp_path):
    out = _run(_site_with_plugin(tmp_path), textwrap.dedent('''
        import json, sys
        from vitedge import formats
        by_suffix = formats.for_path("m.foo").name
        by_name = formats.get("foo").name
        json.dump({"suffix": by_suffix, "name": by_name, "onnx": type(formats.get("onnx")).__module__,
                   "names": formats.names(), "fakeonnx": ".fakeonnx" in formats.suffixes()}, sys.stdout)
    '''))
    assert out["suffix"] == "foo" and out["name"] == "foo"
    assert out["onnx"] == "vitedge.formats.onnx"  # the built-in one, not the plug-in's
    assert out["fakeonnx"] is False
    assert out["names"][:3] == ["tflite", "onnx", "ort"] and out["names"][-1] == "foo"

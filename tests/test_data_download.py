"""`vitedge data fashion-mnist` downloads: a real HTTP server on 127.0.0.1 (started and stopped
here) serves copies of Debian's files, a corrupted copy, and one that stops mid-file."""

import gzip
import hashlib
import json
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import assert_one_line_error, run_cli

from vitedge.data import download as dl
from vitedge.data import fmnist_files as ff

needs_debian = pytest.mark.skipif(
    not ff.complete(ff.DEBIAN_DIR, ("test",)), reason="Debian's dataset-fashion-mnist not installed"
)
IMAGES, LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"


class FileServer:
    """Serves `files` (name -> bytes) with HTTP Range support; names in `cut_once` send half
    their body on the first request, then drop the connection."""

    def __init__(self, files: dict[str, bytes], cut_once=()):
        self.files, self.cut = dict(files), set(cut_once)
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                body = server.files.get(name)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if rng := self.headers.get("Range"):
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if name in server.cut:
                    server.cut.discard(name)
                    self.wfile.write(body[start:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def debian(name: str) -> bytes:
    return (ff.DEBIAN_DIR / name).read_bytes()


def fetch(server, cache, *extra):
    return run_cli("data", "fashion-mnist", "--split", "test", "--url", server.url, "--cache-dir", cache, *extra,
                   timeout=120)


def leftovers(cache):
    return sorted(p.name for p in (cache / "fashion-mnist").glob("*")) if (cache / "fashion-mnist").exists() else []


@needs_debian
def test_download_from_an_explicit_url_even_with_debian_installed(tmp_path):
    cache = tmp_path / "cache"
    files = {n: debian(n) for n in (IMAGES, LABELS)}
    with FileServer(files) as server:
        proc = fetch(server, cache, "--out", tmp_path / "fm", "--limit", "30", "--json")
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["origin"] == f"downloaded from {server.url}"
        assert summary["images"] == {"test": 30}
        assert sorted(n for n, _ in server.requests) == [IMAGES, LABELS]
        for name, body in files.items():
            assert (cache / "fashion-mnist" / name).read_bytes() == body
        assert leftovers(cache) == [IMAGES, LABELS]  # no .part files
        again = fetch(server, cache, "--download-only", "--json")  # verified cache: no new request
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["origin"] == "cache" and len(server.requests) == 2


@needs_debian
def test_a_corrupted_copy_is_one_line_and_leaves_nothing(tmp_path):
    cache = tmp_path / "cache"
    bad = bytearray(debian(LABELS))
    bad[len(bad) // 2] ^= 0xFF
    with FileServer({IMAGES: debian(IMAGES), LABELS: bytes(bad)}) as server:
        proc = fetch(server, cache, "--download-only")
    line = assert_one_line_error(proc)
    assert "checksum mismatch" in line and LABELS in line and "deleted" in line
    assert LABELS not in leftovers(cache) and f"{LABELS}.part" not in leftovers(cache)


@needs_debian
def test_a_download_cut_mid_file_resumes_with_a_range_request(tmp_path):
    cache = tmp_path / "cache"
    body = debian(IMAGES)
    with FileServer({IMAGES: body, LABELS: debian(LABELS)}, cut_once={IMAGES}) as server:
        first = fetch(server, cache, "--download-only")
        line = assert_one_line_error(first)
        assert "stopped after" in line and "again to resume" in line
        part = cache / "fashion-mnist" / f"{IMAGES}.part"
        assert part.stat().st_size == len(body) // 2
        assert IMAGES not in leftovers(cache)  # nothing under the final name
        second = fetch(server, cache, "--download-only")
    assert second.returncode == 0, second.stderr
    assert (IMAGES, f"bytes={len(body) // 2}-") in server.requests
    assert (cache / "fashion-mnist" / IMAGES).read_bytes() == body and not part.exists()


def test_a_missing_file_on_the_server_is_one_line(tmp_path):
    with FileServer({}) as server:
        proc = fetch(server, tmp_path / "cache", "--download-only")
    line = assert_one_line_error(proc)
    assert "HTTP 404" in line and server.url in line


def test_a_closed_port_is_one_line(tmp_path):
    with FileServer({}) as server:
        url = server.url
    proc = run_cli("data", "fashion-mnist", "--url", url, "--cache-dir", tmp_path, "--download-only", timeout=60)
    assert "downloading" in assert_one_line_error(proc)


@needs_debian
def test_debian_files_are_the_published_ones_with_the_gzip_name_stripped():
    """Restoring the original gzip header (FNAME, mtime) gives the MD5 Zalando publishes, so the
    SHA-256 recorded for the data inside is that of the published files too."""
    mtimes = {IMAGES: 1504176627, LABELS: 1504176627}
    for name, mtime in mtimes.items():
        body = debian(name)
        assert body[:4] == b"\x1f\x8b\x08\x00"  # deflate, no FNAME
        original = b"\x1f\x8b\x08\x08" + struct.pack("<I", mtime) + body[8:10] + name[:-3].encode() + b"\0" + body[10:]
        assert len(original) == ff.FILES[name].published_size
        assert hashlib.md5(original).hexdigest() == ff.FILES[name].published_md5
        assert hashlib.sha256(gzip.decompress(body)).hexdigest() == ff.FILES[name].idx_sha256
        # and check_file accepts both wrappers
        assert ff.check_file(ff.DEBIAN_DIR / name, ff.FILES[name]) is None


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert dl.cache_root() == tmp_path / "vitedge"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert dl.cache_root() == tmp_path / "home" / ".cache" / "vitedge"
    assert dl.cache_root(tmp_path / "x") == tmp_path / "x"

"""Official checkpoint download against a real HTTP server on 127.0.0.1: good, truncated, stalled, 404, cached."""

import http.server
import io
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time

import pytest

from efficientdet_tf.checkpoints.download import fetch_official, official_url
from efficientdet_tf.checkpoints.errors import CheckpointError, resolve_checkpoint

NAME = "efficientdet-d0"


def _archive(reference_dir):
    """A tar.gz in the official layout (`efficientdet-d0/checkpoint`, `model.*`) of the test checkpoint."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for entry in sorted(os.listdir(reference_dir)):
            if entry == "checkpoint" or entry.startswith("model."):
                tar.add(os.path.join(reference_dir, entry), arcname="%s/%s" % (NAME, entry))
    return buffer.getvalue()


class _Handler(http.server.BaseHTTPRequestHandler):
    archive = b""
    requests = []

    def do_GET(self):  # noqa: N802 - the http.server hook name
        self.requests.append(self.path)
        if self.path.endswith("/good.tar.gz"):
            self._headers(len(self.archive))
            self.wfile.write(self.archive)
        elif self.path.endswith("/truncated.tar.gz"):
            self._headers(len(self.archive))
            self.wfile.write(self.archive[: len(self.archive) // 3])
            self.close_connection = True
        elif self.path.endswith("/stall.tar.gz"):
            self._headers(len(self.archive))
            self.wfile.write(self.archive[:1000])
            self.wfile.flush()
            time.sleep(4)
        elif self.path.endswith("/slow.tar.gz"):  # about 3 s for the whole archive
            self._headers(len(self.archive))
            step = len(self.archive) // 30 + 1
            for start in range(0, len(self.archive), step):
                self.wfile.write(self.archive[start:start + step])
                self.wfile.flush()
                time.sleep(0.1)
        elif self.path.endswith("/not_a_tar.tar.gz"):
            self._headers(11)
            self.wfile.write(b"hello world")
        else:
            self.send_error(404, "Not Found")

    def _headers(self, length):
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def server(d0_reference_dir):
    _Handler.archive = _archive(d0_reference_dir)
    _Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % httpd.server_address[1], httpd
    httpd.shutdown()
    httpd.server_close()


def _leftovers(cache):
    """What the cache holds besides the checkpoint and its download lock."""
    return sorted(entry for entry in os.listdir(cache) if entry not in (NAME, ".%s.lock" % NAME)) \
        if os.path.isdir(cache) else []


def test_good_download_is_unpacked_then_reused_without_the_server(server, tmp_path, d0_reference_dir):
    base, httpd = server
    cache = str(tmp_path / "cache")
    folder = fetch_official(NAME, cache=cache, url=base + "/good.tar.gz", timeout=10)
    assert folder == os.path.join(cache, NAME)
    with open(resolve_checkpoint(folder) + ".index", "rb") as got, \
            open(os.path.join(d0_reference_dir, "model.index"), "rb") as want:
        assert got.read() == want.read()
    assert _leftovers(cache) == []
    httpd.shutdown()
    httpd.server_close()
    # The server is gone: the second call must come from the cache (an unreachable URL proves it).
    assert fetch_official(NAME, cache=cache, url=base + "/good.tar.gz", timeout=1) == folder
    assert _Handler.requests == ["/good.tar.gz"]


@pytest.mark.parametrize("path, message", [
    ("/truncated.tar.gz", "truncated"),
    ("/stall.tar.gz", "stalled for 1 s"),
    ("/missing.tar.gz", "HTTP 404"),
    ("/not_a_tar.tar.gz", "not a readable tar file"),
])
def test_bad_downloads_leave_nothing_that_looks_complete(server, tmp_path, path, message):
    base, _ = server
    cache = str(tmp_path / "cache")
    start = time.monotonic()
    with pytest.raises(CheckpointError, match=message) as error:
        fetch_official(NAME, cache=cache, url=base + path, timeout=1)
    assert time.monotonic() - start < 30
    # One line, saying what to fetch by hand and where to put it.
    text = str(error.value)
    assert "\n" not in text and base + path in text and os.path.join(cache, NAME, "checkpoint") in text
    assert not os.path.exists(os.path.join(cache, NAME)) and _leftovers(cache) == []


def test_leftovers_of_a_killed_download_are_cleared(server, tmp_path):
    base, _ = server
    cache = tmp_path / "cache"
    (cache / (".%s.abc.unpack" % NAME) / NAME).mkdir(parents=True)
    (cache / (".%s.def.part" % NAME)).write_bytes(b"partial")
    fetch_official(NAME, cache=str(cache), url=base + "/good.tar.gz", timeout=10)
    assert _leftovers(str(cache)) == []


def test_no_network_names_the_url_and_the_folder(tmp_path, monkeypatch):
    # Port 9 on 127.0.0.1 refuses at once: what a machine without a network answers.
    monkeypatch.setenv("EFFICIENTDET_TF_MIRROR", "http://127.0.0.1:9/efficientdet")
    monkeypatch.setenv("EFFICIENTDET_TF_CACHE", str(tmp_path / "cache"))
    assert official_url(NAME) == "http://127.0.0.1:9/efficientdet/coco2/efficientdet-d0.tar.gz"
    from efficientdet_tf.checkpoints.loading import resolve_pretrained
    with pytest.raises(CheckpointError, match=r"cannot reach .*download http://127.0.0.1:9/efficientdet/coco2/"
                                              r"efficientdet-d0.tar.gz and unpack it into .*cache"):
        resolve_pretrained(NAME)


def test_pretrained_name_loads_through_the_mirror(server, tmp_path, monkeypatch):
    import numpy as np

    import efficientdet_tf as edt
    from efficientdet_tf.checkpoints.loading import load_weights

    base, _ = server
    os.makedirs(tmp_path / "mirror", exist_ok=True)
    monkeypatch.setenv("EFFICIENTDET_TF_CACHE", str(tmp_path / "cache"))
    # The official path is <bucket>/coco2/<name>.tar.gz; the test server answers good.tar.gz only.
    monkeypatch.setattr("efficientdet_tf.checkpoints.download.official_url", lambda name: base + "/good.tar.gz")
    model = edt.build_model("efficientdet-d0", image_size=128)
    load_weights(model, NAME)
    assert os.path.isfile(tmp_path / "cache" / NAME / "checkpoint")
    reference = edt.build_model("efficientdet-d0", image_size=128)
    load_weights(reference, os.path.join(str(tmp_path / "cache"), NAME))
    for a, b in zip(model.weights, reference.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


FETCH = """
import sys
from efficientdet_tf.checkpoints.download import fetch_official
print("FOLDER " + fetch_official("%s", cache=sys.argv[1], url=sys.argv[2], timeout=30))
""" % NAME


def _fetchers(count, cache, url):
    return [subprocess.Popen([sys.executable, "-c", FETCH, cache, url], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(count)]


def test_processes_fetching_at_once_all_get_the_checkpoint_downloaded_once(server, tmp_path):
    """Three processes against a slow server: each used to delete the others' partial files."""
    base, _ = server
    cache = str(tmp_path / "cache")
    processes = _fetchers(3, cache, base + "/slow.tar.gz")
    outputs = [p.communicate(timeout=300) for p in processes]
    for p, (stdout, stderr) in zip(processes, outputs):
        assert p.returncode == 0, stderr[-2000:]
        assert "FOLDER " + os.path.join(cache, NAME) in stdout
    assert _Handler.requests == ["/slow.tar.gz"]
    waited = [stderr for _, stderr in outputs if "another process is downloading %s" % NAME in stderr]
    assert len(waited) >= 1
    assert resolve_checkpoint(os.path.join(cache, NAME)) and _leftovers(cache) == []


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_a_downloader_killed_midway_lets_the_next_one_download(server, tmp_path):
    base, _ = server
    cache = str(tmp_path / "cache")
    first, = _fetchers(1, cache, base + "/slow.tar.gz")
    deadline = time.monotonic() + 60
    while not [e for e in (os.listdir(cache) if os.path.isdir(cache) else []) if e.endswith(".part")]:
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    second, = _fetchers(1, cache, base + "/slow.tar.gz")
    time.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr[-2000:]
    assert "FOLDER " + os.path.join(cache, NAME) in stdout
    assert _Handler.requests == ["/slow.tar.gz", "/slow.tar.gz"] and _leftovers(cache) == []

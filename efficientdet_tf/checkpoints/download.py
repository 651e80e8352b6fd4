"""Official checkpoints by model name: downloaded once into a cache, verified, unpacked atomically, reused offline.

Layout of the cache (`EFFICIENTDET_TF_CACHE`, default `~/.cache/efficientdet_tf`, or under
`$XDG_CACHE_HOME`): `<cache>/<model name>/` holds the unpacked checkpoint (`checkpoint`,
`model.index`, `model.data-*`). That folder appears in one rename, only after the archive was read
whole, matched its announced size (and checksum, where one is known) and unpacked without error,
so a killed download or unpack never leaves something that looks complete. Partial files are named
`.<name>.*.part` / `.unpack` and are cleared by the next download.

Several processes may ask for the same checkpoint at once (the workers of one job, two jobs on one
machine): one downloads while holding an exclusive lock on `<cache>/.<name>.lock`, the others wait
for it and then find the folder published. The lock is the kernel's (`flock`), so a downloader that
is killed releases it and the next one in line downloads.
"""

import contextlib
import hashlib
import http.client
import os
import shutil
import socket
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request

try:
    import fcntl
except ImportError:  # Windows: no flock; concurrent downloads then each write their own partial files
    fcntl = None

from efficientdet_tf.checkpoints.errors import CheckpointError

CACHE_ENV = "EFFICIENTDET_TF_CACHE"
# A mirror of the official bucket (same folders below it), for machines that cannot reach Google Cloud Storage.
MIRROR_ENV = "EFFICIENTDET_TF_MIRROR"
OFFICIAL_BUCKET = "https://storage.googleapis.com/cloud-tpu-checkpoints/efficientdet"
# sha256 of official archives, where known; others are checked by size and by unpacking.
KNOWN_SHA256 = {}
_CHUNK = 1 << 20


def cache_dir():
    """The checkpoint cache folder (not created)."""
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "efficientdet_tf")


def official_url(name):
    """The download address of the official COCO checkpoint of `name` (mirror applied)."""
    from efficientdet_tf.checkpoints.official import OFFICIAL_URLS

    if name not in OFFICIAL_URLS:
        raise CheckpointError("no official checkpoint is published for %r; known: %s"
                              % (name, ", ".join(sorted(OFFICIAL_URLS))))
    url = OFFICIAL_URLS[name]
    mirror = os.environ.get(MIRROR_ENV, "").rstrip("/")
    return mirror + url[len(OFFICIAL_BUCKET):] if mirror else url


def _complete(folder):
    return os.path.isfile(os.path.join(folder, "checkpoint")) and any(
        f.endswith(".index") for f in os.listdir(folder))


def fetch_official(name, cache=None, url=None, timeout=60.0, sha256=None):
    """The local folder of the official checkpoint `name`, downloading it the first time.

    Args:
      name: model name, e.g. 'efficientdet-d0'.
      cache: cache folder (default `cache_dir()`).
      url: where to download from (default `official_url(name)`).
      timeout: seconds any one network wait may take (connect, or a stalled transfer).
      sha256: expected checksum of the archive (default `KNOWN_SHA256.get(name)`).

    Raises:
      CheckpointError: in one line, saying what failed and what to download where by hand.
    """
    cache = os.fspath(cache or cache_dir())
    target = os.path.join(cache, name)
    if os.path.isdir(target) and _complete(target):
        return target
    url = url or official_url(name)
    sha256 = sha256 or KNOWN_SHA256.get(name)
    hint = ("download %s and unpack it into %s (so that %s exists), or pass a local checkpoint path"
            % (url, cache, os.path.join(target, "checkpoint")))
    try:
        os.makedirs(cache, exist_ok=True)
        lock = open(os.path.join(cache, ".%s.lock" % name), "a")
    except OSError as e:
        raise CheckpointError("cannot write the checkpoint cache %s (%s): set %s to a writable folder"
                              % (cache, e.strerror or e, CACHE_ENV)) from None
    with lock, _exclusive(lock, cache, name):
        if os.path.isdir(target) and _complete(target):
            return target  # another process published it while this one waited
        # Only the lock holder downloads: what is left is a killed download's.
        _clear_leftovers(cache, name)
        _download_and_publish(name, url, target, cache, timeout, sha256, hint)
    return target


@contextlib.contextmanager
def _exclusive(lock, cache, name):
    """Holds the open `lock` file exclusively; says once that it waits for another process.

    The lock file stays in the cache: removing it would let a third process lock a new file while
    a second still holds the old one."""
    if fcntl is None:
        yield
        return
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print("efficientdet_tf: another process is downloading %s into %s; waiting for it" % (name, cache),
              file=sys.stderr, flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)


def _download_and_publish(name, url, target, cache, timeout, sha256, hint):
    part = tempfile.NamedTemporaryFile(dir=cache, prefix=".%s." % name, suffix=".part", delete=False)
    unpack = None
    try:
        with part:
            _download(url, part, timeout, sha256)
        unpack = tempfile.mkdtemp(dir=cache, prefix=".%s." % name, suffix=".unpack")
        inner = _unpack(part.name, unpack, name)
        if os.path.isdir(target):  # an incomplete folder from an older tool: replace it
            shutil.rmtree(target)
        os.rename(inner, target)
    except CheckpointError as e:
        raise CheckpointError("cannot fetch the official %s checkpoint: %s; %s" % (name, e, hint)) from None
    except OSError as e:
        raise CheckpointError("cannot fetch the official %s checkpoint: %s; %s"
                              % (name, e.strerror or e, hint)) from None
    finally:
        if os.path.exists(part.name):
            os.unlink(part.name)
        if unpack:
            shutil.rmtree(unpack, ignore_errors=True)


def _clear_leftovers(cache, name):
    for entry in os.listdir(cache):
        if entry.startswith(".%s." % name) and entry.endswith((".part", ".unpack")):
            path = os.path.join(cache, entry)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)


def _download(url, out, timeout, sha256):
    """Streams `url` into the open file `out`; checks the length the server announced and `sha256`."""
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            announced = response.headers.get("Content-Length")
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
    except urllib.error.HTTPError as e:
        raise CheckpointError("HTTP %d %s from %s" % (e.code, e.reason, url)) from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise CheckpointError("no answer from %s within %g s" % (url, timeout)) from None
        raise CheckpointError("cannot reach %s (%s)" % (url, reason)) from None
    except (socket.timeout, TimeoutError):
        raise CheckpointError("the download from %s stalled for %g s after %d bytes" % (url, timeout, received)) from None
    except ConnectionError as e:
        raise CheckpointError("the connection to %s broke after %d bytes (%s)" % (url, received, e)) from None
    except http.client.HTTPException as e:  # IncompleteRead: the server closed the connection early
        raise CheckpointError("the download from %s is truncated after %d bytes (%s)"
                              % (url, received, type(e).__name__)) from None
    if announced is not None and received != int(announced):
        raise CheckpointError("the download from %s is truncated: %d of %s bytes" % (url, received, announced))
    if sha256 and digest.hexdigest() != sha256:
        raise CheckpointError("the archive from %s has sha256 %s, expected %s" % (url, digest.hexdigest(), sha256))


def _unpack(archive, folder, name):
    """Unpacks the tar archive into `folder`; returns the unpacked checkpoint folder inside it."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")  # refuses absolute paths, '..' and devices
    except (tarfile.TarError, EOFError, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(":")
        raise CheckpointError("the archive is not a readable tar file (%s)" % first) from None
    for candidate in (os.path.join(folder, name), folder):
        if os.path.isdir(candidate) and _complete(candidate):
            if candidate == folder:  # flat archive: move the files one level down
                inner = os.path.join(folder, name)
                os.makedirs(inner)
                for entry in os.listdir(folder):
                    if entry != name:
                        os.rename(os.path.join(folder, entry), os.path.join(inner, entry))
                return inner
            return candidate
    raise CheckpointError("the archive holds no checkpoint (expected %s/checkpoint and %s/*.index)" % (name, name))

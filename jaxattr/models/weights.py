"""Fetch weight files by URL into a local cache: a timeout, a progress line on stderr,
a SHA-256 check against the digests pinned here, and an atomic write (standard library
only)."""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TextIO

__all__ = [
    "DEFAULT_TIMEOUT",
    "KNOWN_SHA256",
    "DownloadError",
    "default_cache_dir",
    "fetch",
    "sha256_file",
]

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")

#: Seconds a connection or a read may wait before the download fails.
DEFAULT_TIMEOUT = 60.0

#: SHA-256 of every weight file that ``jaxattr.models.MODELS`` names, by file name.
#: Full digests for the files checked (the CIFAR ResNets, the Lite0 file of the PyPI
#: package, torchvision's ResNet-18 and ResNet-50); for the other torchvision files,
#: the 8-digit prefix that torchvision publishes in the file name (what ``torch.hub``
#: checks). ``fetch`` checks a downloaded or cached file of that name against it.
KNOWN_SHA256: dict[str, str] = {
    "efficientnet-lite0-57934424.pth": (
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
    ),
    "resnet20-12fca82f.th": (
        "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8"
    ),
    "resnet32-d509ac18.th": (
        "d509ac1820d7f25398913559d7e81a13229b1e7adc5648e3bfa5e22dc137f850"
    ),
    "resnet44-014dd654.th": (
        "014dd6541728a1c700b1642ab640e211dc6eb8ed507d70697458dc8f8a0ae2e4"
    ),
    "resnet56-4bfd9763.th": (
        "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367"
    ),
    "resnet18-f37072fd.pth": (
        "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec"
    ),
    "resnet34-b627a593.pth": "b627a593",
    "resnet50-0676ba61.pth": (
        "0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a"
    ),
    "resnet101-63fe2227.pth": "63fe2227",
    "resnet152-394f9c45.pth": "394f9c45",
    "vgg11-8a719046.pth": "8a719046",
    "vgg13-19584684.pth": "19584684",
    "vgg16-397923af.pth": "397923af",
    "vgg19-dcbb9e9d.pth": "dcbb9e9d",
    "vgg11_bn-6002323d.pth": "6002323d",
    "vgg13_bn-abd245e5.pth": "abd245e5",
    "vgg16_bn-6c64b313.pth": "6c64b313",
    "vgg19_bn-c79401a0.pth": "c79401a0",
}


class DownloadError(urllib.error.URLError):
    """A download that failed (offline, timed out, cut short). ``reason`` is the
    underlying cause, ``url`` the address; the message names the way round it."""

    def __init__(self, url: str, reason, target: Path):
        super().__init__(reason)
        self.url = url
        self.target = target

    def __str__(self) -> str:
        return (
            f"fetch: could not download {self.url} ({self.reason}). Download that "
            "file where you are online and pass its path, models.load(name, "
            f"weights=PATH) (CLI: --weights PATH), or put it at {self.target}, where "
            "it is found without a download."
        )


def default_cache_dir() -> Path:
    """``$JAXATTR_CACHE`` if set, else ``$XDG_CACHE_HOME/jaxattr`` or
    ``~/.cache/jaxattr``."""
    if os.environ.get("JAXATTR_CACHE"):
        return Path(os.environ["JAXATTR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return Path(base) / "jaxattr"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _expected_hash(url: str, name: str, sha256: str | None) -> str | None:
    """The digest (or prefix) to check: ``sha256``, else the pinned one of ``name``,
    else the hex in a ``-<hex>.<ext>`` file name, else ``None`` (not checked)."""
    if sha256 is not None:
        sha256 = sha256.lower()
        if not re.fullmatch(r"[0-9a-f]{8,64}", sha256):
            raise ValueError(
                "fetch: sha256 must be 8 to 64 hex digits (a prefix is allowed), got "
                f"{sha256!r}"
            )
        return sha256
    if name in KNOWN_SHA256:
        return KNOWN_SHA256[name]
    m = _HASH_IN_NAME.search(urllib.parse.urlparse(url).path)
    return m.group(1) if m else None


def _check(path: Path, expected: str | None, url: str, name: str, note: str) -> None:
    if expected is None:
        return
    actual = sha256_file(path)
    if not actual.startswith(expected):
        raise ValueError(
            f"fetch({url!r}): SHA-256 mismatch for {name} ({path}): expected "
            f"{expected}{'...' if len(expected) < 64 else ''}, got {actual}{note}"
        )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _show(stream: TextIO, name: str, done: int, total: int) -> None:
    if total:
        line = f"{100 * done // total:3d}% of {_mb(total)}"
    else:
        line = _mb(done)
    stream.write(f"\rdownloading {name}: {line}")
    stream.flush()


def fetch(
    url: str,
    *,
    sha256: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Download ``url`` (``http(s)://`` or ``file://``) into ``cache_dir`` and return
    its path.

    A file already in the cache is reused (and checked). The expected digest is
    ``sha256`` (hex; a prefix of at least 8 digits is enough), else the one pinned in
    ``KNOWN_SHA256`` for the file name, else the hex of a ``-<hex>.<ext>`` file name
    (PyTorch hub's convention); a mismatch raises ``ValueError`` naming the file, the
    expected and the received digest. The download is written to a temporary file in
    ``cache_dir`` and renamed only once complete and checked, so a failure leaves no
    file behind.

    Args:
      url: where the file is.
      sha256: expected hex digest or prefix; ``None`` for the pinned one.
      cache_dir: the cache folder; ``None`` for :func:`default_cache_dir`.
      progress: write a progress line to stderr; ``None`` does when stderr is a
        terminal.
      timeout: seconds a connection or a read may wait (``urlopen``'s timeout).

    Raises:
      DownloadError: (a ``urllib.error.URLError``) when the download fails or times
        out; it names the URL and the ``weights=PATH`` way round.
      ValueError: for a bad ``url``, ``sha256`` or ``timeout`` or a digest mismatch.
    """
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https", "file"):
        raise ValueError(
            f"fetch: url must start with http://, https:// or file://, got {url!r}"
        )
    name = os.path.basename(urllib.parse.unquote(parsed.path))
    if not name:
        raise ValueError(f"fetch: url {url!r} has no file name")
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not timeout > 0
    ):
        raise ValueError(f"fetch: timeout must be seconds > 0, got {timeout!r}")
    expected = _expected_hash(url, name, sha256)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / name
    if target.exists():
        _check(
            target, expected, url, name, "; delete the cached file to download again"
        )
        return target
    stream = sys.stderr
    if progress is None:
        progress = bool(getattr(stream, "isatty", lambda: False)())
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=cache)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    total = int(response.headers.get("Content-Length") or 0)
                    done = 0
                    while block := response.read(1 << 20):
                        out.write(block)
                        done += len(block)
                        if progress:
                            _show(stream, name, done, total)
            except (urllib.error.URLError, OSError) as err:  # TimeoutError included
                reason = getattr(err, "reason", None) or err
                raise DownloadError(url, reason, target) from err
            finally:
                if progress:
                    stream.write("\n")
                    stream.flush()
            if total and done != total:
                raise DownloadError(
                    url, f"got {done} of {total} bytes: the download was cut", target
                )
        _check(tmp, expected, url, name, "; the download was deleted")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target

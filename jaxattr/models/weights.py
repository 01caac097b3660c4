"""Fetch weight files by URL into a local cache, with a SHA-256 check (standard library
only)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

__all__ = ["default_cache_dir", "fetch", "sha256_file"]

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


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


def _expected_hash(url: str, sha256: str | None) -> str | None:
    if sha256 is not None:
        sha256 = sha256.lower()
        if not re.fullmatch(r"[0-9a-f]{8,64}", sha256):
            raise ValueError(
                "fetch: sha256 must be 8 to 64 hex digits (a prefix is allowed), got "
                f"{sha256!r}"
            )
        return sha256
    m = _HASH_IN_NAME.search(urllib.parse.urlparse(url).path)
    return m.group(1) if m else None


def _check(path: Path, expected: str | None, url: str) -> None:
    if expected is None:
        return
    actual = sha256_file(path)
    if not actual.startswith(expected):
        raise ValueError(
            f"fetch({url!r}): SHA-256 mismatch for {path}: expected "
            f"{expected}{'...' if len(expected) < 64 else ''}, got {actual}"
        )


def fetch(
    url: str,
    *,
    sha256: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> Path:
    """Download ``url`` (``http(s)://`` or ``file://``) into ``cache_dir`` and return
    its path.

    A file already in the cache is reused. ``sha256`` is the expected hex digest (a
    prefix of at least 8 digits is enough); when it is ``None`` and the file name ends
    in ``-<hex>.<ext>`` (PyTorch hub's convention) that hex is used as the prefix. A
    mismatch raises ``ValueError`` and leaves no file in the cache.
    """
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https", "file"):
        raise ValueError(
            f"fetch: url must start with http://, https:// or file://, got {url!r}"
        )
    name = os.path.basename(urllib.parse.unquote(parsed.path))
    if not name:
        raise ValueError(f"fetch: url {url!r} has no file name")
    expected = _expected_hash(url, sha256)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / name
    if target.exists():
        _check(target, expected, url)
        return target
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=cache)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while block := response.read(1 << 20):
                out.write(block)
                done += len(block)
                if progress and total:
                    print(
                        f"\rdownloading {name}: {100 * done // total:3d}%",
                        end="",
                        flush=True,
                    )
            if progress and total:
                print()
        _check(tmp, expected, url)
        shutil.move(str(tmp), target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target

"""`jaxattr.models.weights.fetch`: pinned digests, timeout, progress and atomic writes,
with local `file://` URLs and a fake `urlopen` (no network)."""

from __future__ import annotations

import hashlib
import io
import os
import urllib.error
import urllib.parse
import urllib.request

import pytest

from jaxattr import models
from jaxattr.models import weights
from tests.models.conftest import asset


class FakeResponse(io.BytesIO):
    """What `urlopen` returns: `read`, `headers`, a context manager; `fail_after`
    bytes raise `error` on the next read."""

    def __init__(self, data: bytes, *, length=True, fail_after=None, error=None):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))} if length else {}
        self.fail_after, self.error = fail_after, error

    def read(self, n=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise self.error
        if self.fail_after is not None:
            n = min(n, self.fail_after - self.tell())
        return super().read(n)


def fake_urlopen(monkeypatch, response, seen=None):
    def urlopen(url, *args, **kwargs):
        if seen is not None:
            seen.append((url, args, kwargs))
        return response

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


def test_every_registry_file_has_a_pinned_digest_matching_its_name():
    urls = [s.default_weights for s in models.MODELS.values()]
    names = {
        os.path.basename(urllib.parse.urlparse(u).path)
        for u in urls
        if isinstance(u, str)
    }
    names.add("efficientnet-lite0-57934424.pth")  # the package's file
    assert names == set(weights.KNOWN_SHA256)
    for name, digest in weights.KNOWN_SHA256.items():
        prefix = weights._HASH_IN_NAME.search(name).group(1)
        assert len(digest) in (8, 64) and digest.startswith(prefix), name


def test_pinned_digests_of_the_files_at_hand():
    lite0 = models.MODELS["efficientnet_lite0"].default_weights()
    assert weights.sha256_file(lite0) == weights.KNOWN_SHA256[os.path.basename(lite0)]
    name = "resnet20-12fca82f.th"
    path = asset("cifar10-resnet-akamaster", name)
    assert weights.sha256_file(path) == weights.KNOWN_SHA256[name]


def test_mismatch_names_file_and_both_digests_and_leaves_nothing(tmp_path):
    src = tmp_path / "src" / "resnet20-12fca82f.th"  # a pinned name, wrong bytes
    src.parent.mkdir()
    src.write_bytes(b"not the checkpoint")
    got = hashlib.sha256(b"not the checkpoint").hexdigest()
    cache = tmp_path / "cache"
    with pytest.raises(ValueError) as info:
        weights.fetch(src.as_uri(), cache_dir=cache)
    msg = str(info.value)
    assert "resnet20-12fca82f.th" in msg and "SHA-256 mismatch" in msg
    assert f"expected {weights.KNOWN_SHA256[src.name]}, got {got}" in msg
    assert list(cache.iterdir()) == []
    # an explicit sha256 wins over the pinned one
    assert weights.fetch(src.as_uri(), sha256=got, cache_dir=cache).read_bytes() == (
        b"not the checkpoint"
    )


def test_timeout_is_passed_and_a_timeout_names_the_way_round(monkeypatch, tmp_path):
    seen = []
    fake_urlopen(monkeypatch, FakeResponse(b"abc"), seen)
    url = "https://example.org/w.npz"
    path = weights.fetch(url, cache_dir=tmp_path, timeout=7.5)
    assert path.read_bytes() == b"abc" and seen[0][2]["timeout"] == 7.5
    fake_urlopen(monkeypatch, FakeResponse(b"abc"), seen)
    weights.fetch("https://example.org/v.npz", cache_dir=tmp_path)
    assert seen[1][2]["timeout"] == weights.DEFAULT_TIMEOUT
    with pytest.raises(ValueError, match="timeout must be seconds > 0, got 0"):
        weights.fetch(url, cache_dir=tmp_path, timeout=0)

    def timed_out(*args, **kwargs):
        raise TimeoutError("timed out")

    monkeypatch.setattr(urllib.request, "urlopen", timed_out)
    cache = tmp_path / "c2"
    with pytest.raises(weights.DownloadError) as info:
        weights.fetch(url, cache_dir=cache, timeout=1)
    assert isinstance(info.value, urllib.error.URLError)  # what callers catch
    msg = str(info.value)
    assert url in msg and "timed out" in msg and "weights=PATH" in msg
    assert str(cache / "w.npz") in msg
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize(
    "error", [TimeoutError("read timed out"), ConnectionResetError("reset")]
)
def test_a_failed_download_leaves_no_file(monkeypatch, tmp_path, error):
    data = b"x" * 3_000_000  # several blocks of 1 MiB
    fake_urlopen(monkeypatch, FakeResponse(data, fail_after=1 << 20, error=error))
    with pytest.raises(weights.DownloadError, match=str(error)):
        weights.fetch("https://example.org/big.pth", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_short_download_is_an_error(monkeypatch, tmp_path):
    response = FakeResponse(b"abc")
    response.headers = {"Content-Length": "10"}
    fake_urlopen(monkeypatch, response)
    with pytest.raises(weights.DownloadError, match="got 3 of 10 bytes"):
        weights.fetch("https://example.org/short.pth", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_progress_goes_to_stderr_only_when_asked(monkeypatch, tmp_path, capsys):
    data = b"y" * 2_500_000
    fake_urlopen(monkeypatch, FakeResponse(data))
    weights.fetch("https://example.org/a.pth", cache_dir=tmp_path, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "downloading a.pth:" in err and "100% of 2.5 MB" in err
    assert err.endswith("\n")
    fake_urlopen(monkeypatch, FakeResponse(data, length=False))
    weights.fetch("https://example.org/b.pth", cache_dir=tmp_path, progress=True)
    assert "downloading b.pth: 2.5 MB" in capsys.readouterr().err
    # the default: only on a terminal (pytest's captured stderr is not one)
    fake_urlopen(monkeypatch, FakeResponse(data))
    weights.fetch("https://example.org/c.pth", cache_dir=tmp_path)
    assert capsys.readouterr() == ("", "")


def test_cached_file_is_reused_without_a_download(monkeypatch, tmp_path):
    (tmp_path / "d.pth").write_bytes(b"cached")

    def offline(*args, **kwargs):
        raise AssertionError("no download expected")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    digest = hashlib.sha256(b"cached").hexdigest()
    path = weights.fetch("https://example.org/d.pth", sha256=digest, cache_dir=tmp_path)
    assert path == tmp_path / "d.pth"
    with pytest.raises(ValueError, match="delete the cached file"):
        weights.fetch("https://example.org/d.pth", sha256="0" * 64, cache_dir=tmp_path)
    assert path.read_bytes() == b"cached"  # a cached file is never deleted

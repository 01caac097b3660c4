"""The torch-free checkpoint reader: both torch.save formats, .npz, refusals,
truncation."""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from jaxattr.models import checkpoint
from jaxattr.models.checkpoint import CheckpointError, load_state_dict, read_torch

FORMATS = [pytest.param(True, id="zip"), pytest.param(False, id="legacy")]


def _legacy_bytes(payload: bytes) -> bytes:
    """Wrap a pickled payload in the legacy torch.save header (magic, protocol, sys
    info)."""
    out = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, out, protocol=2)
    pickle.dump(1001, out, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": True}, out, protocol=2)
    out.write(payload)
    pickle.dump([], out, protocol=2)
    return out.getvalue()


def _zip_bytes(payload: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
    return out.getvalue()


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("wrap", ["plain", "legacy", "zip"])
def test_refuses_os_system(tmp_path, wrap):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"w": _Evil(str(marker))}, protocol=2)
    data = {
        "plain": payload,
        "legacy": _legacy_bytes(payload),
        "zip": _zip_bytes(payload),
    }[wrap]
    path = tmp_path / "evil.pth"
    path.write_bytes(data)
    with pytest.raises(
        CheckpointError, match=r"refused to load global (posix|os|nt)\.system"
    ):
        read_torch(path)
    assert not marker.exists()
    if wrap == "plain":
        return
    with pytest.raises(CheckpointError, match="system"):
        load_state_dict(path)


@pytest.mark.parametrize(
    "module,name",
    [("builtins", "eval"), ("torch.nn.modules.linear", "Linear"), ("torch", "load")],
)
def test_refuses_other_globals(tmp_path, module, name):
    # GLOBAL opcode by hand, so the refused object need not exist here.
    payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"."
    path = tmp_path / "x.pth"
    path.write_bytes(_legacy_bytes(payload))
    with pytest.raises(
        CheckpointError, match=rf"refused to load global {module}\.{name}"
    ):
        read_torch(path)
    with pytest.raises(CheckpointError, match=rf"{module}\.{name}"):
        checkpoint.RestrictedUnpickler(io.BytesIO(payload)).load()


def test_unknown_format_and_missing_file(tmp_path):
    path = tmp_path / "x.pth"
    path.write_bytes(b"hello world")
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        read_torch(path)
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        load_state_dict(tmp_path / "does-not-exist.pth")


def test_npz_roundtrip_and_refuses_object_arrays(tmp_path):
    sd = {
        "a.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.ones(4, np.int64),
    }
    np.savez(tmp_path / "w.npz", **sd)
    got = load_state_dict(tmp_path / "w.npz")
    assert set(got) == set(sd)
    for k, value in sd.items():
        np.testing.assert_array_equal(got[k], value)
        assert got[k].dtype == value.dtype
    np.savez(tmp_path / "obj.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="obj.npz"):
        load_state_dict(tmp_path / "obj.npz")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(CheckpointError, match="bad.npz"):
        load_state_dict(tmp_path / "bad.npz")


# --------------------------------------------------------------------------- with torch


def _torch_state_dict(torch):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(10, generator=g)
    return collections.OrderedDict(
        conv=torch.randn(4, 3, 3, 3, generator=g),
        long=torch.arange(5),
        param=torch.nn.Parameter(torch.randn(2, 2, generator=g)),
        half=torch.randn(3, generator=g).half(),
        bf16=torch.randn(3, generator=g).bfloat16(),
        double=torch.randn(2, generator=g).double(),
        boolean=torch.tensor([True, False, True]),
        int8=torch.tensor([-3, 4], dtype=torch.int8),
        uint8=torch.tensor([200, 3], dtype=torch.uint8),
        int32=torch.tensor([7, -9], dtype=torch.int32),
        transposed=torch.randn(3, 5, generator=g).t(),
        view=base[2:7],
        view_strided=base[1::3],
        shares_base=base,
        scalar=torch.tensor(3.5),
        empty=torch.zeros(0, 3),
    )


def _as_numpy(torch, t):
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.float().numpy()
    return t.numpy()


@pytest.mark.parametrize("zip_format", FORMATS)
def test_reads_torch_save(tmp_path, zip_format):
    torch = pytest.importorskip("torch")
    sd = _torch_state_dict(torch)
    path = tmp_path / "w.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=zip_format)
    got = read_torch(path)
    assert isinstance(got, collections.OrderedDict)
    assert list(got) == list(sd)
    for k, t in sd.items():
        a = got[k]
        assert isinstance(a, np.ndarray), k
        assert a.shape == tuple(t.shape), k
        expected = _as_numpy(torch, t)
        np.testing.assert_array_equal(a.astype(expected.dtype), expected, err_msg=k)
    assert got["bf16"].dtype.name == "bfloat16"
    assert got["half"].dtype == np.float16
    assert got["long"].dtype == np.int64
    assert got["boolean"].dtype == np.bool_
    assert got["transposed"].flags.c_contiguous


@pytest.mark.parametrize("zip_format", FORMATS)
def test_unwraps_checkpoint_dict_and_strips_module_prefix(tmp_path, zip_format):
    torch = pytest.importorskip("torch")
    sd = {"module.fc.weight": torch.ones(2, 3), "module.fc.bias": torch.zeros(2)}
    path = tmp_path / "ckpt.th"
    torch.save(
        {"best_prec1": 91.5, "epoch": 3, "state_dict": sd},
        path,
        _use_new_zipfile_serialization=zip_format,
    )
    got = load_state_dict(path)
    assert sorted(got) == ["fc.bias", "fc.weight"]
    np.testing.assert_array_equal(got["fc.weight"], np.ones((2, 3), np.float32))
    kept = load_state_dict(path, strip_prefix=None)
    assert sorted(kept) == ["module.fc.bias", "module.fc.weight"]


@pytest.mark.parametrize("zip_format", FORMATS)
def test_truncated_file_is_a_clear_error(tmp_path, zip_format):
    torch = pytest.importorskip("torch")
    path = tmp_path / "w.pth"
    torch.save(
        _torch_state_dict(torch), path, _use_new_zipfile_serialization=zip_format
    )
    data = path.read_bytes()
    cuts = sorted(
        {1, 7, 40, len(data) // 3, len(data) // 2, len(data) - 30, len(data) - 1}
    )
    for cut in cuts:
        bad = tmp_path / f"cut{cut}.pth"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=f"cut{cut}.pth"):
            read_torch(bad)


def test_whole_module_pickle_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 3), path)
    with pytest.raises(
        CheckpointError, match=r"refused to load global torch\.nn\.modules"
    ):
        read_torch(path)


def test_big_endian_legacy_storage_is_swapped(tmp_path):
    # Legacy format written by hand: a [2, 2] float32 tensor whose storage is big-
    # endian.
    values = np.array([1.5, -2.0, 3.25, 4.0], dtype=np.float32)
    payload = (
        b"\x80\x02ccollections\nOrderedDict\n)R"  # OrderedDict()
        b"X\x01\x00\x00\x00w"  # key 'w'
        b"ctorch._utils\n_rebuild_tensor\n("  # _rebuild_tensor(
        b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu"
        b"K\x04Ntq\x00Q"  # persistent id ('storage', FloatStorage, '0', 'cpu', 4, None)
        b"K\x00K\x02K\x02\x86K\x02K\x01\x86tR"  # offset 0, size (2, 2), stride (2, 1))
        b"s."  # od['w'] = tensor
    )
    out = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, out, protocol=2)
    pickle.dump(1001, out, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": False}, out, protocol=2)
    out.write(payload)
    pickle.dump(["0"], out, protocol=2)
    out.write(struct.pack(">q", 4) + values.astype(">f4").tobytes())
    path = tmp_path / "be.pth"
    path.write_bytes(out.getvalue())
    got = read_torch(path)
    np.testing.assert_array_equal(got["w"], values.reshape(2, 2))
    assert got["w"].dtype == np.float32 and got["w"].dtype.isnative

"""Read PyTorch checkpoints and ``.npz`` files into numpy arrays, without importing
torch.

Both of ``torch.save``'s formats are read:

* the zip format (the default since PyTorch 1.6): a zip archive holding
  ``<name>/data.pkl`` and one raw little-endian blob per storage at
  ``<name>/data/<key>``;
* the legacy format (``_use_new_zipfile_serialization=False``): five pickles in a row
  (magic number, protocol version, system info, the object, the list of storage keys)
  followed by every storage as an int64 element count and its raw bytes.

The pickle is read by :class:`RestrictedUnpickler`, whose ``find_class`` only resolves
the handful of globals a state dict needs (``collections.OrderedDict``, the
tensor/parameter rebuild functions, which are replaced by functions of this module, and
the typed storage classes, which only name a dtype). Any other global is refused with
:class:`CheckpointError`, so no code from a weight file ever runs.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from typing import Any, BinaryIO, NamedTuple

import numpy as np

__all__ = [
    "CheckpointError",
    "RestrictedUnpickler",
    "load_npz",
    "load_state_dict",
    "read_torch",
]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, truncated, of an unknown format or refers to a
    refused global."""


def _bfloat16() -> np.dtype:
    import ml_dtypes  # a dependency of jax

    return np.dtype(ml_dtypes.bfloat16)


# torch's typed storage classes, by name, to numpy dtype names.
_STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}


class _StorageType(NamedTuple):
    """Stand-in for a ``torch.<X>Storage`` class: it only carries the element dtype."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        kind = _STORAGE_DTYPES[self.name]
        return _bfloat16() if kind == "bfloat16" else np.dtype(kind)


class _Storage:
    """A flat storage of ``numel`` elements whose bytes are filled in after
    unpickling."""

    __slots__ = ("array", "dtype", "key", "numel")

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.array: np.ndarray | None = None


class _TensorRef:
    """A tensor to build once its storage has been read: a strided view of the
    storage."""

    __slots__ = ("offset", "size", "storage", "stride")

    def __init__(self, storage: Any, offset: int, size: tuple, stride: tuple):
        if not isinstance(storage, _Storage):
            raise CheckpointError(
                "tensor rebuild: expected a storage as first argument, got "
                f"{type(storage).__name__}"
            )
        self.storage = storage
        self.offset = int(offset)
        self.size = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)

    def materialise(self) -> np.ndarray:
        flat = self.storage.array
        if flat is None:
            raise CheckpointError(
                f"storage {self.storage.key!r} was never read from the file"
            )
        if not self.size:
            needed = self.offset + 1
        else:
            needed = (
                self.offset
                + 1
                + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
            )
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, flat.dtype)
        if needed > flat.size or self.offset < 0 or any(s < 0 for s in self.stride):
            raise CheckpointError(
                f"tensor of size {self.size}, stride {self.stride}, offset "
                f"{self.offset} does not fit in storage {self.storage.key!r} of "
                f"{flat.size} elements"
            )
        contiguous = tuple(
            int(np.prod(self.size[i + 1 :])) for i in range(len(self.size))
        )
        if (
            self.offset == 0
            and self.stride == contiguous
            and flat.size == int(np.prod(self.size))
        ):
            return flat.reshape(self.size)
        item = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.size,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.array(view, copy=True, order="C")


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(
    storage,
    storage_offset,
    size,
    stride,
    requires_grad=False,
    backward_hooks=None,
    metadata=None,
):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _rebuild_parameter_with_state(
    data, requires_grad=False, backward_hooks=None, state=None
):
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
}
for _name in _STORAGE_DTYPES:
    _ALLOWED_GLOBALS[("torch", _name)] = _StorageType(_name)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a PyTorch state dict needs.

    Allowed: ``collections.OrderedDict``, ``torch._utils._rebuild_tensor[_v2]``,
    ``torch._utils._rebuild_parameter[_with_state]`` (both replaced by this module's own
    functions) and the typed storage classes ``torch.FloatStorage`` etc. (replaced by
    dtype markers). Everything else raises :class:`CheckpointError` naming the global.
    """

    def __init__(self, file: BinaryIO, *, source: str = "<checkpoint>"):
        super().__init__(file)
        self.source = source
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"{self.source}: refused to load global {module}.{name}: a weight file "
                "may only reference tensors, storages and collections.OrderedDict"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise CheckpointError(
                f"{self.source}: unsupported persistent id {str(pid)[:80]!r}; expected "
                "('storage', <StorageType>, key, location, numel[, view])"
            )
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], pid[4]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(
                f"{self.source}: storage {key!r} has type {storage_type!r}, expected a "
                "torch typed storage class such as torch.FloatStorage"
            )
        view = pid[5] if len(pid) > 5 else None
        storage = self.storages.get(key)
        if storage is None:
            storage = _Storage(key, storage_type.dtype, int(numel))
            self.storages[key] = storage
        if view is not None:
            raise CheckpointError(
                f"{self.source}: storage views (legacy view metadata {view!r}) are not "
                "supported"
            )
        return storage


def _materialise(obj: Any) -> Any:
    """Replace every ``_TensorRef`` in nested dicts/lists/tuples by its numpy array."""
    if isinstance(obj, _TensorRef):
        return obj.materialise()
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialise(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialise(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(v) for v in obj)
    if isinstance(obj, (_Storage, _StorageType)):
        raise CheckpointError("a bare storage outside a tensor is not supported")
    return obj


def _unpickle(
    data: BinaryIO, source: str, what: str
) -> tuple[Any, RestrictedUnpickler]:
    unpickler = RestrictedUnpickler(data, source=source)
    try:
        obj = unpickler.load()
    except CheckpointError:
        raise
    except (
        EOFError,
        pickle.UnpicklingError,
        struct.error,
        ValueError,
        TypeError,
        IndexError,
    ) as e:
        raise CheckpointError(
            f"{source}: corrupt or truncated checkpoint ({what}): {type(e).__name__}: "
            f"{e}"
        ) from e
    return obj, unpickler


def _read_array(f: BinaryIO, dtype: np.dtype, numel: int, what: str) -> np.ndarray:
    """Read ``numel`` elements of ``dtype`` from ``f`` into a new native-order array."""
    if numel < 0:
        raise CheckpointError(f"{what}: negative element count {numel}")
    out = np.empty(numel, dtype=dtype)
    view = memoryview(out.view(np.uint8))
    done = 0
    while done < out.nbytes:
        n = f.readinto(view[done:])
        if not n:
            raise CheckpointError(
                f"{what} is truncated: expected {out.nbytes} bytes, got {done}"
            )
        done += n
    if not dtype.isnative:
        out = out.byteswap().view(dtype.newbyteorder("="))
    return out


def _read_zip(path: str, zf: zipfile.ZipFile, raw: BinaryIO | None = None) -> Any:
    names = zf.namelist()
    pkl = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pkl) != 1:
        raise CheckpointError(
            f"{path}: zip archive is not a torch.save checkpoint: expected one "
            f"'<name>/data.pkl', found {len(pkl)}"
        )
    prefix = pkl[0][: -len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
        byteorder = zf.read(prefix + "byteorder").decode("ascii").strip()
    if byteorder not in ("little", "big"):
        raise CheckpointError(
            f"{path}: byteorder must be 'little' or 'big', got {byteorder!r}"
        )
    obj, unpickler = _unpickle(io.BytesIO(zf.read(pkl[0])), path, "data.pkl")
    for key, storage in unpickler.storages.items():
        entry = f"{prefix}data/{key}"
        if entry not in names:
            raise CheckpointError(f"{path}: storage entry {entry!r} is missing")
        dtype = storage.dtype.newbyteorder("<" if byteorder == "little" else ">")
        what = f"{path}: storage {key!r}"
        info = zf.getinfo(entry)
        if info.compress_type == zipfile.ZIP_STORED and raw is not None:
            # torch.save stores entries uncompressed: read the bytes in place (no CRC
            # pass).
            raw.seek(info.header_offset)
            header = raw.read(30)
            if len(header) < 30 or header[:4] != b"PK\x03\x04":
                raise CheckpointError(f"{what}: bad local zip header")
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            raw.seek(info.header_offset + 30 + name_len + extra_len)
            if info.file_size < storage.numel * dtype.itemsize:
                raise CheckpointError(
                    f"{what} is truncated: expected {storage.numel * dtype.itemsize} "
                    f"bytes, got {info.file_size}"
                )
            storage.array = _read_array(raw, dtype, storage.numel, what)
        else:
            with zf.open(entry) as fh:
                storage.array = _read_array(fh, dtype, storage.numel, what)
    return _materialise(obj)


def _read_legacy(path: str, f: BinaryIO) -> Any:
    def header(what: str) -> Any:
        obj, _ = _unpickle(f, path, what)
        return obj

    magic = header("magic number")
    if magic != _LEGACY_MAGIC:
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint (bad magic number {magic!r})"
        )
    protocol = header("protocol version")
    if protocol != _LEGACY_PROTOCOL:
        raise CheckpointError(
            f"{path}: legacy protocol version must be {_LEGACY_PROTOCOL}, got "
            f"{protocol!r}"
        )
    sys_info = header("system info")
    little = (
        bool(sys_info.get("little_endian", True))
        if isinstance(sys_info, dict)
        else True
    )
    obj, unpickler = _unpickle(f, path, "object")
    keys = header("storage keys")
    if not isinstance(keys, list):
        raise CheckpointError(
            f"{path}: storage key list must be a list, got {type(keys).__name__}"
        )
    for key in keys:
        key = str(key)
        storage = unpickler.storages.get(key)
        if storage is None:
            raise CheckpointError(
                f"{path}: storage {key!r} is listed but no tensor uses it"
            )
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(
                f"{path}: truncated before the data of storage {key!r}"
            )
        (numel,) = struct.unpack("<q" if little else ">q", head)
        if numel != storage.numel:
            raise CheckpointError(
                f"{path}: storage {key!r} should hold {storage.numel} elements, header "
                f"says {numel}"
            )
        dtype = storage.dtype.newbyteorder("<" if little else ">")
        storage.array = _read_array(f, dtype, numel, f"{path}: storage {key!r}")
    return _materialise(obj)


def read_torch(path: str | os.PathLike) -> Any:
    """Read a ``torch.save`` file (zip or legacy format) without torch.

    Returns the saved object with every tensor replaced by a C-contiguous ``np.ndarray``
    of the tensor's shape and dtype (bfloat16 as ``ml_dtypes.bfloat16``). Raises
    :class:`CheckpointError` for a corrupt/truncated file or a refused global.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        start = f.read(4)
        f.seek(0)
        if start.startswith(b"PK"):
            try:
                zf = zipfile.ZipFile(f)
            except zipfile.BadZipFile as e:
                raise CheckpointError(
                    f"{path}: corrupt or truncated zip checkpoint: {e}"
                ) from e
            with zf:
                try:
                    return _read_zip(path, zf, f)
                except (zipfile.BadZipFile, EOFError, OSError, struct.error) as e:
                    raise CheckpointError(
                        f"{path}: corrupt or truncated zip checkpoint: "
                        f"{type(e).__name__}: {e}"
                    ) from e
        if not start.startswith(b"\x80"):
            raise CheckpointError(
                f"{path}: unknown checkpoint format (first bytes {start!r}); expected "
                "a torch.save zip archive (b'PK') or a legacy pickle (b'\\x80')"
            )
        return _read_legacy(path, f)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``.npz`` archive (no pickled objects allowed) into ``{name: array}``."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise CheckpointError(f"{path}: corrupt or truncated .npz file: {e}") from e


def _find_state_dict(obj: Any, path: str) -> Mapping[str, Any]:
    if (
        isinstance(obj, Mapping)
        and obj
        and all(isinstance(v, np.ndarray) for v in obj.values())
    ):
        return obj
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model", "net", "params"):
            if isinstance(obj.get(key), Mapping):
                return _find_state_dict(obj[key], path)
    found = type(obj).__name__
    if isinstance(obj, Mapping):
        found += f" with keys {list(obj)[:8]}"
    raise CheckpointError(
        f"{path}: expected a state dict (a mapping of names to tensors), possibly "
        f"under 'state_dict' or 'model', got {found}"
    )


def load_state_dict(
    path: str | os.PathLike, *, strip_prefix: str | None = "module."
) -> dict[str, np.ndarray]:
    """Load a state dict ``{name: np.ndarray}`` from a ``.npz`` or a ``torch.save``
    file.

    A checkpoint that wraps the state dict (e.g. ``{'state_dict': ..., 'best_prec1':
    ...}``) is unwrapped. When every key starts with ``strip_prefix`` (``'module.'``
    from ``nn.DataParallel`` by default) it is removed. Non-tensor entries are dropped.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint path does not exist: {path!r}")
    with open(path, "rb") as f:
        start = f.read(4)
    is_npz = path.endswith(".npz")
    if is_npz:
        state = load_npz(path)
    else:
        if start.startswith(b"PK"):
            try:
                with zipfile.ZipFile(path) as zf:
                    is_npz = bool(zf.namelist()) and all(
                        n.endswith(".npy") for n in zf.namelist()
                    )
            except zipfile.BadZipFile:
                is_npz = False
        state = load_npz(path) if is_npz else _find_state_dict(read_torch(path), path)
    state = {str(k): v for k, v in state.items() if isinstance(v, np.ndarray)}
    if strip_prefix and state and all(k.startswith(strip_prefix) for k in state):
        state = {k[len(strip_prefix) :]: v for k, v in state.items()}
    return state

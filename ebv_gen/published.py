"""Import the published EBV matrices without running the code a pickle may carry.

The EBV authors publish their class vectors as ``eq_{d}_{N}.pkl`` (``d`` the dimension, ``N``
the number of classes): the ``(N, d)`` float32 tensor of their generator, written with
``pickle.dump`` while it lived on a GPU. Opening such a file with ``pickle`` or ``torch.load``
needs CUDA (the storage is tagged ``cuda:0``) and runs whatever callables the pickle names.
:func:`read_tensor_file` reads it with a restricted unpickler that resolves only the names a
tensor needs (``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter``,
``torch.storage._load_from_bytes``, the floating-point storage classes and an empty
``collections.OrderedDict`` of backward hooks), each mapped to a function of this module that
builds a plain numpy array; any other name is refused before anything is called. The storage
bytes are read into the CPU memory whatever their location tag. The three layouts torch writes
are understood:

* ``pickle.dump(tensor)`` (the published files): a pickle whose storage is a nested legacy
  ``torch.save`` blob (``torch.storage._load_from_bytes``);
* ``torch.save(tensor)`` (a zip archive: ``data.pkl`` with persistent storage ids, and the
  storage bytes in ``data/<key>``);
* ``torch.save(tensor, _use_new_zipfile_serialization=False)`` (the legacy stream: magic
  number, protocol, system info, the pickle, the storage keys, then each storage's size and
  bytes).

:func:`import_published` checks the matrix (2-D, finite, unit rows) and writes ``FILE.npy`` and
its ``FILE.json`` report with :func:`ebv_gen.io.save_vectors` (atomic writes), so that
``ebv-gen verify``, :func:`ebv_gen.load` and :class:`grassmann.EBVHead` take it like any
generated file. Command line: ``ebv-gen import eq_512_1000.pkl -o ebv.npy``.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import re
import reprlib
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grassmann.npyio import UnusableFileError, sha256_file, validate_vectors

__all__ = [
    "PublishedMatrix",
    "RefusedPickleError",
    "import_published",
    "read_tensor_file",
    "summary",
]

#: The first object of a legacy ``torch.save`` stream.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

#: Floating-point storage classes (``torch.<name>``, or ``torch.cuda.<name>`` in old files)
#: and the element type of their bytes.
_FLOAT_STORAGES = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "BFloat16Storage": "bf16",
}
_STORAGE_MODULES = ("torch", "torch.cuda")

#: Device tags a storage may carry (``cpu``, ``cuda:0``, ``mps`` ...).
_LOCATION = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,15}(:[0-9]{1,4})?")

_REPR = reprlib.Repr()  # (keyword arguments only from Python 3.12)
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxtuple = _REPR.maxlist = 6
_REPR.maxlevel = 2
#: Every value that comes from the file is shown through this: bounded, on one line.
_short = _REPR.repr


def _name(text: str) -> str:
    """A global's name from the file as it reads (``os.system``), or bounded and quoted when
    it is long or holds unprintable characters."""
    return text if len(text) <= 80 and text.isprintable() else _short(text)


class RefusedPickleError(UnusableFileError):
    """The pickle names something other than a tensor and its storage (it is refused before
    anything it names is called)."""


# ----------------------------------------------------------------------------------------------
# what the restricted unpickler builds instead of torch objects
# ----------------------------------------------------------------------------------------------


class _StateRefused(Exception):
    """Raised inside the unpickler by :class:`_Built`; :func:`_load` names the file."""


class _Built:
    """What the unpickler builds: a pickle's BUILD opcode (``__reduce__`` with a state) would
    otherwise overwrite the attributes of the object it follows, frozen or not."""

    def __setstate__(self, state: Any) -> None:
        raise _StateRefused(
            f"the file sets the state of a {type(self).__name__.strip('_')} record, which "
            f"torch never writes: refused (nothing in the file was run)"
        )


@dataclass(frozen=True)
class _StorageType(_Built):
    name: str
    code: str  # numpy type code ("f4" ...) or "bf16"

    @property
    def itemsize(self) -> int:
        return 2 if self.code == "bf16" else int(self.code[1:])


@dataclass
class _Storage(_Built):
    key: str
    kind: _StorageType
    location: str
    numel: int
    data: np.ndarray | None = field(default=None, repr=False)

    def fill(self, raw: bytes, little_endian: bool, where: str) -> None:
        if len(raw) != self.numel * self.kind.itemsize:
            raise UnusableFileError(
                f"{where}: storage {_short(self.key)} holds {len(raw)} bytes, expected "
                f"{self.numel} x {self.kind.itemsize} (truncated or corrupt file)"
            )
        order = "<" if little_endian else ">"
        if self.kind.code == "bf16":  # numpy has no bfloat16: the top half of a float32
            wide = np.frombuffer(raw, dtype=order + "u2").astype(np.uint32) << 16
            self.data = wide.view(np.float32)
        else:
            self.data = np.frombuffer(raw, dtype=order + self.kind.code)


@dataclass
class _TensorRef(_Built):
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def to_numpy(self, where: str) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise UnusableFileError(
                f"{where}: the bytes of storage {_short(self.storage.key)} are missing"
            )
        if self.offset < 0 or min(self.size, default=0) < 0 or min(self.stride, default=0) < 0:
            raise UnusableFileError(f"{where}: negative tensor offset, size or stride")
        numel = math.prod(self.size)
        if numel > data.size:
            # only overlapping views (stride 0: expand) read more elements than they store;
            # refused, so that the memory used is bounded by the bytes in the file
            raise UnusableFileError(
                f"{where}: the tensor of size {_short(self.size)} reads {numel} elements from a "
                f"storage of {data.size} (an expanded or overlapping view): only tensors "
                f"that store each of their elements are accepted"
            )
        if numel == 0:
            try:
                return np.zeros(self.size, dtype=data.dtype)
            except ValueError:  # numpy refuses dimensions whose product overflows its sizes
                raise UnusableFileError(
                    f"{where}: the empty tensor has an impossible size {_short(self.size)}"
                ) from None
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if last >= data.size:
            raise UnusableFileError(
                f"{where}: the tensor (offset {self.offset}, size {_short(self.size)}, stride "
                f"{_short(self.stride)}) reaches beyond its storage of {data.size} elements"
            )
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.size,
            strides=[s * data.itemsize for s in self.stride],
            writeable=False,
        )
        return np.array(view, order="C")


def _ints(value: Any, what: str, where: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(type(v) is int for v in value):
        raise UnusableFileError(
            f"{where}: tensor {what} must be a tuple of ints, got {_short(value)}"
        )
    return value


class _Unpickler(pickle.Unpickler):
    """Resolves only the names of a tensor, to the builders of this module."""

    def __init__(self, data: bytes | io.BytesIO, where: str, storages: dict | None) -> None:
        super().__init__(io.BytesIO(data) if isinstance(data, bytes) else data)
        self.where = where
        self.storages = storages  # None: no persistent ids allowed (a plain pickle)

    def find_class(self, module: str, name: str) -> Any:
        if module in _STORAGE_MODULES and name in _FLOAT_STORAGES:
            return _StorageType(name, _FLOAT_STORAGES[name])
        builder = {
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
            ("torch.storage", "_load_from_bytes"): self._load_from_bytes,
            ("collections", "OrderedDict"): collections.OrderedDict,
        }.get((module, name))
        if builder is not None:
            return builder
        if module in _STORAGE_MODULES and name.endswith("Storage"):
            raise RefusedPickleError(
                f"{self.where}: holds a {_name(name)}: class vectors must be floating point "
                f"({', '.join(_FLOAT_STORAGES)})"
            )
        raise RefusedPickleError(
            f"{self.where}: refused to load the global {_name(module + '.' + name)}: only a "
            f"torch tensor and its storage are accepted (nothing in the file was run)"
        )

    def persistent_load(self, pid: Any) -> _Storage:
        if self.storages is None:
            raise RefusedPickleError(f"{self.where}: unexpected persistent id {_short(pid)}")
        # zip layout: ('storage', type, key, location, numel); legacy layout: the same and a
        # view description, None unless the storage is a view (pre-1.0 torch, not supported)
        if isinstance(pid, tuple) and len(pid) == 6 and pid[5] is None:
            pid = pid[:5]
        if (
            not isinstance(pid, tuple)
            or len(pid) != 5
            or pid[0] != "storage"
            or not isinstance(pid[1], _StorageType)
            or not isinstance(pid[2], str)
            or not isinstance(pid[3], str)
            or type(pid[4]) is not int
            or pid[4] < 0
        ):
            raise UnusableFileError(f"{self.where}: not a torch storage id: {_short(pid)}")
        _, kind, key, location, numel = pid
        if _LOCATION.fullmatch(location) is None:
            raise UnusableFileError(f"{self.where}: not a device tag: {_short(location)}")
        storage = self.storages.setdefault(key, _Storage(key, kind, location, numel))
        if (storage.kind, storage.numel) != (kind, numel):
            raise UnusableFileError(
                f"{self.where}: storage {_short(key)} is described twice, differently"
            )
        return storage

    # -- the builders -------------------------------------------------------------------------

    def _rebuild_tensor(
        self,
        storage: Any,
        offset: Any,
        size: Any,
        stride: Any,
        requires_grad: Any = False,
        backward_hooks: Any = None,
        metadata: Any = None,
    ) -> _TensorRef:
        if not isinstance(storage, _Storage) or type(offset) is not int:
            raise UnusableFileError(f"{self.where}: malformed tensor record")
        size, stride = _ints(size, "size", self.where), _ints(stride, "stride", self.where)
        if len(size) != len(stride):
            raise UnusableFileError(f"{self.where}: tensor size {size} and stride {stride} differ")
        if backward_hooks or metadata:
            raise RefusedPickleError(
                f"{self.where}: the tensor carries backward hooks or metadata; only plain "
                f"tensors are accepted"
            )
        return _TensorRef(storage, offset, size, stride)

    def _rebuild_parameter(
        self, data: Any, requires_grad: Any = False, backward_hooks: Any = None
    ) -> _TensorRef:
        if not isinstance(data, _TensorRef) or backward_hooks:
            raise UnusableFileError(f"{self.where}: malformed parameter record")
        return data

    def _load_from_bytes(self, blob: Any) -> _Storage:
        if self.storages is not None:
            # torch writes this record only in a plain pickle of a tensor, never inside the
            # torch.save stream that it holds; nesting would let a file make the reader keep
            # one copy of its bytes per level
            raise RefusedPickleError(
                f"{self.where}: a storage record inside a storage record or a torch.save "
                f"stream (torch never writes one)"
            )
        if not isinstance(blob, bytes):
            raise UnusableFileError(f"{self.where}: malformed storage record")
        storage = _read_legacy(io.BytesIO(blob), self.where)
        if not isinstance(storage, _Storage):
            raise UnusableFileError(f"{self.where}: a nested storage record holds no storage")
        return storage


# ----------------------------------------------------------------------------------------------
# the three layouts
# ----------------------------------------------------------------------------------------------


def _load(data: bytes | io.BytesIO, where: str, storages: dict | None = None) -> Any:
    try:
        return _Unpickler(data, where, storages).load()
    except UnusableFileError:
        raise
    except _StateRefused as exc:
        raise RefusedPickleError(f"{where}: {exc}") from None
    except Exception as exc:  # truncated or corrupt pickle: many exception types, and a
        # MemoryError for a length field that declares more bytes than the machine has
        raise UnusableFileError(f"{where}: not a readable pickle ({_describe(exc)})") from None


def _describe(exc: BaseException) -> str:
    """``"Type: message"`` of an exception, on one line."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _read_legacy(stream: io.BytesIO, where: str, first: Any = None) -> Any:
    """The legacy ``torch.save`` stream (``first``: its magic number, when already read)."""
    magic = _load(stream, where) if first is None else first
    if magic != _LEGACY_MAGIC or _load(stream, where) != _LEGACY_PROTOCOL:
        raise UnusableFileError(f"{where}: not a torch.save stream (wrong magic number)")
    info = _load(stream, where)
    little = info.get("little_endian", True) if isinstance(info, dict) else True
    storages: dict[str, _Storage] = {}
    result = _load(stream, where, storages)
    keys = _load(stream, where)
    if not isinstance(keys, list) or sorted(keys) != sorted(storages):
        raise UnusableFileError(f"{where}: the storage keys do not match the storages")
    for key in keys:
        storage = storages[key]
        head = stream.read(8)
        if len(head) != 8:
            raise UnusableFileError(f"{where}: truncated storage {_short(key)}")
        numel = int.from_bytes(head, "little" if little else "big", signed=True)
        if numel != storage.numel:
            raise UnusableFileError(
                f"{where}: storage {_short(key)} says {numel} elements, its record {storage.numel}"
            )
        storage.fill(stream.read(numel * storage.kind.itemsize), little, where)
    return result


def _read_zip(path: Path, where: str) -> Any:
    try:
        with zipfile.ZipFile(path) as archive:
            return _read_archive(archive, where)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        # truncated (no central directory), a bad CRC, an encrypted or oddly compressed member
        raise UnusableFileError(
            f"{where}: not a readable torch.save archive ({_describe(exc)})"
        ) from None


def _read_archive(archive: zipfile.ZipFile, where: str) -> Any:
    pkl = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pkl) != 1:
        raise UnusableFileError(f"{where}: a zip archive without one data.pkl (not torch.save)")
    prefix = pkl[0][: -len("data.pkl")]
    names = set(archive.namelist())

    def read(name: str) -> bytes:
        # torch.save stores its members uncompressed, so a member's bytes are bounded by the
        # file's; a compressed one could declare gigabytes in a few kilobytes
        if archive.getinfo(name).compress_type != zipfile.ZIP_STORED:
            raise UnusableFileError(
                f"{where}: member {_short(name)} of the archive is compressed (torch.save stores "
                f"its members uncompressed)"
            )
        return archive.read(name)

    order = prefix + "byteorder"
    little = read(order).strip() != b"big" if order in names else True
    storages: dict[str, _Storage] = {}
    result = _load(read(pkl[0]), where, storages)
    for key, storage in storages.items():
        name = f"{prefix}data/{key}"
        if name not in names:
            raise UnusableFileError(f"{where}: storage {_short(key)} is missing from the archive")
        expected = storage.numel * storage.kind.itemsize
        if archive.getinfo(name).file_size != expected:
            raise UnusableFileError(
                f"{where}: storage {_short(key)} holds {archive.getinfo(name).file_size} bytes, "
                f"expected {expected}"
            )
        storage.fill(read(name), little, where)
    return result


@dataclass(frozen=True)
class PublishedMatrix:
    """A tensor read from a pickle or ``torch.save`` file, as a numpy array.

    Attributes
    ----------
    array
        The tensor's values (C order), in its stored precision.
    layout
        ``"pickle"``, ``"torch.save (zip)"`` or ``"torch.save (legacy)"``.
    dtype
        The storage's element type (``"float32"`` ...).
    location
        The device tag of the storage in the file (``"cuda:0"`` for the published files); the
        values are read into CPU memory whatever it says.
    """

    array: np.ndarray
    layout: str
    dtype: str
    location: str


def read_tensor_file(path: str | os.PathLike) -> PublishedMatrix:
    """Read one floating-point tensor from a pickle or ``torch.save`` file, safely.

    Only the names a tensor needs are resolved (see the module docstring); nothing else in
    the file is ever called. CUDA storages are read into CPU memory without CUDA.

    Raises
    ------
    RefusedPickleError
        The file names any other global (a ``ValueError``; nothing was run).
    grassmann.npyio.UnusableFileError
        Missing, truncated or corrupt, not a single tensor, or a non-floating storage.
    """
    path = Path(path)
    where = repr(str(path))
    if not path.is_file():
        raise UnusableFileError(f"{where}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head == b"PK\x03\x04":
        result, layout = _read_zip(path, where), "torch.save (zip)"
    else:
        stream = io.BytesIO(path.read_bytes())
        first = _load(stream, where)
        if type(first) is int and first == _LEGACY_MAGIC:
            result, layout = _read_legacy(stream, where, first), "torch.save (legacy)"
        else:
            result, layout = first, "pickle"
    if not isinstance(result, _TensorRef):
        raise UnusableFileError(f"{where}: holds a {type(result).__name__}, expected one tensor")
    array = result.to_numpy(where)
    kind = result.storage.kind
    dtype = "bfloat16" if kind.code == "bf16" else str(np.dtype(kind.code))
    return PublishedMatrix(array, layout, dtype, result.storage.location)


# ----------------------------------------------------------------------------------------------
# the import
# ----------------------------------------------------------------------------------------------

_PUBLISHED_NAME = re.compile(r"eq_(\d+)_(\d+)$")

#: Machine epsilon of the half-precision storages: twice the largest change of a unit row's
#: norm that their rounding makes.
_HALF_EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7}


def import_published(
    path: str | os.PathLike, output: str | os.PathLike, *, atol: float = 1e-4
) -> dict[str, Any]:
    """Convert a published EBV file into a checked ``output`` (``.npy``, float32) + ``.json``.

    The matrix must be 2-D ``(N, d)``, finite, with unit rows within ``atol`` (the published
    generator normalises its rows before saving). A half-precision file (float16, bfloat16)
    cannot hold unit rows that closely: its rounding alone moves a norm by up to half its
    machine epsilon (5e-4, 4e-3). Its rows are checked within that epsilon instead, then
    renormalised in float64 before the float32 file is written (``"renormalised": true`` in
    the source record), so that ``ebv-gen verify`` accepts the result. The JSON report holds
    what ``ebv-gen
    generate`` writes (``num``, ``dim``, ``mode``, ``coherence`` in float64 of the float32
    file, ``bound``, ``gap``, ``ratio``, ``method="import"``) and the source (file name,
    sha256, layout, dtype, device tag, and whether the name ``eq_{d}_{N}`` agrees with the
    shape). Both files are written atomically; the output is not checked for existence (the
    command line does that before calling).

    Returns
    -------
    dict
        The report (as written to the sidecar, without ``sha256`` and ``shape``).

    Raises
    ------
    RefusedPickleError, grassmann.npyio.UnusableFileError, grassmann.npyio.InvalidContentError
        All ``ValueError`` subclasses, with a one-line message.
    """
    import grassmann

    from .io import save_vectors
    from .sidecar import vectors_quality

    src = Path(path)
    matrix = read_tensor_file(src)
    where = repr(str(src))
    if matrix.array.ndim != 2 or min(matrix.array.shape) < 1:
        raise UnusableFileError(
            f"{where}: holds a tensor of shape {matrix.array.shape}, expected a non-empty 2-D "
            f"(N, d) matrix of class vectors"
        )
    half_eps = _HALF_EPS.get(matrix.dtype)
    tol = atol if half_eps is None else max(atol, half_eps)
    validate_vectors(torch.from_numpy(matrix.array), name=f"vectors in {where}", atol=tol)
    values = matrix.array
    if half_eps is not None:
        wide = values.astype(np.float64)
        values = wide / np.linalg.norm(wide, axis=1, keepdims=True)
    vectors = torch.from_numpy(values.astype(np.float32))
    num, dim = (int(v) for v in vectors.shape)
    report: dict[str, Any] = {"kind": "vectors", "num": num, "dim": dim, "mode": "lines"}
    if num >= 2:
        bound = grassmann.lower_bound(num, dim, "lines")
        mu = grassmann.coherence(vectors, mode="lines")
        report = vectors_quality(num, dim, "lines", mu, bound.value, bound.name)
    report["method"] = "import"
    source: dict[str, Any] = {
        "file": src.name,
        "sha256": sha256_file(src),
        "layout": matrix.layout,
        "dtype": matrix.dtype,
        "location": matrix.location,
    }
    if half_eps is not None:
        source["renormalised"] = True
    named = _PUBLISHED_NAME.match(src.stem)
    if named is not None:
        source["name_agrees"] = (int(named.group(1)), int(named.group(2))) == (dim, num)
    report["source"] = source
    save_vectors(output, vectors, report)
    return report


def summary(report: dict[str, Any], output: str | os.PathLike) -> str:
    """The one line ``ebv-gen import`` prints."""
    src = report["source"]
    head = (
        f"imported {src['file']} ({src['layout']}, {src['dtype']} on {src['location']}): "
        f"{report['num']} x {report['dim']} unit vectors"
    )
    if "coherence" in report:
        head += (
            f", coherence {report['coherence']:.6f} (float64), bound {report['bound']:.6f}"
            f" ({report['bound_name']}), gap {report['gap']:.2e}"
        )
    if src.get("renormalised"):
        head += f" (rows renormalised from {src['dtype']})"
    if src.get("name_agrees") is False:
        head += f"; note: the name eq_{{d}}_{{N}} does not match d = {report['dim']}"
    return f"{head}  -> {output}"

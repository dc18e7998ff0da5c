"""Safe loading and atomic saving of ``.npy`` files of class vectors and class subspaces.

Loading never unpickles (``allow_pickle=False``): a ``.npy`` file from an untrusted source can
only ever yield a plain numeric array, never run code. Two kinds of failure are kept apart so that
callers (``ebv-gen verify``, :class:`grassmann.heads.EBVHead`) can report them differently:

* :class:`UnusableFileError`: the file cannot be read as what was asked for (missing, truncated,
  corrupt header, pickled or object data, a non-float dtype, the wrong rank);
* :class:`InvalidContentError`: it reads fine but the numbers are not valid (NaN/inf entries, rows
  that are not unit vectors, bases whose columns are not orthonormal).

Both subclass ``ValueError``; a missing file raises :class:`MissingFileError`, which is also a
``FileNotFoundError``, so ``except FileNotFoundError`` works as it does for ``open``. Tolerances
on norms and orthonormality are at least twice the machine epsilon of the stored dtype (a
float16 copy of a valid file stays valid).

Saving writes to a temporary file in the target's directory, flushes and fsyncs it, then renames
it over the target (``os.replace`` is atomic on POSIX and Windows), so a crash leaves either the
old file or the new one, never half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "InvalidContentError",
    "MissingFileError",
    "UnusableFileError",
    "load_array",
    "load_bases",
    "load_vectors",
    "save_npy_atomic",
    "sha256_file",
    "tolerance",
    "validate_bases",
    "validate_vectors",
    "write_bytes_atomic",
    "write_text_atomic",
]

#: Default tolerance on unit row norms and on ``|X^T X - I|`` when validating loaded data.
DEFAULT_ATOL = 1e-4

_FLOAT_KINDS = ("f",)


class UnusableFileError(ValueError):
    """The file cannot be read as the array that was asked for."""


class InvalidContentError(ValueError):
    """The file reads as an array, but its values are not valid class vectors or bases."""


class MissingFileError(UnusableFileError, FileNotFoundError):
    """There is no file at the path: both an :class:`UnusableFileError` (a ``ValueError``) and a
    ``FileNotFoundError``."""


def tolerance(dtype: torch.dtype | np.dtype, atol: float = DEFAULT_ATOL) -> float:
    """The tolerance on ``| ||w|| - 1 |`` and ``|X^T X - I|`` for data stored in ``dtype``:
    ``max(atol, 2 eps)`` with ``eps`` the dtype's machine epsilon (rounding a unit row to
    float16, ``eps = 2^-10``, moves its norm by up to ``eps / 2``; a product of two rounded
    columns by up to ``eps``)."""
    eps = torch.finfo(dtype).eps if isinstance(dtype, torch.dtype) else np.finfo(dtype).eps
    return max(float(atol), 2.0 * float(eps))


def _prefix(name: str | None) -> str:
    return "" if name is None else f"{name}: "


def _as_path(path: str | os.PathLike, name: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def load_array(
    path: str | os.PathLike,
    *,
    ndim: int | tuple[int, ...] | None = None,
    name: str | None = "path",
) -> np.ndarray:
    """Read a ``.npy`` file holding a real floating-point array, without unpickling.

    Parameters
    ----------
    path
        The ``.npy`` file.
    ndim
        Allowed rank(s) of the array; ``None`` accepts any rank.
    name
        The argument name that starts error messages (``"path: no such file: ..."``);
        ``None`` for messages without it (``"no such file: ..."``, as ``ebv-gen verify``
        prints them).

    Returns
    -------
    numpy.ndarray
        The array, in its stored float dtype (float16, float32 or float64).

    Raises
    ------
    MissingFileError
        If there is no file at ``path`` (a ``FileNotFoundError`` too).
    UnusableFileError
        If the file is not a ``.npy`` file, truncated, holds pickled/object data or a
        non-float dtype, or has a rank outside ``ndim``.
    """
    path = _as_path(path, name or "path")
    pre = _prefix(name)
    if not path.exists():
        raise MissingFileError(f"{pre}no such file: {str(path)!r}")
    if path.is_dir():
        raise UnusableFileError(f"{pre}{str(path)!r} is a directory, expected a .npy file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
            fh.seek(0)
            if magic.startswith(b"PK"):
                raise UnusableFileError(
                    f"{pre}{str(path)!r} is an .npz archive, expected a single-array .npy file"
                )
            if magic != b"\x93NUMPY":
                raise UnusableFileError(
                    f"{pre}{str(path)!r} is not a readable .npy file (no .npy header)"
                )
            shape, dtype = _read_header(fh, path, pre)
            _check_kind(dtype, shape, path, pre, ndim)
            data_bytes = math.prod(shape) * dtype.itemsize
            actual = os.fstat(fh.fileno()).st_size - fh.tell()
            if actual != data_bytes:
                raise UnusableFileError(
                    f"{pre}{str(path)!r} is truncated or corrupt: its header promises shape "
                    f"{shape} ({data_bytes} bytes of {dtype}) but {actual} bytes follow"
                )
            fh.seek(0)
            array = np.load(fh, allow_pickle=False)
    except ValueError as exc:
        if isinstance(exc, UnusableFileError):
            raise
        raise UnusableFileError(
            f"{pre}{str(path)!r} is not a readable .npy file (truncated or corrupt: {exc})"
        ) from None
    except (OSError, EOFError) as exc:
        raise UnusableFileError(f"{pre}cannot read {str(path)!r} as a .npy file ({exc})") from None
    if not array.dtype.isnative:  # e.g. big-endian '>f4' written on another machine
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _read_header(fh, path: Path, pre: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a ``.npy`` header, without reading (or allocating) the data."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version in ((2, 0), (3, 0)):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise UnusableFileError(f"{pre}{str(path)!r} has unknown .npy version {version}")
    return tuple(int(n) for n in shape), np.dtype(dtype)


def _check_kind(
    dtype: np.dtype,
    shape: tuple[int, ...],
    path: Path,
    pre: str,
    ndim: int | tuple[int, ...] | None,
) -> None:
    if dtype.hasobject:
        raise UnusableFileError(
            f"{pre}{str(path)!r} holds pickled (object) data, which is never loaded; "
            "expected a plain float array"
        )
    if dtype.kind not in _FLOAT_KINDS:
        raise UnusableFileError(
            f"{pre}{str(path)!r} has dtype {dtype}, expected float16, float32 or float64"
        )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if len(shape) not in allowed:
            want = " or ".join(f"{n}-D" for n in allowed)
            raise UnusableFileError(
                f"{pre}{str(path)!r} holds a {len(shape)}-D array of shape {shape}, expected {want}"
            )


def _check_finite(x: torch.Tensor, name: str) -> None:
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        first = tuple(int(i) for i in torch.nonzero(~finite)[0])
        what = "entry" if bad == 1 else "entries"
        raise InvalidContentError(
            f"{name} holds {bad} NaN or infinite {what} (the first at index {first})"
        )


def validate_vectors(
    vectors: torch.Tensor, *, name: str = "vectors", atol: float = DEFAULT_ATOL
) -> torch.Tensor:
    """Check that ``vectors`` is an ``(N, d)`` finite array of unit rows.

    The row norms are computed in float64: ``| ||w_i|| - 1 | <= atol`` for every row, with
    ``atol`` raised to :func:`tolerance` of the dtype (``2^-9`` for float16).

    Raises
    ------
    InvalidContentError
        On NaN/inf entries or a row norm off by more than ``atol``.
    """
    if vectors.ndim != 2 or vectors.shape[0] < 1 or vectors.shape[1] < 1:
        raise UnusableFileError(
            f"{name} must be a non-empty 2-D (N, d) array, got shape {tuple(vectors.shape)}"
        )
    _check_finite(vectors, name)
    atol = tolerance(vectors.dtype, atol)
    norms = torch.linalg.vector_norm(vectors, dim=1, dtype=torch.float64)
    err = (norms - 1.0).abs()
    worst = int(torch.argmax(err))
    if float(err[worst]) > atol:
        raise InvalidContentError(
            f"{name} rows must be unit vectors (|norm - 1| <= {atol:g}); row {worst} has norm "
            f"{float(norms[worst]):.6g}"
        )
    return vectors


def validate_bases(
    bases: torch.Tensor, *, name: str = "bases", atol: float = DEFAULT_ATOL
) -> torch.Tensor:
    """Check that ``bases`` is an ``(N, n, k)`` finite stack with orthonormal columns.

    Orthonormality is measured as ``max_i max |X_i^T X_i - I_k|`` in float64, against
    ``atol`` raised to :func:`tolerance` of the dtype.

    Raises
    ------
    UnusableFileError
        If the shape is not ``(N, n, k)`` with ``1 <= k <= n``.
    InvalidContentError
        On NaN/inf entries or columns that are not orthonormal within ``atol``.
    """
    if bases.ndim != 3 or min(bases.shape) < 1 or bases.shape[2] > bases.shape[1]:
        raise UnusableFileError(
            f"{name} must be a 3-D (N, n, k) array with 1 <= k <= n, got shape {tuple(bases.shape)}"
        )
    _check_finite(bases, name)
    atol = tolerance(bases.dtype, atol)
    x = bases.to(torch.float64)
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    err = (x.transpose(-1, -2) @ x - eye).abs().amax(dim=(-1, -2))
    worst = int(torch.argmax(err))
    if float(err[worst]) > atol:
        raise InvalidContentError(
            f"{name} must have orthonormal columns (max |X^T X - I| <= {atol:g}); basis {worst} "
            f"is off by {float(err[worst]):.3g}"
        )
    return bases


def load_vectors(path: str | os.PathLike, *, atol: float = DEFAULT_ATOL) -> torch.Tensor:
    """Load an ``(N, d)`` ``.npy`` file of unit class vectors as a float32 tensor (float64 when
    the file holds float64: small packings are saved in full precision).

    Raises
    ------
    UnusableFileError, InvalidContentError
        See :func:`load_array` and :func:`validate_vectors`.
    """
    array = load_array(path, ndim=2)
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    validate_vectors(tensor, name=f"vectors in {str(path)!r}", atol=atol)
    return _working_precision(tensor)


def load_bases(path: str | os.PathLike, *, atol: float = DEFAULT_ATOL) -> torch.Tensor:
    """Load an ``(N, n, k)`` ``.npy`` file of orthonormal subspace bases as a float32 tensor
    (float64 when the file holds float64).

    Raises
    ------
    UnusableFileError, InvalidContentError
        See :func:`load_array` and :func:`validate_bases`.
    """
    array = load_array(path, ndim=3)
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    validate_bases(tensor, name=f"bases in {str(path)!r}", atol=atol)
    return _working_precision(tensor)


def _working_precision(tensor: torch.Tensor) -> torch.Tensor:
    """float64 stays float64; float32 and the half precisions become float32."""
    return tensor if tensor.dtype == torch.float64 else tensor.to(torch.float32)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = _as_path(path, "path")
    _atomic(path, lambda fh: fh.write(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray | torch.Tensor) -> None:
    """Save ``array`` as a ``.npy`` file at ``path`` atomically.

    A tensor is moved to the CPU first. The file name is used as given: unlike ``numpy.save``,
    no ``.npy`` suffix is appended.
    """
    path = _as_path(path, "path")
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.ascontiguousarray(array)
    _atomic(path, lambda fh: np.save(fh, array, allow_pickle=False))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: Path, write) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        # mkstemp creates the file 0600; give it the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable; not possible on every platform/filesystem
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def sha256_file(path: str | os.PathLike, *, chunk_bytes: int = 1 << 20) -> str:
    """Return the hex SHA-256 digest of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(_as_path(path, "path"), "rb") as fh:
        for block in iter(lambda: fh.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()

"""Files of the generator: ``.npy`` + ``.json`` sidecar, safe loading, checkpoints.

* ``FILE.npy``: float32 or float64 ``(N, d)`` unit rows (:func:`ebv_gen.generate`) or ``(N, n, k)``
  orthonormal bases (:func:`ebv_gen.generate_subspaces`), written atomically
  (:func:`grassmann.npyio.save_npy_atomic`).
* ``FILE.json``: ``schema_version`` (:data:`ebv_gen.sidecar.SCHEMA_VERSION`), the report
  (:meth:`ebv_gen.EBVResult.as_dict`, :meth:`ebv_gen.SubspaceResult.as_dict`) plus ``sha256``,
  ``shape`` and ``dtype`` of the ``.npy`` file as stored, written atomically after it; read back
  by :func:`read_sidecar`, which also reads version 1 sidecars (:func:`ebv_gen.sidecar.upgrade`).
* ``FILE.ckpt.pt``: the optimiser state (``torch.save``), written atomically every
  ``checkpoint_every`` seconds and removed when the run finishes.
"""

from __future__ import annotations

import io as _io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from grassmann.npyio import (
    InvalidContentError,
    UnusableFileError,
    load_vectors,
    save_npy_atomic,
    sha256_file,
    write_bytes_atomic,
    write_text_atomic,
)

__all__ = [
    "check_sidecar",
    "checkpoint_path",
    "checkpoint_writer",
    "load",
    "load_checkpoint",
    "read_sidecar",
    "resume_checkpoint",
    "save_checkpoint",
    "save_vectors",
    "sidecar_path",
]


def sidecar_path(path: str | os.PathLike) -> Path:
    """``FILE.npy`` -> ``FILE.json`` (any other name gets ``.json`` appended)."""
    p = Path(path)
    return p.with_suffix(".json") if p.suffix == ".npy" else p.with_name(p.name + ".json")


def checkpoint_path(path: str | os.PathLike) -> Path:
    """``FILE.npy`` -> ``FILE.ckpt.pt``."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix == ".npy" else p
    return stem.with_name(stem.name + ".ckpt.pt")


def save_vectors(path: str | os.PathLike, vectors: torch.Tensor, report: dict[str, Any]) -> str:
    """Write ``vectors`` (or any array: subspace bases too) as ``.npy`` and ``report`` +
    ``sha256`` + ``shape`` + ``dtype`` as the sidecar.

    The array keeps its precision when it is float64 (small packings, found to the last digit)
    and is written as float32 otherwise. Both writes are atomic (temporary file, fsync,
    rename); the ``.npy`` goes first, so a sidecar always describes the ``.npy`` next to it.
    Returns the sha256 hex digest.
    """
    from .sidecar import SCHEMA_VERSION

    keep = vectors.dtype if vectors.dtype == torch.float64 else torch.float32
    array = vectors.detach().to("cpu", keep).contiguous().numpy()
    save_npy_atomic(path, array)
    digest = sha256_file(path)
    data = {"schema_version": SCHEMA_VERSION, **report}
    data["sha256"] = digest
    data["shape"] = list(array.shape)
    data["dtype"] = str(array.dtype)
    write_text_atomic(sidecar_path(path), json.dumps(data, indent=2, sort_keys=False) + "\n")
    return digest


def read_sidecar(path: str | os.PathLike) -> dict[str, Any] | None:
    """The sidecar of ``path`` as a dict in the current schema (older versions upgraded by
    :func:`ebv_gen.sidecar.upgrade`), ``None`` if there is none.

    Raises
    ------
    UnusableFileError
        If the sidecar exists but is not a JSON object, or has an unknown ``schema_version``.
    """
    from .sidecar import upgrade

    side = sidecar_path(path)
    if not side.exists():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnusableFileError(f"sidecar {str(side)!r} is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UnusableFileError(f"sidecar {str(side)!r} does not hold a JSON object")
    try:
        return upgrade(data)
    except ValueError as exc:
        raise UnusableFileError(f"sidecar {str(side)!r}: {exc}") from None


def check_sidecar(path: str | os.PathLike, vectors: torch.Tensor) -> dict[str, Any] | None:
    """Compare the sidecar's ``shape`` (or ``num``/``dim``) and ``sha256`` with the file.

    Raises
    ------
    InvalidContentError
        On a mismatch (the ``.npy`` was changed or replaced after it was written).
    """
    data = read_sidecar(path)
    if data is None:
        return None
    shape = data.get("shape") or [data.get("num"), data.get("dim")]
    if list(shape) != list(vectors.shape):
        raise InvalidContentError(
            f"{str(path)!r} has shape {tuple(vectors.shape)} but its sidecar "
            f"{str(sidecar_path(path))!r} says {tuple(shape)}"
        )
    want = data.get("sha256")
    if want is not None:
        got = sha256_file(path)
        if got != want:
            raise InvalidContentError(
                f"{str(path)!r} does not match its sidecar: sha256 {got[:16]}... != "
                f"{str(want)[:16]}... (the file was modified after it was written)"
            )
    return data


def load(path: str | os.PathLike, *, atol: float = 1e-4) -> torch.Tensor:
    """Load EBV class vectors from a ``.npy`` file, safely.

    Never unpickles (``allow_pickle=False``). Checks: a readable 2-D float array, finite,
    unit rows within ``atol``, and, when ``FILE.json`` exists, its shape and sha256.

    Returns
    -------
    torch.Tensor
        ``(N, d)`` float32.

    Raises
    ------
    grassmann.npyio.MissingFileError
        No file at ``path`` (an ``UnusableFileError`` and a ``FileNotFoundError``).
    grassmann.npyio.UnusableFileError
        Truncated, corrupt, pickled, non-float or not 2-D (a ``ValueError``).
    grassmann.npyio.InvalidContentError
        Non-finite entries, non-unit rows, or a sidecar mismatch (a ``ValueError``).
    """
    vectors = load_vectors(path, atol=atol)
    check_sidecar(path, vectors)
    return vectors


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """``torch.save`` ``state`` to ``path`` atomically."""
    buf = _io.BytesIO()
    torch.save(state, buf)
    write_bytes_atomic(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: tensors,
    numbers, strings, lists and dicts only; nothing is unpickled beyond that)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UnusableFileError(f"no checkpoint at {str(path)!r}") from None
    except Exception as exc:  # a truncated or foreign file: many exception types
        raise UnusableFileError(f"checkpoint {str(path)!r} is not readable ({exc})") from None
    if not isinstance(state, dict) or "meta" not in state:
        raise UnusableFileError(f"checkpoint {str(path)!r} is not an ebv-gen checkpoint")
    return state


def resume_checkpoint(
    path: str | os.PathLike, meta: dict[str, Any], keys: Sequence[str]
) -> dict[str, Any] | None:
    """The optimiser state saved at ``path``, or ``None`` when there is no such file.

    ``meta`` describes the run that wants to continue; the checkpoint's own ``meta`` must agree
    with it on every one of ``keys`` (sizes, seed, precision ...).

    Raises
    ------
    ValueError
        When the checkpoint was written by a different run (names the first differing key).
    grassmann.npyio.UnusableFileError
        When the file is not a readable checkpoint.
    """
    path = Path(path)
    if not path.exists():
        return None
    saved = load_checkpoint(path)
    differ = [key for key in keys if saved["meta"].get(key) != meta.get(key)]
    if differ:
        key = differ[0]
        raise ValueError(
            f"cannot resume from {str(path)!r}: it was written with {key}="
            f"{saved['meta'].get(key)!r}, this run has {key}={meta.get(key)!r}"
        )
    return saved["state"]


def checkpoint_writer(
    path: str | os.PathLike, meta: dict[str, Any], generator: torch.Generator
) -> Callable[[dict[str, Any]], None]:
    """The ``checkpoint=`` callback of :func:`ebv_gen.optimize.minimize_coherence`: saves the
    optimiser state with ``meta`` and the random generator's state to ``path`` (atomically)."""

    def write(state: dict[str, Any]) -> None:
        save_checkpoint(path, {"meta": meta, "state": state, "rng": generator.get_state()})

    return write

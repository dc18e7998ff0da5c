"""File verification: is a ``.npy`` file a valid set of class vectors or subspace bases, and
does it match its sidecar? (``ebv-gen verify``, :func:`verify_file`.)

The verdict dispatches on the rank of the stored array: 2-D ``(N, d)`` class vectors (unit rows;
coherence recomputed in float64) and 3-D ``(N, n, k)`` orthonormal bases (minimum chordal
distance and smallest principal angle recomputed in float64). A sidecar, when present, must
agree with the file (shape, sha256) and with the recomputed quality to ``1e-6``.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "DUPLICATE_COHERENCE",
    "DUPLICATE_DISTANCE",
    "EXIT_INVALID",
    "EXIT_UNUSABLE",
    "EXIT_VALID",
    "describe",
    "verify_file",
]

#: :func:`verify_file`'s codes (the exit codes of ``ebv-gen verify``).
EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNUSABLE = 2


#: A coherence above this (lines: ``|cos|``; sphere: ``cos``) means two rows are the same line or
#: point: only duplicates (or opposite rows, for lines) come this close in float64 (distinct
#: float32 rows are at least ~1e-7 rad apart, ``1 - cos >= 5e-15``; a packing with such a
#: coherence would need millions of lines in R^2).
DUPLICATE_COHERENCE = 1.0 - 1e-12

#: A minimum chordal distance below this means two subspaces coincide (the distance of two
#: copies of a float32 basis, recomputed in float64, is about 1e-8).
DUPLICATE_DISTANCE = 1e-6


def verify_file(path: str | os.PathLike, *, mode: str | None = None) -> tuple[int, dict[str, Any]]:
    """Check ``path``; return ``(exit code, verdict dict)``.

    Dispatches on the rank of the stored array: 2-D class vectors ``(N, d)`` and 3-D subspace
    bases ``(N, n, k)``; other ranks are unusable. Valid means: finite, unit rows (orthonormal
    columns) within :func:`grassmann.npyio.tolerance` of the stored dtype, ``N >= 2`` and no two
    rows the same line or point (no two subspaces the same), and, when the sidecar exists, its
    shape, sha256 and stated quality match the file (to ``1e-6``).

    Parameters
    ----------
    path
        The ``.npy`` file.
    mode
        ``"lines"`` or ``"sphere"`` for class vectors; default: the sidecar's ``mode``, else
        ``"lines"``. A mode that differs from the sidecar's is an error.

    Returns
    -------
    tuple
        ``(EXIT_VALID, verdict)``, ``(EXIT_INVALID, verdict)`` (readable but invalid content)
        or ``(EXIT_UNUSABLE, verdict)`` (the file cannot be read as either kind); the verdict
        has ``valid``, ``status`` (``"valid"``, ``"invalid"``, ``"unusable"``), ``error`` when
        not valid, and, when valid, the quality keys of the sidecar schema
        (:func:`ebv_gen.sidecar.vectors_quality`, :func:`ebv_gen.sidecar.subspaces_quality`).

    Raises
    ------
    ValueError
        For a ``mode`` other than ``None``, ``"lines"``, ``"sphere"``, or one that contradicts
        the sidecar.
    """
    import grassmann
    from grassmann._validation import check_choice
    from grassmann.npyio import InvalidContentError, UnusableFileError, load_array

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if mode is not None:
        mode = check_choice("mode", mode, ("lines", "sphere"))
    verdict: dict[str, Any] = {"file": path}
    try:
        array = load_array(path, name=None)
        verifier = _VERIFIERS.get(array.ndim)
        if verifier is None:
            want = " or ".join(f"{n}-D" for n in sorted(_VERIFIERS))
            raise UnusableFileError(
                f"{path!r} holds a {array.ndim}-D array of shape {array.shape}, expected {want}"
            )
        verdict.update(verifier(path, array, grassmann, mode))
    except UnusableFileError as exc:
        verdict.update(valid=False, status="unusable", error=str(exc))
        return EXIT_UNUSABLE, verdict
    except InvalidContentError as exc:
        verdict.update(valid=False, status="invalid", error=str(exc))
        return EXIT_INVALID, verdict
    verdict.update(valid=True, status="valid")
    return EXIT_VALID, verdict


def _check_claim(path: str, side: dict[str, Any] | None, key: str, value: float) -> float | None:
    """The sidecar's ``key`` when it states one; ``InvalidContentError`` if it differs from the
    recomputed ``value`` by more than ``1e-6``."""
    claimed = (side or {}).get(key)
    if not isinstance(claimed, (int, float)) or isinstance(claimed, bool):
        return None
    if abs(float(claimed) - value) > 1e-6:
        from grassmann.npyio import InvalidContentError

        raise InvalidContentError(
            f"{path!r}: {key.replace('_', ' ')} {value:.9f} differs from the sidecar's "
            f"{float(claimed):.9f}"
        )
    return float(claimed)


def _sidecar_of(path: str, tensor, kind: str) -> dict[str, Any] | None:
    """The sidecar of ``path`` checked against ``tensor`` (:func:`ebv_gen.io.check_sidecar`)
    and against the ``kind`` of array the file holds."""
    from grassmann.npyio import InvalidContentError

    from .io import check_sidecar

    side = check_sidecar(path, tensor)
    if side is not None and side.get("kind", kind) != kind:
        raise InvalidContentError(
            f"{path!r} holds a {tensor.ndim}-D array but its sidecar says kind={side.get('kind')!r}"
        )
    return side


def _single(path: str, what: str, quality: str) -> Exception:
    from grassmann.npyio import InvalidContentError

    return InvalidContentError(
        f"{path!r} holds a single {what}: {quality} needs at least 2 (of one it is undefined)"
    )


def _resolve_mode(path: str, side: dict[str, Any] | None, mode: str | None) -> tuple[str, str]:
    """``(mode, where it came from)``: the ``mode`` argument, the sidecar's, or ``"lines"``."""
    stated = (side or {}).get("mode")
    if mode is not None:
        if stated in ("lines", "sphere") and stated != mode:
            raise ValueError(
                f"mode={mode!r} but the sidecar of {path!r} says mode={stated!r}; "
                f"omit the mode to use the sidecar's"
            )
        return mode, "argument"
    if stated in ("lines", "sphere"):
        return stated, "sidecar"
    return "lines", "default"


def _verify_vectors(path: str, array, grassmann, mode: str | None) -> dict[str, Any]:
    import numpy as np
    import torch

    from grassmann.npyio import InvalidContentError, validate_vectors

    from .sidecar import vectors_quality

    tensor = torch.from_numpy(np.ascontiguousarray(array))
    validate_vectors(tensor, name=f"vectors in {path!r}")
    side = _sidecar_of(path, tensor, "vectors")
    n, d = (int(x) for x in tensor.shape)
    mode, mode_from = _resolve_mode(path, side, mode)
    if n < 2:
        raise _single(path, "vector", "a coherence")
    bound = grassmann.lower_bound(n, d, mode)
    mu = grassmann.coherence(tensor, mode=mode)
    if mu > DUPLICATE_COHERENCE:
        i, j = grassmann.coherence_report(tensor, mode=mode, bins=1, max_pairs=1).pairs[0]
        same = "the same line (equal or opposite)" if mode == "lines" else "the same point"
        raise InvalidContentError(
            f"{path!r}: rows {i} and {j} are {same}: coherence {mu:.12g}, class vectors must differ"
        )
    out = vectors_quality(n, d, mode, mu, bound.value, bound.name)
    out.update(mode_from=mode_from, sidecar=side is not None)
    claimed = _check_claim(path, side, "coherence", mu)
    if claimed is not None:
        out["sidecar_coherence"] = claimed
    return out


def _verify_subspaces(path: str, array, grassmann, mode: str | None) -> dict[str, Any]:
    """A ``(N, n, k)`` stack of orthonormal bases (``ebv-gen generate-subspaces``)."""
    import numpy as np
    import torch

    from grassmann.npyio import InvalidContentError, validate_bases

    from .sidecar import subspaces_quality

    if mode is not None:
        raise ValueError(f"mode={mode!r} applies to class vectors; {path!r} holds subspaces")
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    validate_bases(tensor, name=f"bases in {path!r}")
    side = _sidecar_of(path, tensor, "subspaces")
    num, n, k = (int(x) for x in tensor.shape)
    if num < 2:
        raise _single(path, "subspace", "a minimum distance")
    if k == n:
        raise InvalidContentError(
            f"{path!r} holds bases of k = n = {n} columns: every one spans R^{n}, they all coincide"
        )
    try:  # float64 files are held to 1e-6 orthonormality there
        quality = grassmann.subspace_coherence(tensor)
    except ValueError as exc:
        raise InvalidContentError(f"bases in {path!r}: {exc}") from None
    if quality.min_chordal_distance < DUPLICATE_DISTANCE:
        i, j = quality.pair_distance
        raise InvalidContentError(
            f"{path!r}: bases {i} and {j} span the same subspace (chordal distance "
            f"{quality.min_chordal_distance:.3g}); class subspaces must differ"
        )
    bound = grassmann.subspace_lower_bound(num, n, k)
    out = subspaces_quality(
        num, n, k, quality.min_chordal_distance, quality.min_angle, bound.value, bound.name
    )
    out["sidecar"] = side is not None
    for key in ("min_distance", "min_angle_rad"):
        claimed = _check_claim(path, side, key, out[key])
        if claimed is not None:
            out[f"sidecar_{key}"] = claimed
    return out


#: verify's dispatch on the array rank.
_VERIFIERS = {2: _verify_vectors, 3: _verify_subspaces}


def describe(path: str, verdict: dict[str, Any]) -> str:
    """The one-line text of a valid verdict of :func:`verify_file`."""
    tail = "" if verdict["sidecar"] else " (no sidecar)"
    if verdict["kind"] == "subspaces":
        gr = f"Gr({verdict['n']}, {verdict['k']})"
        return (
            f"valid: {path}: {verdict['num']} orthonormal bases of {gr}, min chordal distance "
            f"{verdict['min_distance']:.6f} (float64), min angle "
            f"{verdict['min_angle_deg']:.4f} deg, bound {verdict['bound']:.6f} "
            f"({verdict['bound_name']}), gap {verdict['gap']:.2e}" + tail
        )
    if verdict["mode_from"] == "default":
        other = "sphere" if verdict["mode"] == "lines" else "lines"
        what = "a spherical code" if other == "sphere" else "lines"
        tail = f" (no sidecar: checked as {verdict['mode']}; --mode {other} checks {what})"
    return (
        f"valid: {path}: {verdict['num']} x {verdict['dim']} unit vectors ({verdict['mode']}), "
        f"coherence {verdict['coherence']:.6f} (float64), bound {verdict['bound']:.6f} "
        f"({verdict['bound_name']}), gap {verdict['gap']:.2e}" + tail
    )

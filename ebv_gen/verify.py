"""File verification: is a ``.npy`` file a valid set of class vectors or subspace bases, and
does it match its sidecar? (``ebv-gen verify``, :func:`verify_file`.)

The verdict dispatches on the rank of the stored array: 2-D ``(N, d)`` class vectors (unit rows;
coherence recomputed in float64) and 3-D ``(N, n, k)`` orthonormal bases (minimum chordal
distance and smallest principal angle recomputed in float64). A sidecar, when present, must
agree with the file (shape, sha256) and with the recomputed quality to ``1e-6``.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["EXIT_INVALID", "EXIT_UNUSABLE", "EXIT_VALID", "describe", "verify_file"]

#: :func:`verify_file`'s codes (the exit codes of ``ebv-gen verify``).
EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNUSABLE = 2


def verify_file(path: str) -> tuple[int, dict[str, Any]]:
    """Check ``path``; return ``(exit code, verdict dict)``.

    Dispatches on the rank of the stored array: 2-D class vectors, 3-D subspace bases
    ``(N, n, k)``; other ranks are unusable.

    Returns
    -------
    tuple
        ``(EXIT_VALID, verdict)``, ``(EXIT_INVALID, verdict)`` (readable but invalid content)
        or ``(EXIT_UNUSABLE, verdict)`` (the file cannot be read as either kind); the verdict
        has ``valid``, ``status`` (``"valid"``, ``"invalid"``, ``"unusable"``), ``error`` when
        not valid, and the recomputed quality when valid.
    """
    import grassmann
    from grassmann.npyio import InvalidContentError, UnusableFileError, load_array

    from .io import check_sidecar

    verdict: dict[str, Any] = {"file": path}
    try:
        array = load_array(path)
        verifier = _VERIFIERS.get(array.ndim)
        if verifier is None:
            want = ", ".join(f"{n}-D" for n in sorted(_VERIFIERS))
            raise UnusableFileError(
                f"{path!r} holds a {array.ndim}-D array of shape {array.shape}, expected {want}"
            )
        verdict.update(verifier(path, array, grassmann, check_sidecar))
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


def _verify_vectors(path: str, array, grassmann, check_sidecar) -> dict[str, Any]:
    import numpy as np
    import torch

    from grassmann.npyio import validate_vectors

    tensor = torch.from_numpy(np.ascontiguousarray(array))
    validate_vectors(tensor, name=f"vectors in {path!r}")
    side = check_sidecar(path, tensor)
    n, d = tensor.shape
    mode = (side or {}).get("mode", "lines")
    if mode not in ("lines", "sphere"):
        mode = "lines"
    out: dict[str, Any] = {
        "kind": "vectors",
        "num": int(n),
        "dim": int(d),
        "mode": mode,
        "sidecar": side is not None,
    }
    if n >= 2:
        bound = grassmann.lower_bound(int(n), int(d), mode)
        mu = grassmann.coherence(tensor, mode=mode)
        out.update(coherence=mu, lower_bound=bound.value, lower_bound_name=bound.name)
        out["gap"] = mu - bound.value
        claimed = _check_claim(path, side, "coherence", mu)
        if claimed is not None:
            out["sidecar_coherence"] = claimed
    return out


def _verify_subspaces(path: str, array, grassmann, check_sidecar) -> dict[str, Any]:
    """A ``(N, n, k)`` stack of orthonormal bases (``ebv-gen generate-subspaces``)."""
    import numpy as np
    import torch

    from grassmann.npyio import InvalidContentError, validate_bases

    tensor = torch.from_numpy(np.ascontiguousarray(array))
    validate_bases(tensor, name=f"bases in {path!r}")
    side = check_sidecar(path, tensor)
    if side is not None and side.get("kind", "subspaces") != "subspaces":
        raise InvalidContentError(
            f"{path!r} holds a 3-D array but its sidecar says kind={side.get('kind')!r}"
        )
    num, n, k = (int(x) for x in tensor.shape)
    out: dict[str, Any] = {"kind": "subspaces", "num": num, "n": n, "k": k}
    out["sidecar"] = side is not None
    if num >= 2 and k < n:
        try:  # float64 files are held to 1e-6 orthonormality there
            quality = grassmann.subspace_coherence(tensor)
        except ValueError as exc:
            raise InvalidContentError(f"bases in {path!r}: {exc}") from None
        bound = grassmann.subspace_lower_bound(num, n, k)
        out.update(min_distance=quality.min_chordal_distance, min_angle=quality.min_angle)
        out.update(bound=bound.value, bound_name=bound.name)
        out["gap"] = bound.value - quality.min_chordal_distance
        for key in ("min_distance", "min_angle"):
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
        head = f"valid: {path}: {verdict['num']} orthonormal bases of {gr}"
        if "min_distance" not in verdict:
            return head + tail
        return (
            f"{head}, min chordal distance {verdict['min_distance']:.6f} (float64), min angle "
            f"{math.degrees(verdict['min_angle']):.4f} deg, bound {verdict['bound']:.6f} "
            f"({verdict['bound_name']}), gap {verdict['gap']:.2e}" + tail
        )
    head = f"valid: {path}: {verdict['num']} x {verdict['dim']} unit vectors"
    if "coherence" not in verdict:
        return head
    return (
        f"{head}, coherence {verdict['coherence']:.6f} (float64), bound "
        f"{verdict['lower_bound']:.6f} ({verdict['lower_bound_name']}), "
        f"gap {verdict['gap']:.2e}" + tail
    )

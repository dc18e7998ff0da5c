"""The JSON sidecar ``FILE.json`` of a generated ``FILE.npy``: its schema, the quality keys both
kinds of file share, and the reader of older sidecars.

Schema version 2 (documented key by key in the docs page "Sidecar files"): every sidecar has
``schema_version``, ``kind`` (``"vectors"`` or ``"subspaces"``), ``num``, ``bound``,
``bound_name``, ``gap``, ``ratio``, the smallest angle in radians and degrees
(``min_angle_rad``, ``min_angle_deg``), the run record (``seed``, ``device``, ``steps``,
``seconds``, ``interrupted``, ``version``, ``history`` as a list of objects) and, written last,
``sha256``, ``shape`` and ``dtype`` of the ``.npy`` file as stored. Version 1 (no
``schema_version``; ``lower_bound``/``lower_bound_name`` for vectors, ``min_angle`` in radians
for subspaces, ``history`` as ``[step, seconds, value]`` triples) is read by :func:`upgrade`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "HISTORY_KEYS",
    "SCHEMA_VERSION",
    "history_entries",
    "subspaces_quality",
    "upgrade",
    "vectors_quality",
]

#: The version :func:`ebv_gen.io.save_vectors` writes.
SCHEMA_VERSION = 2

#: The quantity each ``history`` entry records, by ``kind``: the best coherence so far (lower is
#: better) or the best minimum chordal distance so far (higher is better).
HISTORY_KEYS = {"vectors": "coherence", "subspaces": "min_distance"}

#: Version 1 key -> version 2 key.
_RENAMED = {
    "lower_bound": "bound",
    "lower_bound_name": "bound_name",
    "min_angle": "min_angle_rad",
}


def _angles(radians: float) -> dict[str, float]:
    return {"min_angle_rad": radians, "min_angle_deg": math.degrees(radians)}


def vectors_quality(
    num: int, dim: int, mode: str, coherence: float, bound: float, bound_name: str
) -> dict[str, Any]:
    """The quality keys of a sidecar (and of ``ebv-gen verify --json``) for ``N`` unit vectors.

    ``gap = coherence - bound`` (``>= 0``), ``ratio = coherence / bound`` (``None`` when the
    bound is not positive), ``min_angle_rad = arccos(coherence)``: the smallest angle between
    two of the lines (lines mode) or points (sphere mode; the coherence is the largest signed
    cosine there).
    """
    return {
        "kind": "vectors",
        "num": int(num),
        "dim": int(dim),
        "mode": mode,
        "coherence": float(coherence),
        **_angles(math.acos(min(1.0, max(-1.0, float(coherence))))),
        "bound": float(bound),
        "bound_name": str(bound_name),
        "gap": float(coherence) - float(bound),
        "ratio": float(coherence) / float(bound) if bound > 0 else None,
    }


def subspaces_quality(
    num: int,
    n: int,
    k: int,
    min_distance: float,
    min_angle: float,
    bound: float,
    bound_name: str,
    metric: str = "chordal",
) -> dict[str, Any]:
    """The quality keys for ``N`` subspaces of dimension ``k`` in ``R^n``.

    ``bound`` is an upper bound on ``min_distance`` (the minimum chordal distance); ``gap =
    bound - min_distance`` (``>= 0``), ``ratio = min_distance / bound`` (``<= 1``);
    ``min_angle`` is the smallest principal angle over all pairs, in radians.
    """
    return {
        "kind": "subspaces",
        "num": int(num),
        "n": int(n),
        "k": int(k),
        "metric": metric,
        "min_distance": float(min_distance),
        **_angles(float(min_angle)),
        "bound": float(bound),
        "bound_name": str(bound_name),
        "gap": float(bound) - float(min_distance),
        "ratio": float(min_distance) / float(bound) if bound > 0 else None,
    }


def history_entries(history: Iterable[Sequence[float]], kind: str) -> list[dict[str, Any]]:
    """``[(step, seconds, value), ...]`` -> ``[{"step": ..., "seconds": ..., <key>: ...}]`` with
    ``<key>`` the :data:`HISTORY_KEYS` entry of ``kind``."""
    key = HISTORY_KEYS[kind]
    return [
        {"step": int(step), "seconds": float(seconds), key: float(value)}
        for step, seconds, value in history
    ]


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A sidecar of any version as version :data:`SCHEMA_VERSION` (a new dict).

    Version 1 keys are renamed (``lower_bound`` -> ``bound``, ``lower_bound_name`` ->
    ``bound_name``, ``min_angle`` -> ``min_angle_rad``), ``kind`` is filled in from the shape,
    ``min_angle_deg`` is added, and ``history`` triples become objects. A version 2 sidecar is
    returned as it is (copied).

    Raises
    ------
    ValueError
        For a ``schema_version`` newer than this package knows.
    """
    out = dict(data)
    version = out.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"sidecar schema_version must be a positive integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"sidecar schema_version {version} is newer than this ebv-gen reads (up to "
            f"{SCHEMA_VERSION}); upgrade the package"
        )
    if version == SCHEMA_VERSION:
        return out
    for old, new in _RENAMED.items():
        if old in out and new not in out:
            out[new] = out.pop(old)
    if "kind" not in out:
        shape = out.get("shape")
        out["kind"] = "subspaces" if isinstance(shape, list) and len(shape) == 3 else "vectors"
    if isinstance(out.get("min_angle_rad"), (int, float)):
        out["min_angle_deg"] = math.degrees(out["min_angle_rad"])
    history = out.get("history")
    if (
        isinstance(history, list)
        and out["kind"] in HISTORY_KEYS
        and all(isinstance(h, (list, tuple)) and len(h) == 3 for h in history)
    ):
        out["history"] = history_entries(history, out["kind"])
    out["schema_version"] = SCHEMA_VERSION
    return out

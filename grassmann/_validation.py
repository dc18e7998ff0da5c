"""Argument checks shared by ``grassmann`` and ``ebv_gen``.

Every public function validates its input with these helpers so that a bad argument always
raises a ``TypeError`` (wrong kind of object) or ``ValueError`` (right kind, wrong value) whose
message names the argument, repeats the value it got and says what is allowed.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import torch

__all__ = [
    "check_choice",
    "check_dtype",
    "check_finite",
    "check_float",
    "check_int",
    "check_tensor",
]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_int(
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    """Return ``value`` as a Python ``int`` after checking its type and range.

    Booleans and floats are rejected even when integral (``3.0``), so that a typo such as
    ``dim=0.5`` never silently becomes ``0``.

    Raises
    ------
    TypeError
        If ``value`` is not an integer.
    ValueError
        If ``value`` lies outside ``[minimum, maximum]``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {_show(value)} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_minimum: bool = False,
) -> float:
    """Return ``value`` as a finite Python ``float`` after checking its type and range.

    With ``strict_minimum=True`` the value must be strictly greater than ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a real number, got {_show(value)} ({type(value).__name__})"
        )
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None:
        if strict_minimum and value <= minimum:
            raise ValueError(f"{name} must be > {minimum}, got {value}")
        if not strict_minimum and value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of the strings in ``allowed``."""
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {choices}, got {_show(value)}")
    return value


def check_dtype(name: str, value: Any, default: torch.dtype = torch.float64) -> torch.dtype:
    """Return ``value`` (``default`` when it is ``None``) after checking that it is a real
    floating ``torch.dtype``: frames of unit vectors in an integer dtype would be rounded."""
    if value is None:
        return default
    if not isinstance(value, torch.dtype):
        raise TypeError(
            f"{name} must be a torch.dtype, got {_show(value)} ({type(value).__name__})"
        )
    if not value.is_floating_point or value.is_complex:
        raise TypeError(
            f"{name} must be a real floating dtype (torch.float16, torch.bfloat16, "
            f"torch.float32, torch.float64), got {value}"
        )
    return value


def check_tensor(
    name: str,
    value: Any,
    *,
    min_ndim: int | None = None,
    ndim: int | None = None,
    floating: bool = True,
) -> torch.Tensor:
    """Check that ``value`` is a ``torch.Tensor`` of a suitable rank and dtype.

    Parameters
    ----------
    name
        The argument's name, used in the error message.
    min_ndim, ndim
        Required minimum rank, or exact rank.
    floating
        Require a real floating dtype (float16/bfloat16/float32/float64).
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(
            f"{name} must be a {ndim}-D tensor, got shape {tuple(value.shape)} ({value.ndim}-D)"
        )
    if min_ndim is not None and value.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions, got shape {tuple(value.shape)}"
        )
    if floating and (not value.is_floating_point() or value.is_complex()):
        raise TypeError(f"{name} must have a real floating dtype, got {value.dtype}")
    return value


def check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Raise ``ValueError`` if ``value`` holds NaN or infinite entries (one host sync)."""
    if not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(f"{name} must be finite, got {bad} NaN or infinite entries")
    return value

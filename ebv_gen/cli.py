"""The ``ebv-gen`` command line: ``generate``, ``generate-subspaces``, ``verify``, ``plot``,
``import``.

Exit codes: 0 success (``verify``: valid), 1 ``verify``: readable but invalid content,
2 bad input or unusable file (one line ``ebv-gen: error: ...`` on stderr, never a traceback),
130 interrupted (Ctrl-C / SIGTERM; the best result so far is written, marked interrupted).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import re
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

PROG = "ebv-gen"

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _int_at_least(name: str, minimum: int):
    """argparse type: a base-10 integer >= ``minimum``, with a message naming ``name``."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum}, got {value}")
        return value

    return parse


def _nonneg_float(name: str, strict: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (strict and value == 0):
            raise argparse.ArgumentTypeError(
                f"{name} must be a finite number {'>' if strict else '>='} 0, got {text!r}"
            )
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    """argparse prints usage + error; we want the one-line form only."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CLIError(message)


def _add_run_options(g: argparse.ArgumentParser) -> None:
    """The options ``generate`` and ``generate-subspaces`` share (output, budget, device,
    checkpoints, overwrite, verbosity)."""
    g.add_argument("-o", "--output", required=True, metavar="FILE.npy", help="output file")
    g.add_argument("--seed", type=_int_at_least("--seed", 0), default=0)
    g.add_argument(
        "--time-budget",
        type=_nonneg_float("--time-budget"),
        default=None,
        metavar="SEC",
        help="stop after SEC seconds (default: a step count scaled to the size)",
    )
    g.add_argument("--steps", type=_int_at_least("--steps", 0), default=None, metavar="N")
    g.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    g.add_argument(
        "--checkpoint-every",
        type=_nonneg_float("--checkpoint-every", strict=True),
        default=60.0,
        metavar="SEC",
        help="save FILE.ckpt.pt every SEC seconds (default 60)",
    )
    g.add_argument("--force", action="store_true", help="overwrite an existing output")
    g.add_argument("--resume", action="store_true", help="continue from FILE.ckpt.pt if it exists")
    g.add_argument("--quiet", action="store_true", help="print only the final report line")


def build_parser() -> argparse.ArgumentParser:
    from .generation import METHODS
    from .subspaces import METRICS

    parser = _Parser(
        prog=PROG,
        description="Generate and check Equiangular Basis Vectors (N unit vectors in R^d with "
        "small mutual coherence) and packings of subspaces (N k-dimensional subspaces of R^n "
        "far apart).",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    g = sub.add_parser("generate", help="generate N x d class vectors into FILE.npy + FILE.json")
    g.add_argument("num", type=_int_at_least("NUM", 1), metavar="NUM", help="number of vectors N")
    g.add_argument("dim", type=_int_at_least("DIM", 1), metavar="DIM", help="dimension d")
    g.add_argument("--mode", choices=["lines", "sphere"], default="lines")
    g.add_argument("--method", choices=list(METHODS), default="auto")
    g.add_argument(
        "--threshold",
        type=_nonneg_float("--threshold"),
        default=None,
        help="hinge threshold for --method threshold (default 0.002, as the published script)",
    )
    _add_run_options(g)

    s = sub.add_parser(
        "generate-subspaces",
        help="generate N k-dimensional subspaces of R^n, far apart, into FILE.npy (N, n, k)",
    )
    s.add_argument("num", type=_int_at_least("NUM", 1), metavar="NUM", help="number of subspaces N")
    s.add_argument("n", type=_int_at_least("N", 1), metavar="N", help="ambient dimension n")
    s.add_argument("k", type=_int_at_least("K", 1), metavar="K", help="subspace dimension k < n")
    s.add_argument("--metric", choices=list(METRICS), default="chordal")
    _add_run_options(s)

    v = sub.add_parser("verify", help="check a .npy file of class vectors or subspace bases")
    v.add_argument("file", metavar="FILE.npy")
    v.add_argument("--json", action="store_true", help="print the verdict as JSON")

    i = sub.add_parser(
        "import",
        help="convert a published EBV pickle (eq_{d}_{N}.pkl, CUDA tensors welcome) into a "
        "checked FILE.npy + FILE.json; nothing in the pickle is run",
    )
    i.add_argument("file", metavar="FILE.pkl")
    i.add_argument("-o", "--output", required=True, metavar="FILE.npy", help="output file")
    i.add_argument("--force", action="store_true", help="overwrite an existing output")

    p = sub.add_parser("plot", help="histogram of pairwise |cos| and the convergence curve")
    p.add_argument("file", metavar="FILE.npy")
    p.add_argument("-o", "--output", required=True, metavar="FIG.png")
    p.add_argument("--force", action="store_true", help="overwrite an existing figure")
    return parser


# ----------------------------------------------------------------------------- helpers


def _check_writable(path: Path, force: bool, what: str = "output") -> None:
    """Fail early (before any work) when ``path`` cannot be written."""
    if path.exists() and not force:
        raise CLIError(f"{what} {str(path)!r} exists; pass --force to overwrite it")
    if path.is_dir():
        raise CLIError(f"{what} {str(path)!r} is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CLIError(f"cannot write {what} {str(path)!r}: directory {str(parent)!r} not found")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(
            f"cannot write {what} {str(path)!r}: directory {str(parent)!r} is not writable"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise CLIError(f"cannot write {what} {str(path)!r}: permission denied")


class _StopFlag:
    """SIGINT/SIGTERM set the flag (the optimiser stops at the next step boundary and the best
    vectors are saved); a second signal raises ``KeyboardInterrupt`` at once."""

    def __init__(self) -> None:
        self.stop = False
        self.signal = 0

    def __call__(self) -> bool:
        return self.stop

    def handler(self, signum, frame) -> None:  # noqa: ARG002
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True
        self.signal = signum


@contextlib.contextmanager
def _signals(flag: _StopFlag) -> Iterator[None]:
    if sys.platform == "win32" or not _main_thread():
        yield
        return
    old_int = signal.signal(signal.SIGINT, flag.handler)
    old_term = signal.signal(signal.SIGTERM, flag.handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class _Progress:
    """tqdm bar on a terminal (stderr isatty), nothing otherwise."""

    def __init__(
        self, total: int | None, bound: float, enabled: bool, label: str = "coherence"
    ) -> None:
        self.bar = None
        self.last = 0
        self.label = label
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True)
            self.bound = bound

    def __call__(self, step: int, current: float, best: float) -> None:
        if self.bar is None:
            return
        self.bar.update(step - self.last)
        self.last = step
        if step % 10 == 0 or step < 10:
            self.bar.set_postfix_str(
                f"{self.label} {current:.5f} best {best:.5f} bound {self.bound:.5f}",
                refresh=False,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------- commands


def _open_output(args: argparse.Namespace):
    """Check the output and the device before any work: ``(output, checkpoint, device)``."""
    from .generation import resolve_device
    from .io import checkpoint_path

    out = Path(args.output)
    ckpt = checkpoint_path(out)
    _check_writable(out, args.force or (args.resume and ckpt.exists()))
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    return out, ckpt, device


def _default_total(args: argparse.Namespace, *sizes: int) -> int | None:
    """Length of the progress bar: ``--steps``, else the default step count (or none when only
    a time budget is given)."""
    from .optimize import default_steps

    if args.steps is None and args.time_budget is None:
        return default_steps(*sizes)
    return args.steps


def _run_and_save(
    args: argparse.Namespace,
    out: Path,
    ckpt: Path,
    device,
    generator,
    *,
    total: int | None,
    bound: float,
    label: str,
    extra=None,
) -> int:
    """Run ``generator(seed=..., device=..., time_budget=..., steps=..., <progress, checkpoint
    and stop keywords>)`` under the signal handlers with a progress bar, save the result
    (``extra(result)`` added to the sidecar) and print the report line; exit code 0, or 130
    when interrupted (the best result so far is saved)."""
    bar = _Progress(total, bound, not args.quiet, label)
    flag = _StopFlag()
    try:
        with _signals(flag):
            result = generator(
                seed=args.seed,
                device=device,
                time_budget=args.time_budget,
                steps=args.steps,
                callback=bar,
                checkpoint_path=ckpt,
                checkpoint_every=args.checkpoint_every,
                resume=args.resume,
                should_stop=flag,
            )
    finally:
        bar.close()
    result.save(out, extra=extra(result) if extra is not None else None)
    print(result.report() + f"  -> {out}", flush=True)
    if result.interrupted:
        if ckpt.exists():
            print(
                f"{PROG}: interrupted; best result so far written to {out}; "
                f"continue with --resume (checkpoint {ckpt})",
                file=sys.stderr,
            )
        return EXIT_INTERRUPTED
    return EXIT_OK


def _cmd_generate(args: argparse.Namespace) -> int:
    import grassmann

    from .generation import check_memory, generate

    out, ckpt, device = _open_output(args)
    if args.num < 2:
        raise CLIError(
            f"NUM must be >= 2 (the coherence of a single vector is undefined), got {args.num}"
        )
    check_memory(args.num, args.dim, device)
    bound = grassmann.lower_bound(args.num, args.dim, args.mode)

    def extra(result) -> dict[str, Any]:
        if args.num * args.num * args.dim > 4e10:  # the report's extra pass costs ~ one step
            return {}
        rep = grassmann.coherence_report(result.vectors, mode=args.mode)
        out = {"mean_abs_cos" if args.mode == "lines" else "mean_cos": rep.mean}
        out["quantiles"] = {str(q): v for q, v in rep.quantiles.items()}
        return out

    run = functools.partial(
        generate, args.num, args.dim, mode=args.mode, method=args.method, threshold=args.threshold
    )
    total = _default_total(args, args.num, args.dim)
    return _run_and_save(
        args, out, ckpt, device, run, total=total, bound=bound.value, label="coherence", extra=extra
    )


def _cmd_generate_subspaces(args: argparse.Namespace) -> int:
    import grassmann

    from .subspaces import (
        _check_sizes,
        check_subspace_memory,
        generate_subspaces,
    )

    out, ckpt, device = _open_output(args)
    try:
        _check_sizes(args.num, args.n, args.k)
    except ValueError as exc:
        # the Python names num, n, k are the positional NUM, N, K on the command line
        raise CLIError(re.sub(r"\b(num|n|k)\b", lambda m: m.group(1).upper(), str(exc))) from None
    check_subspace_memory(args.num, args.n, args.k, device)
    run = functools.partial(generate_subspaces, args.num, args.n, args.k, metric=args.metric)
    total = _default_total(args, args.num, args.n, args.k)
    bound = grassmann.subspace_lower_bound(args.num, args.n, args.k).value
    return _run_and_save(
        args, out, ckpt, device, run, total=total, bound=bound, label="min distance"
    )


def verify_file(path: str) -> tuple[int, dict[str, Any]]:
    """Check ``path``; return ``(exit code, verdict dict)``.

    Dispatches on the rank of the stored array: 2-D class vectors, 3-D subspace bases
    ``(N, n, k)``; other ranks are unusable.
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
        return EXIT_USAGE, verdict
    except InvalidContentError as exc:
        verdict.update(valid=False, status="invalid", error=str(exc))
        return EXIT_INVALID, verdict
    verdict.update(valid=True, status="valid")
    return EXIT_OK, verdict


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


def _describe(path: str, verdict: dict[str, Any]) -> str:
    """The one-line text of a valid verdict."""
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


def _cmd_verify(args: argparse.Namespace) -> int:
    code, verdict = verify_file(args.file)
    if args.json:
        print(json.dumps(verdict))
    elif code == EXIT_OK:
        print(_describe(args.file, verdict))
    else:
        print(f"{verdict['status']}: {verdict['error']}")
    return code


def _cmd_plot(args: argparse.Namespace) -> int:
    import grassmann

    from .io import load, read_sidecar

    out = Path(args.output)
    _check_writable(out, args.force, "figure")
    vectors = load(args.file)
    side = read_sidecar(args.file) or {}
    mode = side.get("mode", "lines") if side.get("mode") in ("lines", "sphere") else "lines"
    if vectors.shape[0] < 2:
        raise CLIError(f"{args.file!r} holds a single vector: nothing to plot")
    rep = grassmann.coherence_report(vectors, mode=mode)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = side.get("history") or []
    ncols = 2 if history else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4), squeeze=False)
    ax = axes[0, 0]
    edges, counts = rep.histogram
    ax.stairs(counts, edges, fill=True, alpha=0.7)
    ax.axvline(rep.coherence, color="C3", label=f"coherence {rep.coherence:.4f}")
    ax.axvline(rep.bound, color="C2", ls="--", label=f"{rep.bound_name} bound {rep.bound:.4f}")
    ax.set_xlabel("|cos|" if mode == "lines" else "cos")
    ax.set_ylabel("pairs")
    ax.set_title(f"{vectors.shape[0]} x {vectors.shape[1]} {mode}")
    ax.legend()
    if history:
        ax2 = axes[0, 1]
        steps = [h[0] for h in history]
        coh = [h[2] for h in history]
        ax2.plot(steps, coh, label="best coherence")
        ax2.axhline(rep.bound, color="C2", ls="--", label="bound")
        ax2.set_xlabel("step")
        ax2.set_ylabel("coherence")
        ax2.set_yscale("log" if min(coh) > 0 else "linear")
        ax2.legend()
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    print(f"wrote {out}")
    return EXIT_OK


def _cmd_import(args: argparse.Namespace) -> int:
    from .published import import_published, summary

    out = Path(args.output)
    _check_writable(out, args.force)
    print(summary(import_published(args.file, out), out))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ebv-gen``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "generate":
            return _cmd_generate(args)
        if args.command == "generate-subspaces":
            return _cmd_generate_subspaces(args)
        if args.command == "verify":
            return _cmd_verify(args)
        if args.command == "import":
            return _cmd_import(args)
        return _cmd_plot(args)
    except CLIError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

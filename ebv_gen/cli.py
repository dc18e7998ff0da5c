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


def _cmd_verify(args: argparse.Namespace) -> int:
    from .verify import describe, verify_file

    code, verdict = verify_file(args.file)
    if args.json:
        print(json.dumps(verdict))
    elif code == EXIT_OK:
        print(describe(args.file, verdict))
    else:
        print(f"{verdict['status']}: {verdict['error']}")
    return code


def _cmd_plot(args: argparse.Namespace) -> int:
    from .plot import plot_file

    out = Path(args.output)
    _check_writable(out, args.force, "figure")
    plot_file(args.file, out)
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

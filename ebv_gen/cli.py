"""The ``ebv-gen`` command line: ``generate``, ``generate-subspaces``, ``verify``, ``plot``,
``import``.

Exit codes: 0 success (``verify``: valid), 1 ``verify``: readable but invalid content,
2 bad input or unusable file (one line ``ebv-gen: error: ...`` on stderr, never a traceback),
130 / 143 interrupted by SIGINT (Ctrl-C) / SIGTERM (``128 +`` the signal number): after the first
signal the run stops within a tile and the best result so far is written, marked interrupted; a
second signal aborts at once without writing.

The work itself lives elsewhere: :func:`ebv_gen.generate`, :func:`ebv_gen.generate_subspaces`,
:func:`ebv_gen.verify_file`, :func:`ebv_gen.plot_file`, :mod:`ebv_gen.published`; this module
parses, checks the output before any work, handles the signals and draws the progress.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .launch import Launch, join_from_environment, leave
from .progress import Progress
from .signals import Abort, StopFlag, handle_signals

__all__ = ["main"]

PROG = "ebv-gen"

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT; SIGTERM gives 143


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
    g.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE.npy",
        help="output file (.npy); the report goes to FILE.json beside it",
    )
    g.add_argument(
        "--seed",
        type=_int_at_least("--seed", 0),
        default=0,
        metavar="S",
        help="seed of every random start (default 0; same seed, device and steps give the "
        "same file)",
    )
    g.add_argument(
        "--time-budget",
        type=_nonneg_float("--time-budget"),
        default=None,
        metavar="SEC",
        help="stop after SEC seconds (default: a step count scaled to the size)",
    )
    g.add_argument(
        "--steps",
        type=_int_at_least("--steps", 0),
        default=None,
        metavar="N",
        help="stop after N optimiser steps (default: scaled to the size; with --time-budget, "
        "whichever comes first)",
    )
    g.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)"
    )
    g.add_argument(
        "--checkpoint-every",
        type=_nonneg_float("--checkpoint-every", strict=True),
        default=60.0,
        metavar="SEC",
        help="save FILE.ckpt.pt every SEC seconds (default 60)",
    )
    g.add_argument(
        "--force",
        action="store_true",
        help="overwrite an existing output, and start afresh over an existing checkpoint",
    )
    g.add_argument(
        "--resume", action="store_true", help="continue from FILE.ckpt.pt (a note if none exists)"
    )
    g.add_argument(
        "--log-every",
        type=_nonneg_float("--log-every", strict=True),
        default=10.0,
        metavar="SEC",
        help="when stderr is not a terminal, a progress line every SEC seconds (default 10)",
    )
    g.add_argument("--quiet", action="store_true", help="print only the final report line")


_METHOD_HELP = (
    "auto: a provably optimal or near-optimal construction when one is known, else the search "
    "(the better of both); lse: the search alone; closed-form: an optimal construction or an "
    "error; construction: the best known construction; mub: mutually unbiased bases (lines); "
    "threshold: the published EBV algorithm (default auto)"
)


def build_parser() -> argparse.ArgumentParser:
    from grassmann import __version__

    from .generation import METHODS
    from .plot import FIGURE_FORMATS
    from .subspaces import METRICS

    parser = _Parser(
        prog=PROG,
        description="Generate and check Equiangular Basis Vectors (N unit vectors in R^d with "
        "small mutual coherence) and packings of subspaces (N k-dimensional subspaces of R^n "
        "far apart).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    g = sub.add_parser("generate", help="generate N x d class vectors into FILE.npy + FILE.json")
    g.add_argument("num", type=_int_at_least("NUM", 1), metavar="NUM", help="number of vectors N")
    g.add_argument("dim", type=_int_at_least("DIM", 1), metavar="DIM", help="dimension d")
    g.add_argument(
        "--mode",
        choices=["lines", "sphere"],
        default="lines",
        help="lines: minimise max |cos| (EBV, the default); sphere: minimise the signed max cos "
        "(spherical codes)",
    )
    g.add_argument("--method", choices=list(METHODS), default="auto", help=_METHOD_HELP)
    g.add_argument(
        "--threshold",
        type=_nonneg_float("--threshold"),
        default=None,
        help="hinge threshold of --method threshold (default 0.002, as the published script); "
        "an error with any other method",
    )
    _add_run_options(g)

    s = sub.add_parser(
        "generate-subspaces",
        help="generate N k-dimensional subspaces of R^n, far apart, into FILE.npy (N, n, k)",
    )
    s.add_argument("num", type=_int_at_least("NUM", 1), metavar="NUM", help="number of subspaces N")
    s.add_argument("n", type=_int_at_least("N", 1), metavar="N", help="ambient dimension n")
    s.add_argument("k", type=_int_at_least("K", 1), metavar="K", help="subspace dimension k < n")
    s.add_argument(
        "--metric",
        choices=list(METRICS),
        default="chordal",
        help="distance to maximise the minimum of (default chordal)",
    )
    _add_run_options(s)

    v = sub.add_parser("verify", help="check a .npy file of class vectors or subspace bases")
    v.add_argument("file", metavar="FILE.npy")
    v.add_argument(
        "--mode",
        choices=["lines", "sphere"],
        default=None,
        help="how to check class vectors (default: the sidecar's mode, else lines)",
    )
    v.add_argument("--json", action="store_true", help="print the verdict as JSON")

    i = sub.add_parser(
        "import",
        help="convert a published EBV pickle (eq_{d}_{N}.pkl, CUDA tensors welcome) into a "
        "checked FILE.npy + FILE.json; nothing in the pickle is run",
    )
    i.add_argument("file", metavar="FILE.pkl")
    i.add_argument("-o", "--output", required=True, metavar="FILE.npy", help="output file")
    i.add_argument("--force", action="store_true", help="overwrite an existing output")

    p = sub.add_parser(
        "plot",
        help="figure of a file: histogram of the pairwise |cos| (vectors) or of the pairwise "
        "chordal distances and smallest principal angles (subspaces), and the convergence curve",
    )
    p.add_argument("file", metavar="FILE.npy")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FIG",
        help="figure file; its extension picks the format: " + ", ".join(FIGURE_FORMATS),
    )
    p.add_argument(
        "--mode",
        choices=["lines", "sphere"],
        default=None,
        help="for class vectors (default: the sidecar's mode, else lines)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing figure")
    return parser


# ----------------------------------------------------------------------------- helpers


def _check_output(
    text: str, force: bool, suffixes: Sequence[str], option: str = "-o/--output"
) -> Path:
    """The output ``text`` as a path, checked before any work: not empty, not a directory, one
    of ``suffixes``, not existing unless ``force``, and its directory writable (a file is
    created there and removed, which catches read-only and pseudo file systems like ``/proc``).
    """
    import tempfile

    if not text.strip():
        raise CLIError(f"{option} is empty; give a file name ending in {' or '.join(suffixes)}")
    path = Path(text)
    if path.is_dir() or text.endswith(("/", os.sep)):
        raise CLIError(f"{option} {text!r} is a directory; give a file name inside it")
    if path.suffix.lower() not in suffixes:
        got = f"extension {path.suffix!r}" if path.suffix else "no extension"
        raise CLIError(f"{option} {text!r} has {got}; expected {', '.join(suffixes)}")
    if path.exists() and not force:
        raise CLIError(f"{option} {text!r} exists; pass --force to overwrite it")
    parent = path.parent
    if not parent.is_dir():
        raise CLIError(f"{option} {text!r}: directory {str(parent)!r} not found")
    if path.exists() and not os.access(path, os.W_OK):
        raise CLIError(f"{option} {text!r} cannot be overwritten: permission denied")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CLIError(
            f"{option} {text!r}: directory {str(parent)!r} is not writable (creating a file "
            f"there fails: {reason})"
        ) from None
    os.close(fd)
    os.unlink(probe)
    return path


def _note(args: argparse.Namespace, message: str) -> None:
    """One line on stderr, unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- commands


def _open_output(args: argparse.Namespace):
    """Check the output, the checkpoint and the device before any work: ``(output,
    checkpoint, device)``."""
    from .generation import resolve_device
    from .io import checkpoint_path

    ckpt = checkpoint_path(Path(args.output)) if args.output.strip() else None
    resuming = args.resume and ckpt is not None and ckpt.exists()
    out = _check_output(args.output, args.force or resuming, (".npy",))
    ckpt = checkpoint_path(out)
    if args.resume and not resuming:
        _note(args, f"--resume: no checkpoint {str(ckpt)!r}; starting from the beginning")
    if ckpt.exists() and not args.resume:
        if not args.force:
            raise CLIError(
                f"checkpoint {str(ckpt)!r} of an earlier run exists; pass --resume to continue "
                f"it, or --force to start afresh (it is then overwritten)"
            )
        _note(args, f"--force: starting afresh; the checkpoint {str(ckpt)!r} will be replaced")
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    return out, ckpt, device


#: Methods that run the optimiser (a plan line and progress); the others build a frame.
_SEARCHING = ("auto", "lse", "threshold")


def _run_and_save(
    args: argparse.Namespace,
    out: Path,
    ckpt: Path,
    device,
    generator,
    *,
    plan,
    bound: float,
    label: str,
    extra=None,
    main: bool = True,
) -> int:
    """Say what the run will do (``plan``), run ``generator(seed=..., device=...,
    time_budget=..., steps=..., <progress, checkpoint and stop keywords>)`` under the signal
    handlers with progress, save the result (``extra(result)`` added to the sidecar) and print
    the report line; exit code 0, or ``128 + signal`` when a signal stopped it (the best result
    so far is saved). ``main=False`` (a rank other than 0 under ``torchrun``): run, save and
    print nothing."""
    if plan.method in _SEARCHING and main:  # the others build a frame at once (or refuse the size)
        _note(args, plan.describe() + "; Ctrl-C stops and saves the best so far")
    bar = Progress(
        steps=plan.steps,
        time_budget=args.time_budget,
        bound=bound,
        label=label,
        enabled=not args.quiet and main,
        log_every=args.log_every,
    )
    flag = StopFlag()
    with handle_signals(flag):
        try:
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
        if not main:
            return 128 + flag.signal if result.interrupted and flag.signal else EXIT_OK
        overwrite = args.force or args.resume or out.exists() is False
        result.save(out, extra=extra(result) if extra is not None else None, overwrite=overwrite)
    print(result.report() + f"  -> {out}", flush=True)
    if result.interrupted:
        where = f"; continue with --resume (checkpoint {ckpt})" if ckpt.exists() else ""
        print(
            f"{PROG}: interrupted; best result so far written to {out}{where}",
            file=sys.stderr,
        )
        return 128 + (flag.signal or signal.SIGINT)
    return EXIT_OK


def _cmd_generate(args: argparse.Namespace) -> int:
    """``generate``: in one process, or on every rank of the group ``torchrun`` started."""
    if args.threshold is not None and args.method != "threshold":
        raise CLIError(
            f"--threshold {args.threshold:g} applies only to --method threshold, got "
            f"--method {args.method}"
        )
    launch = join_from_environment(args.device)  # torchrun: the group it describes
    try:
        return _generate(args, launch)
    except RuntimeError as exc:
        if launch.group is None:
            raise
        # a collective failed: another rank died or left; one line, and torchrun stops the rest
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CLIError(
            f"rank {launch.rank} of {launch.world}: the process group failed: {first}"
        ) from None
    finally:
        leave(launch)


def _generate(args: argparse.Namespace, launch: Launch) -> int:
    import grassmann

    from .generation import check_memory, generate
    from .plan import plan_run

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
        generate,
        args.num,
        args.dim,
        mode=args.mode,
        method=args.method,
        threshold=args.threshold,
        group=launch.group,
    )
    plan = plan_run(
        args.num,
        args.dim,
        mode=args.mode,
        device=device,
        method=args.method,
        steps=args.steps,
        time_budget=args.time_budget,
        what=f"{args.num} x {args.dim} {args.mode}",
    )
    return _run_and_save(
        args,
        out,
        ckpt,
        device,
        run,
        plan=plan,
        bound=bound.value,
        label="coherence",
        extra=extra,
        main=launch.is_main,
    )


def _cmd_generate_subspaces(args: argparse.Namespace) -> int:
    import grassmann

    from .plan import plan_run
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
    plan = plan_run(
        args.num,
        args.n,
        block=args.k,
        device=device,
        method="lse",
        steps=args.steps,
        time_budget=args.time_budget,
        what=f"{args.num} subspaces of Gr({args.n}, {args.k}) ({args.metric})",
    )
    bound = grassmann.subspace_lower_bound(args.num, args.n, args.k).value
    return _run_and_save(args, out, ckpt, device, run, plan=plan, bound=bound, label="min distance")


def _cmd_verify(args: argparse.Namespace) -> int:
    from .verify import describe, verify_file

    try:
        code, verdict = verify_file(args.file, mode=args.mode)
    except ValueError as exc:
        raise CLIError(str(exc).replace("mode=", "--mode ")) from None
    if args.json:
        print(json.dumps(verdict))
    elif code == EXIT_OK:
        print(describe(args.file, verdict))
    else:
        print(f"{verdict['status']}: {verdict['error']}")
    return code


def _cmd_plot(args: argparse.Namespace) -> int:
    from .plot import FIGURE_FORMATS, plot_file

    out = _check_output(args.output, args.force, tuple(FIGURE_FORMATS))
    try:
        plot_file(args.file, out, mode=args.mode)
    except ValueError as exc:
        raise CLIError(str(exc).replace("mode=", "--mode ")) from None
    print(f"wrote {out}")
    return EXIT_OK


def _cmd_import(args: argparse.Namespace) -> int:
    from .published import import_published, summary

    out = _check_output(args.output, args.force, (".npy",))
    print(summary(import_published(args.file, out), out))
    return EXIT_OK


_COMMANDS = {
    "generate": _cmd_generate,
    "generate-subspaces": _cmd_generate_subspaces,
    "verify": _cmd_verify,
    "import": _cmd_import,
    "plot": _cmd_plot,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ebv-gen``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            print(parser.format_help(), end="", file=sys.stderr)
            return EXIT_USAGE
        return _COMMANDS[args.command](args)
    except CLIError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.code
    except Abort as exc:
        name = signal.Signals(exc.signum).name
        print(f"{PROG}: {name} again: aborted, nothing written", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

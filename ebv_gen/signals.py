"""Signals of a generator run on the command line: the first SIGINT/SIGTERM asks the run to stop
and save the best result so far (the generator polls :class:`StopFlag`), a second one aborts at
once (:class:`Abort`)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

__all__ = ["Abort", "StopFlag", "handle_signals"]


class Abort(BaseException):
    """The second SIGINT/SIGTERM: stop at once, write nothing. Not a ``KeyboardInterrupt``,
    which the engine catches to return the best result so far."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class StopFlag:
    """The first SIGINT/SIGTERM sets the flag that the generator polls (it stops within a tile
    and the best result so far is saved) and says so on stderr; a second one raises
    :class:`Abort` at once."""

    def __init__(self, prog: str = "ebv-gen") -> None:
        self.prog = prog
        self.stop = False
        self.signal = 0

    def __call__(self) -> bool:
        return self.stop

    def handler(self, signum, frame) -> None:  # noqa: ARG002
        if self.stop:
            raise Abort(signum)
        self.stop = True
        self.signal = signum
        name = signal.Signals(signum).name
        _say(
            f"{self.prog}: {name}: stopping and saving the best result so far "
            f"(send it again to abort without saving)"
        )


def _say(text: str) -> None:
    """One line on stderr from a signal handler: written to the file descriptor with
    ``os.write``, because ``print`` would raise ``RuntimeError: reentrant call`` when the
    signal lands while the main code is writing to ``sys.stderr`` (seen under load)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a stream without a descriptor
        fd = None
    if fd is None:
        with contextlib.suppress(RuntimeError):
            print(text, file=sys.stderr, flush=True)
        return
    with contextlib.suppress(OSError):
        os.write(fd, (text + "\n").encode())


@contextlib.contextmanager
def handle_signals(flag: StopFlag) -> Iterator[None]:
    """Install ``flag.handler`` for SIGINT and SIGTERM (main thread, not on Windows) and
    restore the previous handlers on exit."""
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
    return threading.current_thread() is threading.main_thread()

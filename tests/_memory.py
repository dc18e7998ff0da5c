"""Peak resident memory that a call adds, measured in a fresh child process (Linux /proc).

Not ``resource.getrusage(...).ru_maxrss``: on Linux a child started by subprocess (fork/vfork +
exec) inherits the parent's high-water mark through exec, so in a full pytest run it reports
pytest's own ~1 GB (PyPI's CUDA torch), whatever the code under test does. The kernel's
per-process VmHWM (``/proc/self/status``) belongs to the new address space of the exec'ed
child, and writing "5" to ``/proc/self/clear_refs`` resets it to the current RSS
(Linux >= 4.0), so "reset, call, read VmHWM" is the peak resident memory the call added.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

PROBE_BYTES = 200_000_000

_CHILD = """
import json


def _vm_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field + " is not in /proc/self/status")


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _vm_kib("VmHWM")


{setup}

_base = _reset_peak()
_probe = b"\\x01" * {probe}  # written, so resident
del _probe
_probe_added = (_vm_kib("VmHWM") - _base) * 1024
_base = _reset_peak()
_value = ({call})
_added = (_vm_kib("VmHWM") - _base) * 1024
print(json.dumps([_probe_added, _added, _value]))
"""


def can_reset_peak_rss() -> bool:
    """Whether this process can reset its VmHWM (Linux >= 4.0 with /proc mounted)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        with open("/proc/self/status") as status:
            return any(line.startswith("VmHWM:") for line in status)
    except OSError:
        return False


def peak_rss_added(setup: str, call: str, *, timeout: float = 600) -> tuple[int, object]:
    """Bytes that evaluating the expression ``call`` adds to the peak RSS of a fresh process.

    The child runs ``setup`` (imports, the inputs, and a warm-up call at a small size so that
    lazily loaded library code and thread pools are not counted), checks that the measurement
    sees a known allocation of :data:`PROBE_BYTES` (so the test can fail), resets its VmHWM,
    evaluates ``call`` and reads VmHWM again. Returns ``(added_bytes, value)``, ``value`` being
    the call's result, which must be JSON-serialisable. Skips the calling test where
    ``/proc/self/clear_refs`` cannot be written (not Linux).
    """
    if not can_reset_peak_rss():
        pytest.skip("needs Linux /proc/self/clear_refs and VmHWM")
    script = _CHILD.format(setup=textwrap.dedent(setup), call=call, probe=PROBE_BYTES)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr
    probe, added, value = json.loads(out.stdout.splitlines()[-1])
    # the probe sees memory: PROBE_BYTES were written and freed between reset and read
    assert probe > 0.95 * PROBE_BYTES, probe
    return added, value

"""The ebv-gen command line: generate, verify, plot, errors, interrupts and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import ebv_gen
from ebv_gen.cli import main
from ebv_gen.io import checkpoint_path, sidecar_path


def _run_main(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _unit(n=8, d=4, seed=0):
    g = np.random.default_rng(seed).standard_normal((n, d))
    return (g / np.linalg.norm(g, axis=1, keepdims=True)).astype(np.float32)


def test_generate_writes_npy_and_sidecar(tmp_path, capsys):
    out = tmp_path / "e.npy"
    code, stdout, _ = _run_main(capsys, ["generate", "30", "5", "-o", str(out), "--steps", "40"])
    assert code == 0
    assert "coherence" in stdout and len(stdout.strip().splitlines()) == 1
    arr = np.load(out)
    assert arr.dtype == np.float64 and arr.shape == (30, 5)  # a small packing keeps float64
    side = json.loads(sidecar_path(out).read_text())
    for key in (
        "num", "dim", "mode", "coherence", "bound", "bound_name", "method", "seed",
        "steps", "seconds", "device", "sha256", "version", "history", "gap", "ratio",
        "mean_abs_cos", "quantiles",
    ):  # fmt: skip
        assert key in side, key
    assert side["steps"] == 40 and side["device"] == "cpu"
    assert not checkpoint_path(out).exists()


def test_generate_mub_method_reports_it(tmp_path, capsys):
    out = tmp_path / "m.npy"
    argv = ["generate", "1000", "100", "-o", str(out), "--method", "mub", "--quiet"]
    code, stdout, _ = _run_main(capsys, argv)
    assert code == 0 and "method mub" in stdout
    side = json.loads(sidecar_path(out).read_text())
    assert side["method"] == "mub" and side["coherence"] == 0.125 and side["steps"] == 0


def test_existing_output_needs_force(tmp_path, capsys):
    out = tmp_path / "e.npy"
    out.write_bytes(b"old")
    code, _, err = _run_main(capsys, ["generate", "6", "3", "-o", str(out)])
    assert code == 2 and "--force" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"old"
    code, _, _ = _run_main(capsys, ["generate", "6", "3", "-o", str(out), "--force"])
    assert code == 0 and np.load(out).shape == (6, 3)


def test_same_seed_same_bytes(tmp_path, capsys):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    for p in (a, b):
        assert main(["generate", "50", "6", "-o", str(p), "--steps", "30", "--seed", "7"]) == 0
    capsys.readouterr()
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["generate", "0", "3"], "NUM must be >= 1"),
        (["generate", "abc", "3"], "NUM must be an integer"),
        (["generate", "5", "-2"], "DIM"),
        (["generate", "5", "2.5"], "DIM must be an integer"),
        (["generate", "1", "3"], "NUM must be >= 2"),
        (["generate", "1000000000", "100000"], "GiB"),
        (["generate", "5", "3", "--time-budget", "-1"], "--time-budget"),
        (["generate", "5", "3", "--steps", "x"], "--steps"),
        (["generate", "5", "3", "--mode", "plane"], "mode"),
        (["generate", "5", "3", "--method", "sgd"], "method"),
        (["generate", "5", "3", "--device", "tpu"], "device"),
        (["bogus"], "invalid choice"),
        (["generate-subspaces", "8", "4"], "required"),
        (["generate-subspaces", "0", "4", "2"], "NUM must be >= 1"),
        (["generate-subspaces", "1", "4", "2"], "NUM must be >= 2"),
        (["generate-subspaces", "8", "4", "4"], "K must be < N"),
        (["generate-subspaces", "8", "4", "5"], "K must be < N"),
        (["generate-subspaces", "8", "4", "0"], "K must be >= 1"),
        (["generate-subspaces", "8", "x", "2"], "N must be an integer"),
        (["generate-subspaces", "8", "4", "1.5"], "K must be an integer"),
        (["generate-subspaces", "8", "4", "2", "--metric", "geodesic"], "metric"),
        (["generate-subspaces", "8", "4", "2", "--steps", "-1"], "--steps"),
        (["generate-subspaces", "8", "4", "2", "--device", "tpu"], "device"),
        (["generate-subspaces", "100000", "4096", "64"], "GiB"),
        (["generate", "5000", "100", "--method", "mub"], "at most 2148"),
    ],
)
def test_bad_generate_input_is_one_line_exit_2(tmp_path, capsys, argv, needle):
    if argv and argv[0].startswith("generate"):
        argv = [*argv, "-o", str(tmp_path / "x.npy")]
    code, _, err = _run_main(capsys, argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ebv-gen: error:"), err
    assert needle in err
    assert not (tmp_path / "x.npy").exists()


def test_generate_subspaces_writes_bases_and_sidecar_and_needs_force(tmp_path, capsys):
    out = tmp_path / "s.npy"
    argv = ["generate-subspaces", "12", "5", "2", "-o", str(out), "--steps", "60"]
    code, stdout, _ = _run_main(capsys, argv)
    assert code == 0 and len(stdout.strip().splitlines()) == 1
    assert "Gr(5, 2)" in stdout and "min distance" in stdout
    arr = np.load(out)
    assert arr.dtype == np.float32 and arr.shape == (12, 5, 2)
    side = json.loads(sidecar_path(out).read_text())
    assert side["kind"] == "subspaces" and side["steps"] == 60 and side["metric"] == "chordal"
    assert (side["num"], side["n"], side["k"]) == (12, 5, 2)
    assert not checkpoint_path(out).exists()
    before = out.read_bytes()
    code, _, err = _run_main(capsys, [*argv, "--seed", "1"])
    assert code == 2 and "--force" in err and out.read_bytes() == before
    code, _, _ = _run_main(capsys, [*argv, "--seed", "1", "--force"])
    assert code == 0 and out.read_bytes() != before


def test_unwritable_output_fails_before_work(tmp_path, capsys):
    t0 = time.perf_counter()
    code, _, err = _run_main(
        capsys, ["generate", "3000", "64", "-o", str(tmp_path / "no" / "such" / "x.npy")]
    )
    assert code == 2 and "not found" in err
    assert time.perf_counter() - t0 < 5
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that can write anywhere")
        code, _, err = _run_main(capsys, ["generate", "6", "3", "-o", str(ro / "x.npy")])
        assert code == 2 and "not writable" in err
    finally:
        ro.chmod(0o700)


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the no-CUDA message")
def test_cuda_without_cuda_exit_2(tmp_path, capsys):
    code, _, err = _run_main(
        capsys, ["generate", "6", "3", "-o", str(tmp_path / "x.npy"), "--device", "cuda"]
    )
    assert code == 2 and "CUDA is not available" in err


def _craft(tmp_path, kind):
    p = tmp_path / f"{kind}.npy"
    if kind == "valid":
        assert main(["generate", "12", "4", "-o", str(p), "--steps", "20", "--quiet"]) == 0
    elif kind == "valid_nosidecar":
        np.save(p, _unit())
    elif kind == "truncated":
        np.save(p, _unit(100, 8))
        p.write_bytes(p.read_bytes()[:-37])
    elif kind == "pickled":
        np.save(p, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    elif kind == "int":
        np.save(p, np.ones((4, 3), dtype=np.int32))
    elif kind == "3d":
        np.save(p, np.ones((2, 3, 4), dtype=np.float32))
    elif kind == "corrupt":
        p.write_bytes(b"\x93NUMPY\x01\x00garbage")
    elif kind == "missing":
        pass
    elif kind == "nonunit":
        v = _unit()
        v[0] *= 2
        np.save(p, v)
    elif kind == "nan":
        v = _unit()
        v[1, 1] = np.inf
        np.save(p, v)
    elif kind == "tampered":
        assert main(["generate", "12", "4", "-o", str(p), "--steps", "20", "--quiet"]) == 0
        v = np.load(p)
        v[[0, 1]] = v[[1, 0]]
        np.save(p, v)
    elif kind.startswith("sub_"):
        _craft_subspaces(p, kind[4:])
    return p


def _bases(num=6, n=5, k=2, seed=0):
    g = np.random.default_rng(seed).standard_normal((num, n, k))
    return np.linalg.qr(g)[0].astype(np.float32)


def _craft_subspaces(p, kind):
    """Subspace files for ``verify``: ``(N, n, k)`` stacks, good and bad."""
    if kind in ("valid", "tampered", "claim", "kind"):
        argv = ["generate-subspaces", "8", "4", "2", "-o", str(p), "--steps", "20", "--quiet"]
        assert main(argv) == 0
    if kind == "valid_nosidecar":
        np.save(p, _bases())
    elif kind == "nonorthonormal":
        b = _bases()
        b[2, :, 1] += 0.01 * b[2, :, 0]
        np.save(p, b)
    elif kind == "nan":
        b = _bases()
        b[0, 0, 0] = np.nan
        np.save(p, b)
    elif kind == "tampered":  # a valid packing, but not the one the sidecar describes
        np.save(p, np.load(p)[::-1].copy())
    elif kind in ("claim", "kind"):  # the sidecar's statement does not hold
        side = json.loads(sidecar_path(p).read_text())
        side.update({"min_distance": side["min_distance"] + 0.01} if kind == "claim" else {})
        side.update({"kind": "vectors"} if kind == "kind" else {})
        sidecar_path(p).write_text(json.dumps(side))
    elif kind == "k_gt_n":
        np.save(p, np.ones((3, 2, 4), dtype=np.float32))
    elif kind == "4d":
        np.save(p, np.ones((2, 3, 4, 1), dtype=np.float32))
    elif kind == "truncated":
        np.save(p, _bases(50, 8, 3))
        p.write_bytes(p.read_bytes()[:-29])


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("valid", 0),
        ("valid_nosidecar", 0),
        ("truncated", 2),
        ("pickled", 2),
        ("int", 2),
        ("3d", 2),
        ("corrupt", 2),
        ("missing", 2),
        ("nonunit", 1),
        ("nan", 1),
        ("tampered", 1),
        ("sub_valid", 0),
        ("sub_valid_nosidecar", 0),
        ("sub_nonorthonormal", 1),
        ("sub_nan", 1),
        ("sub_tampered", 1),
        ("sub_claim", 1),
        ("sub_kind", 1),
        ("sub_k_gt_n", 2),
        ("sub_4d", 2),
        ("sub_truncated", 2),
    ],
)
def test_verify_exit_codes(tmp_path, capsys, kind, code):
    p = _craft(tmp_path, kind)
    capsys.readouterr()
    got, out, _ = _run_main(capsys, ["verify", str(p)])
    assert got == code, out
    assert len(out.strip().splitlines()) == 1
    assert out.startswith({0: "valid", 1: "invalid", 2: "unusable"}[code])
    got, out, _ = _run_main(capsys, ["verify", str(p), "--json"])
    verdict = json.loads(out)
    assert got == code and verdict["valid"] == (code == 0)
    if kind == "valid":
        assert (
            abs(verdict["coherence"] - json.loads(sidecar_path(p).read_text())["coherence"]) < 1e-12
        )
    if kind == "sub_valid":
        side = json.loads(sidecar_path(p).read_text())
        assert verdict["kind"] == "subspaces" and (verdict["n"], verdict["k"]) == (4, 2)
        assert abs(verdict["min_distance"] - side["min_distance"]) < 1e-12
        assert verdict["bound_name"] == side["bound_name"] == "rankin_simplex"


def test_plot_writes_png(tmp_path, capsys):
    p = _craft(tmp_path, "valid")
    fig = tmp_path / "fig.png"
    code, _, _ = _run_main(capsys, ["plot", str(p), "-o", str(fig)])
    assert code == 0
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = _run_main(
        capsys, ["plot", str(_craft(tmp_path, "pickled")), "-o", str(tmp_path / "g.png")]
    )
    assert code == 2 and "pickled" in err


def _spawn(args, tmp_path):
    return subprocess.Popen(
        [sys.executable, "-m", "ebv_gen", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )


def _wait_for(path, proc, timeout=60.0):
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, "checkpoint never appeared"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_saves_best_so_far_and_exits_130(tmp_path, sig):
    out = tmp_path / "i.npy"
    proc = _spawn(
        [
            "generate",
            "1500",
            "24",
            "-o",
            str(out),
            "--steps",
            "100000",
            "--checkpoint-every",
            "0.2",
        ],
        tmp_path,
    )
    _wait_for(checkpoint_path(out), proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stderr  # 130 for SIGINT, 143 for SIGTERM
    assert "Traceback" not in stderr
    assert f"{signal.Signals(sig).name}: stopping and saving the best result so far" in stderr
    side = json.loads(sidecar_path(out).read_text())
    assert side["interrupted"] is True and 0 < side["steps"] < 100000
    assert main(["verify", str(out)]) == 0
    assert checkpoint_path(out).exists()  # kept for --resume


@pytest.mark.slow
@pytest.mark.parametrize(
    "command", [["generate", "1500", "24"], ["generate-subspaces", "200", "24", "4"]]
)
def test_resume_after_sigkill_continues_from_checkpoint(tmp_path, command):
    out = tmp_path / "r.npy"
    args = [*command, "-o", str(out), "--steps", "300", "--checkpoint-every", "0.3"]
    proc = _spawn(args, tmp_path)
    ckpt = checkpoint_path(out)
    _wait_for(ckpt, proc)
    time.sleep(0.4)
    proc.kill()  # SIGKILL: no handler runs
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()  # nothing written yet, and no partial file
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    saved = torch.load(ckpt, weights_only=True)["state"]["step"]
    assert saved > 0
    done = subprocess.run(
        [sys.executable, "-m", "ebv_gen", *args, "--resume", "--quiet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    side = json.loads(sidecar_path(out).read_text())
    assert side["resumed_from_step"] >= saved and side["steps"] == 300
    assert not ckpt.exists()
    assert main(["verify", str(out)]) == 0


def test_python_m_help():
    done = subprocess.run(
        [sys.executable, "-m", "ebv_gen", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "generate" in done.stdout


# ----------------------------------------------------------------------------- issue 14


def test_no_command_prints_usage_and_version_is_supported(capsys):
    code, out, err = _run_main(capsys, [])
    assert code == 2 and err.startswith("usage: ebv-gen") and "generate-subspaces" in err
    assert "--version" in err
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    out, _ = capsys.readouterr()
    assert exc.value.code == 0 and out.strip() == f"ebv-gen {ebv_gen.__version__}"


def test_every_generate_option_has_help(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out, _ = capsys.readouterr()
    for option in ("--mode", "--method", "--seed", "--steps", "--threshold", "--log-every"):
        line = next(x for x in out.splitlines() if x.strip().startswith(option))
        rest = out[out.index(line) + len(line) :].split("\n  -")[0]
        assert len((line.split(maxsplit=2)[2:] or [""])[0] + rest.strip()) > 10, option
    assert "published EBV algorithm" in out and "spherical codes" in out


@pytest.mark.parametrize(
    ("output", "needle"),
    [
        ("", "-o/--output is empty"),
        ("{dir}", "is a directory"),
        ("{dir}/", "is a directory"),
        ("{dir}/x.txt", "has extension '.txt'; expected .npy"),
        ("{dir}/x", "has no extension"),
        ("/proc/x.npy", "is not writable"),
    ],
)
def test_bad_output_path_is_refused_before_any_work(tmp_path, capsys, output, needle):
    t0 = time.perf_counter()
    output = output.format(dir=tmp_path)
    code, _, err = _run_main(capsys, ["generate", "3000", "64", "-o", output])
    assert code == 2 and needle in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ebv-gen: error: -o/--output")
    assert ".tmp" not in err and ".probe" not in err  # no hidden temporary file named
    assert time.perf_counter() - t0 < 5
    assert list(tmp_path.iterdir()) == []


def test_threshold_without_threshold_method_is_an_error(tmp_path, capsys):
    argv = ["generate", "6", "3", "-o", str(tmp_path / "x.npy"), "--threshold", "0.1"]
    code, _, err = _run_main(capsys, argv)
    assert code == 2 and "--threshold 0.1 applies only to --method threshold" in err
    code, _, _ = _run_main(capsys, [*argv, "--method", "threshold", "--steps", "5"])
    assert code == 0


def test_resume_without_checkpoint_says_so_and_existing_checkpoint_is_not_silently_lost(
    tmp_path, capsys
):
    out = tmp_path / "r.npy"
    argv = ["generate", "20", "4", "-o", str(out), "--steps", "10"]
    code, _, err = _run_main(capsys, [*argv, "--resume"])
    assert code == 0 and "--resume: no checkpoint" in err and "starting from the beginning" in err
    ckpt = checkpoint_path(out)
    ckpt.write_bytes(b"an earlier run's state")
    code, _, err = _run_main(capsys, [*argv, "--force"])  # without --resume or --force: refused
    assert code == 0 and "starting afresh" in err
    ckpt.write_bytes(b"an earlier run's state")
    out.unlink()
    code, _, err = _run_main(capsys, argv)
    assert code == 2 and "pass --resume to continue it, or --force" in err
    assert ckpt.read_bytes() == b"an earlier run's state"


def test_plan_line_then_periodic_progress_lines_when_stderr_is_a_log(tmp_path):
    out = tmp_path / "p.npy"
    done = subprocess.run(
        [sys.executable, "-m", "ebv_gen", "generate", "300", "16", "-o", str(out)]
        + ["--steps", "400", "--log-every", "0.05"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("ebv-gen: 300 x 16 lines on cpu, method auto, budget 400 steps")
    assert "memory ~" in lines[0] and "search in float" in lines[0]
    progress = [x for x in lines[1:] if x.startswith("ebv-gen: step ")]
    assert len(progress) >= 2, done.stderr
    assert "/400 (" in progress[-1] and "ETA" in progress[-1] and "bound" in progress[-1]
    quiet = subprocess.run(
        [sys.executable, "-m", "ebv_gen", "generate", "300", "16", "-o", str(out), "--force"]
        + ["--steps", "20", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_progress_draws_a_bar_with_total_on_a_terminal(monkeypatch, capsys):
    from ebv_gen.progress import Progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    bar = Progress(
        steps=50, time_budget=None, bound=0.1, label="coherence", enabled=True, log_every=10
    )
    for step in (10, 20):
        bar(step, 0.3, 0.2)
    assert bar.bar is not None and bar.bar.total == 50 and bar.bar.n == 20
    bar.close()
    timed = Progress(
        steps=None, time_budget=30.0, bound=0.1, label="coherence", enabled=True, log_every=10
    )
    timed(1, 0.3, 0.2)
    assert timed.bar.total == 30.0 and timed.by_time
    timed.close()
    capsys.readouterr()


#: ``ebv-gen generate`` with an engine that keeps working after the stop flag is set (as a long
#: tile would): the second signal must abort it.
_STUBBORN = """
import sys, time
import ebv_gen.generation
def generate(*args, callback=None, should_stop=None, **kw):
    step = 0
    while True:
        step += 1
        callback(step, 0.5, 0.5)
        if should_stop():
            print("flag seen", file=sys.stderr, flush=True)
        time.sleep(0.02)
ebv_gen.generation.generate = generate
from ebv_gen.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_second_signal_aborts_at_once_without_writing(tmp_path, sig):
    out = tmp_path / "a.npy"
    proc = subprocess.Popen(
        [sys.executable, "-c", _STUBBORN, "generate", "40", "8", "-o", str(out), "--steps", "9"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    seen = []
    while not any("step 1/9" in x for x in seen):  # the run is under way
        seen.append(proc.stderr.readline())
        assert seen[-1], seen
    proc.send_signal(sig)
    while not any("flag seen" in x for x in seen):
        seen.append(proc.stderr.readline())
        assert seen[-1], seen
    t0 = time.perf_counter()
    proc.send_signal(sig)
    _, rest = proc.communicate(timeout=30)
    stderr = "".join(seen) + rest
    assert time.perf_counter() - t0 < 5
    assert proc.returncode == 128 + sig, stderr
    assert f"{signal.Signals(sig).name}: stopping and saving the best result so far" in stderr
    assert "Traceback" not in stderr and "aborted, nothing written" in stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_stop_flag_sets_on_first_signal_and_aborts_on_second(capsys):
    from ebv_gen.signals import Abort, StopFlag

    flag = StopFlag()
    assert not flag()
    flag.handler(signal.SIGTERM, None)
    assert flag() and flag.signal == signal.SIGTERM
    assert "SIGTERM: stopping and saving" in capsys.readouterr().err
    with pytest.raises(Abort) as exc:
        flag.handler(signal.SIGTERM, None)
    assert exc.value.signum == signal.SIGTERM
    assert not isinstance(exc.value, KeyboardInterrupt)  # the engine must not swallow it


def _sphere_file(tmp_path, sidecar=True):
    p = tmp_path / "s.npy"
    argv = ["generate", "6", "3", "--mode", "sphere", "-o", str(p), "--quiet"]
    assert main([*argv, "--method", "construction"]) == 0
    if not sidecar:
        sidecar_path(p).unlink()
    return p


def test_verify_mode_for_a_sphere_file_without_sidecar(tmp_path, capsys):
    p = _sphere_file(tmp_path, sidecar=False)  # the octahedron: cos 0 at best, -1 for opposites
    capsys.readouterr()
    code, out, _ = _run_main(capsys, ["verify", str(p)])
    assert code == 1 and "the same line" in out  # as lines, opposite points are one line
    code, out, _ = _run_main(capsys, ["verify", str(p), "--mode", "sphere"])
    assert code == 0 and "(sphere)" in out and "coherence 0.000000" in out
    with_side = _sphere_file(tmp_path / "w" if (tmp_path / "w").mkdir() is None else tmp_path)
    capsys.readouterr()
    code, out, _ = _run_main(capsys, ["verify", str(with_side)])
    assert code == 0 and "(sphere)" in out
    code, _, err = _run_main(capsys, ["verify", str(with_side), "--mode", "lines"])
    assert code == 2 and "--mode 'lines' but the sidecar" in err


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: np.repeat(_unit(3, 4), 2, axis=0), "rows 0 and 1 are the same line"),
        (lambda: np.concatenate([_unit(4, 4), -_unit(1, 4)]), "are the same line"),
        (lambda: _unit(1, 4), "holds a single vector"),
        (lambda: np.concatenate([_bases()[:3], _bases()[:1]]), "span the same subspace"),
        (lambda: _bases(1), "holds a single subspace"),
    ],
)
def test_duplicates_and_single_rows_are_invalid(tmp_path, capsys, make, needle):
    p = tmp_path / "d.npy"
    np.save(p, make())
    code, out, _ = _run_main(capsys, ["verify", str(p)])
    assert code == 1 and out.startswith("invalid: ") and needle in out, out


def test_float16_copy_of_a_valid_file_is_valid(tmp_path, capsys):
    p = _craft(tmp_path, "valid")
    half = tmp_path / "half.npy"
    np.save(half, np.load(p).astype(np.float16))
    capsys.readouterr()
    code, out, _ = _run_main(capsys, ["verify", str(half)])
    assert code == 0, out


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "unusable: no such file: "),
        ("nan", "holds 1 NaN or infinite entry (the first at index (1, 1))"),
        ("sub_4d", "expected 2-D or 3-D"),
    ],
)
def test_verify_messages_read_plainly(tmp_path, capsys, kind, message):
    p = _craft(tmp_path, kind)
    capsys.readouterr()
    _, out, _ = _run_main(capsys, ["verify", str(p)])
    assert message in out and "path:" not in out, out


def test_verify_json_uses_the_sidecar_key_names(tmp_path, capsys):
    for kind, keys in (
        ("valid", ("coherence", "bound", "bound_name", "min_angle_rad", "min_angle_deg")),
        ("sub_valid", ("min_distance", "bound", "bound_name", "min_angle_rad", "min_angle_deg")),
    ):
        p = _craft(tmp_path, kind)
        capsys.readouterr()
        _, out, _ = _run_main(capsys, ["verify", str(p), "--json"])
        verdict, side = json.loads(out), json.loads(sidecar_path(p).read_text())
        for key in keys:
            assert verdict[key] == pytest.approx(side[key], abs=1e-9) or verdict[key] == side[key]
        assert verdict["kind"] == side["kind"]


def test_auto_with_a_near_bound_construction_plans_no_search():
    from ebv_gen.plan import plan_run

    # unbiased bases of R^4096: 1/64, 1.02 x Welch: auto builds them at once
    plan = plan_run(100_000, 4096, device=torch.device("cpu"), method="auto", steps=None,
                    time_budget=None, what="100000 x 4096 lines")  # fmt: skip
    assert plan.method == "construction"


def test_plan_of_a_large_run_names_memory_and_the_matrix_product_time():
    from ebv_gen.plan import format_duration, plan_run

    plan = plan_run(
        100_000,
        4096,
        device=torch.device("cpu"),
        method="lse",
        steps=None,
        time_budget=None,
        what="100000 x 4096 lines",
    )
    line = plan.describe()
    assert plan.dtype == torch.float32 and plan.default_steps and plan.steps >= 200
    assert plan.step_seconds is not None and plan.step_seconds > 0
    assert "100000 x 4096 lines on cpu, method lse" in line and "(default)" in line
    assert "GiB" in line and "matrix products ~" in line
    assert [format_duration(s) for s in (0.5, 42, 425, 7980)] == [
        "0.5 s",
        "42 s",
        "7m 05s",
        "2h 13m",
    ]


def test_verify_file_takes_paths_and_names_a_bad_argument(tmp_path):
    p = _craft(tmp_path, "valid_nosidecar")
    code, verdict = ebv_gen.verify_file(p)
    assert code == 0 and verdict["file"] == str(p) and verdict["mode_from"] == "default"
    with pytest.raises(TypeError, match="path must be a str or os.PathLike, got int"):
        ebv_gen.verify_file(3)
    with pytest.raises(ValueError, match="mode must be one of"):
        ebv_gen.verify_file(p, mode="plane")


def test_the_first_signal_says_so_through_the_descriptor_not_print(monkeypatch):
    # print from a handler raises "reentrant call" when the signal lands mid-write to stderr
    import os as _os

    from ebv_gen.signals import StopFlag

    written = []
    monkeypatch.setattr(_os, "write", lambda fd, data: written.append((fd, data)) or len(data))
    monkeypatch.setattr(sys, "stderr", open(_os.devnull, "w"))  # noqa: SIM115
    try:
        flag = StopFlag()
        flag.handler(signal.SIGINT, None)
        assert flag() and flag.signal == signal.SIGINT
        assert written and written[0][0] == sys.stderr.fileno()
        assert b"SIGINT: stopping and saving the best result so far" in written[0][1]
    finally:
        sys.stderr.close()


def test_a_failed_collective_under_torchrun_is_one_line(monkeypatch, tmp_path, capsys):
    from ebv_gen import cli
    from ebv_gen.launch import Launch

    monkeypatch.setattr(cli, "join_from_environment", lambda device: Launch(object(), 1, 2, "gloo"))
    monkeypatch.setattr(cli, "leave", lambda launch: None)

    def broken(args, launch):
        raise RuntimeError("[gloo/pair.cc:553] Connection closed by peer\nmore detail")

    monkeypatch.setattr(cli, "_generate", broken)
    code = cli.main(["generate", "20", "4", "-o", str(tmp_path / "a.npy")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "rank 1 of 2: the process group failed: [gloo/pair.cc:553] Connection closed" in err[0]

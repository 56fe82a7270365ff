"""The fault matrix of `kumo-edge run` / `detect`: every bad input or output path gives one line
on stderr and exit code 1, leaves nothing half-written, never touches the input, and a killed
run's leftovers are removed by the next run. Runs on the shipped models (no torch needed)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kumo_edge.cli import sample_scene_path

ROOT = Path(__file__).resolve().parents[1]


def _kumo(*args: object, stdin: bytes | None = None, cwd: Path | None = None):  # noqa: ANN202
    return subprocess.run(
        [sys.executable, "-m", "kumo_edge.cli", *map(str, args)],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        timeout=300,
    )


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture()
def scene(tmp_path: Path) -> Path:
    p = tmp_path / "in.tif"
    shutil.copy(sample_scene_path(), p)
    return p


def _files(d: Path) -> set[str]:
    return {p.name for p in d.rglob("*")}


ROWS = {
    "mask is the output": lambda d, s: ["run", s, d / "o.tif", "--mask", d / "o.tif"],
    "output is the input": lambda d, s: ["run", s, s, "--overwrite"],
    "mask is the input": lambda d, s: ["detect", s, "--mask", s, "--overwrite"],
    "report is the mask": lambda d, s: [
        "detect",
        s,
        "--mask",
        d / "m.tif",
        "--report",
        d / "m.tif",
    ],
    "output folder missing": lambda d, s: ["run", s, d / "nope" / "o.tif"],
    "output is a folder": lambda d, s: ["run", s, d, "--overwrite"],
    "scale zero": lambda d, s: ["run", s, d / "o.tif", "--scale", "0"],
    "scale negative": lambda d, s: ["run", s, d / "o.tif", "--scale", "-1e-4"],
    "reflectance shifted negative": lambda d, s: ["run", s, d / "o.tif", "--offset", "-0.3"],
    "bil option on a file": lambda d, s: ["run", s, d / "o.tif", "--bil-width", "10"],
    "profile and wavelengths": lambda d, s: [
        "detect",
        s,
        "--mask",
        d / "m.tif",
        "--profile",
        "rgbn",
        "--wavelengths",
        "1,2,3,4",
    ],  # fmt: skip
    "profile with another band count": lambda d, s: [
        "detect",
        s,
        "--mask",
        d / "m.tif",
        "--profile",
        "rgbn",
    ],  # fmt: skip
}


@pytest.mark.parametrize("row", sorted(ROWS))
def test_fault_gives_one_line_and_leaves_nothing(row: str, tmp_path: Path, scene: Path) -> None:
    before, digest = _files(tmp_path), _digest(scene)
    r = _kumo(*ROWS[row](tmp_path, scene))
    err = r.stderr.decode().strip().splitlines()
    assert r.returncode == 1, (row, r.returncode, r.stderr.decode()[-500:])
    assert len(err) == 1 and err[0].startswith("Error: "), err
    assert _files(tmp_path) == before  # nothing written, nothing half-written
    assert _digest(scene) == digest  # the input untouched


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_folder(tmp_path: Path, scene: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        r = _kumo("run", scene, ro / "o.tif")
        assert r.returncode == 1 and "not writable" in r.stderr.decode()
        assert not list(ro.iterdir())
    finally:
        ro.chmod(0o700)


def test_complex_bil_dtype_is_refused(tmp_path: Path) -> None:
    r = _kumo(
        "detect", "-", "--mask", tmp_path / "m.tif", "--profile", "rgbn", "--bil-width", "8",
        "--bil-dtype", "complex64", stdin=np.zeros(64, "<c8").tobytes(),
    )  # fmt: skip
    assert r.returncode == 1 and "--bil-dtype" in r.stderr.decode()
    assert len(r.stderr.decode().strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_a_killed_runs_leftovers_are_removed_by_the_next_run(tmp_path: Path, scene: Path) -> None:
    # a temporary file as a run killed with -9 leaves it: its process (pid) is gone
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    stale = tmp_path / f".m.tif.kumo{p.pid}.abc.partial"
    stale.write_bytes(b"half a file")
    live = tmp_path / f".m.tif.kumo{os.getpid()}.abc.partial"  # a running process's: kept
    live.write_bytes(b"in progress")
    r = _kumo("detect", scene, "--mask", tmp_path / "m.tif")
    assert r.returncode == 0, r.stderr.decode()[-500:]
    assert not stale.exists() and live.exists()
    assert (tmp_path / "m.tif").exists()


def test_sigterm_discards_outputs(tmp_path: Path) -> None:
    # a BIL stream that never ends: the run waits on stdin until SIGTERM
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kumo_edge.cli",
            "detect",
            "-",
            "--mask",
            str(tmp_path / "m.tif"),
            "--profile",
            "rgbn",
            "--bil-width",
            "64",
            "--strip-lines",
            "8",
        ],  # fmt: skip
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert p.stdin is not None
    p.stdin.write((np.full((16, 4, 64), 3000, "<u2")).tobytes())
    p.stdin.flush()
    import time

    time.sleep(8)  # models loaded, first strips through
    p.terminate()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err.decode()[-500:]
    assert "interrupted" in err.decode()
    assert not list(tmp_path.iterdir())


def test_a_disk_too_small_is_refused_before_any_work(
    scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kumo_edge.errors import KumoError
    from kumo_edge.process import process

    real = shutil.disk_usage
    monkeypatch.setattr(
        shutil, "disk_usage", lambda p: real(p)._replace(free=50_000)
    )  # 50 kB left: the 4-band uint16 output needs ~1.7 MB uncompressed
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(
        KumoError, match=r": 49 kB free, the outputs need at least .* uncompressed\)"
    ):
        process(scene, out / "c.tif", out / "m.tif", out / "r.json")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("gdal_threads", [None, "2"])
def test_disk_full_mid_run_is_one_error_and_leaves_nothing(
    scene: Path, tmp_path: Path, gdal_threads: str | None
) -> None:
    """Also with GDAL_NUM_THREADS set by the user: GDAL's compression worker threads would
    swallow the write error (measured: exit 0 and a truncated output), so outputs are always
    compressed in the writing thread."""
    import os
    import resource
    import signal

    def limit() -> None:  # files may not grow past 200 kB: writes fail as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    before = _digest(scene)
    out = tmp_path / "o"
    out.mkdir()
    r = subprocess.run(
        [sys.executable, "-m", "kumo_edge.cli", "run", scene, out / "c.tif", "--mask",
         out / "m.tif", "--report", out / "r.json"],
        capture_output=True, text=True, preexec_fn=limit, timeout=300,
        env={**os.environ, **({"GDAL_NUM_THREADS": gdal_threads} if gdal_threads else {})},
    )  # fmt: skip
    assert r.returncode == 1
    ours = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert len(ours) == 1 and "c.tif: write failed" in ours[0], r.stderr
    assert "Traceback" not in r.stderr
    assert list(out.iterdir()) == [] and _digest(scene) == before


def test_disk_full_on_stdin_is_one_error_and_leaves_nothing(tmp_path: Path) -> None:
    import resource
    import signal

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    bil = (np.random.default_rng(0).random((300, 4, 200)) * 3000 + 500).astype(np.uint16)
    r = subprocess.run(
        [sys.executable, "-m", "kumo_edge.cli", "run", "-", tmp_path / "c.tif", "--profile",
         "rgbn", "--bil-width", "200", "--mask", tmp_path / "m.tif"],
        input=bil.tobytes(), capture_output=True, preexec_fn=limit, timeout=300,
    )  # fmt: skip
    err = r.stderr.decode()
    assert r.returncode == 1
    ours = [ln for ln in err.splitlines() if ln.startswith("Error:")]
    assert len(ours) == 1 and "cannot spool the stream" in ours[0], err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []

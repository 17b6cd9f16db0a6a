"""Shared fixtures: tiny generated videos, published-format checkpoints, real videos."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pytest
import torch

SHARED_VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "videos"


def shared_video(name: str) -> Path:
    """A file from ../shared/videos, or skip the test when that folder is absent."""
    path = SHARED_VIDEOS / name
    if not path.exists():
        pytest.skip(f"{path} not present (../shared/videos is optional)")
    return path


def make_video(path: Path, n_frames: int, size: tuple[int, int] = (64, 48), fps: int = 25,
               codec: str = "libx264", frame_fn: Callable[[int], np.ndarray] | None = None,
               rotate: int | None = None) -> Path:
    """Write a small video with PyAV. ``size`` is (width, height); ``frame_fn(i)`` gives
    an (H, W, 3) uint8 RGB frame (default: a moving gradient that differs per frame)."""
    import av

    w, h = size
    if frame_fn is None:
        yy, xx = np.mgrid[0:h, 0:w]

        def frame_fn(i: int) -> np.ndarray:
            base = ((xx * 4 + yy * 2 + i * 7) % 256).astype(np.uint8)
            return np.stack([base, np.roll(base, i, axis=1), 255 - base], axis=-1)

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "10", "preset": "ultrafast"}
        if rotate is not None:
            stream.metadata["rotate"] = str(rotate)
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(frame_fn(i), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture
def video_factory(tmp_path) -> Callable[..., Path]:
    counter = {"n": 0}

    def factory(n_frames: int, **kw) -> Path:
        counter["n"] += 1
        ext = kw.pop("ext", ".mp4")
        return make_video(tmp_path / f"v{counter['n']}{ext}", n_frames, **kw)

    return factory


@pytest.fixture(scope="module")
def r10_weights(tmp_path_factory):
    """A resnet-10-kinetics.pth in the published format with random weights (seed 10)."""
    from reference_hara import hara_resnet, published_checkpoint, randomize_

    path = tmp_path_factory.mktemp("w") / "resnet-10-kinetics.pth"
    torch.save(published_checkpoint(randomize_(hara_resnet(10, "A"), seed=10), "resnet-10"), path)
    return str(path)


@pytest.fixture(scope="session")
def r34_checkpoint(tmp_path_factory):
    """A resnet-34-kinetics.pth in the published format with random weights, and the
    original-code model that produced it."""
    from reference_hara import hara_resnet, published_checkpoint, randomize_

    ref = randomize_(hara_resnet(34, "A"), seed=34)
    path = tmp_path_factory.mktemp("ckpt") / "resnet-34-kinetics.pth"
    torch.save(published_checkpoint(ref, "resnet-34"), path)
    return path, ref


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Never touch the user's real cache; never download in tests by accident."""
    monkeypatch.setenv("HAR_HOME", str(tmp_path / "har_home"))
    yield


_SESSION_DIRS: list[str] = []


def pytest_configure(config):
    """Before any fixture runs (module- and session-scoped ones run before the
    function-scoped ``_isolated_cache``): har's cache and Ray's files go to folders of
    this session, never to the user's ~/.cache/har or ~/.ray."""
    import tempfile

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    home = tempfile.mkdtemp(prefix="har-tests-home-")
    # Ray's session folder holds Unix sockets (at most 107 bytes of path): a short one.
    ray_tmp = tempfile.mkdtemp(prefix="har-ray-")
    _SESSION_DIRS.extend([home, ray_tmp])
    os.environ["HAR_HOME"] = home
    os.environ["RAY_TMPDIR"] = ray_tmp
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_USAGE_STATS_CONFIG_PATH"] = os.path.join(ray_tmp, "config.json")


def pytest_unconfigure(config):
    import shutil

    for d in _SESSION_DIRS:  # the folders this session made, nothing else
        shutil.rmtree(d, ignore_errors=True)


class CliResult(NamedTuple):
    """What ``har_main`` gives back: unpacks as (code, stdout, stderr) and reads like a
    ``subprocess.CompletedProcess`` (``.returncode``, ``.stdout``, ``.stderr``)."""

    returncode: int
    stdout: str
    stderr: str


class CliTimeout(BaseException):
    """An in-process ``har`` call ran past its time (see ``har_main``)."""


def har_main(*argv, stdin: bytes | None = None, env: dict[str, str] | None = None,
             timeout: float = 300) -> CliResult:
    """``har ARGV...`` in this process: no interpreter start-up and no second import of
    torch, which is most of the time a ``python -m har`` subprocess costs.

    stdout and stderr are captured in text streams with a ``.buffer`` (the CLI writes
    bytes there too); ``stdin`` (bytes) is what ``-`` reads; ``env`` is set for the call
    only; past ``timeout`` seconds the call is stopped (SIGALRM raises CliTimeout, which
    no ``except Exception`` or ``except OSError`` in har can take for its own), so a
    command that should have ended cannot hang the suite (not `har serve`: uvicorn's
    event loop takes the exception; run it in a subprocess). What the CLI may change
    process-wide is put back afterwards: the SIGINT, SIGTERM and SIGALRM handlers, the
    working directory, torch's thread count and the environment.
    Use a subprocess instead for what is about processes: signals, start-up time,
    exit codes made by the interpreter, a variable read once at import."""
    import contextlib
    import io
    import signal
    import sys

    from har.cli import main

    # the error handlers of this interpreter's own streams, as a subprocess would have
    out, err = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors=errors, newline="",
                                 write_through=True)
                for errors in (getattr(sys.__stdout__, "errors", None) or "strict",
                               "backslashreplace"))
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM,
                                                  signal.SIGALRM)}

    def too_long(signum, frame):
        raise CliTimeout(f"har {' '.join(map(str, argv))} ran past {timeout} s")

    cwd, threads, environ = os.getcwd(), torch.get_num_threads(), dict(os.environ)
    old_stdin = sys.stdin
    try:
        os.environ.update(env or {})
        if stdin is not None:
            sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
        signal.signal(signal.SIGALRM, too_long)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in argv])
            except SystemExit as exc:  # argparse's usage errors and --help
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None
                                                                    else 1)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.stdin = old_stdin
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        os.chdir(cwd)
        torch.set_num_threads(threads)
        os.environ.clear()
        os.environ.update(environ)

    def text(stream: io.TextIOWrapper) -> str:
        stream.flush()
        return stream.buffer.getvalue().decode("utf-8", "replace")

    return CliResult(int(code), text(out), text(err))

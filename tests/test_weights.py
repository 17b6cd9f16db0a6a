"""Downloads from a local HTTP server: caching, checksums, resume, mirrors, offline."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import pickle
import socket
import threading
from pathlib import Path

import pytest
import torch

from har import weights as W
from har.cli import main
from har.errors import WeightsError
from har.models import zoo
from har.models.checkpoints import read_state_dict
from har.models.zoo import WeightsFile


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def _handler(files: dict, log: list, drop_after: dict):
    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def do_GET(self):  # noqa: N802
            rng = self.headers.get("Range")
            log.append((self.path, rng))
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if rng:
                start = int(rng.split("=")[1].split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            cut = drop_after.pop(self.path, None)  # drop the connection once, mid-file
            if cut is not None:
                self.wfile.write(body[start:cut])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(body[start:])

    return H


@pytest.fixture
def server():
    files: dict[str, bytes] = {}
    log: list = []
    drop_after: dict[str, int] = {}
    srv = _Server(("127.0.0.1", 0), _handler(files, log, drop_after))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield base, files, log, drop_after
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HAR_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _payload(n=300_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return bytes(torch.randint(0, 256, (n,), generator=g, dtype=torch.uint8).tolist())


def _entry(urls, data, name="toy-k400", sha=None, **kw):
    wf = WeightsFile(filename="toy.pth", format="pth", urls=tuple(urls),
                     sha256=sha if sha is not None else hashlib.sha256(data).hexdigest(),
                     size=len(data), **kw)
    base = zoo.REGISTRY["r3d10-k400"]
    return dataclasses.replace(base, name=name, weights=(wf,))


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _cache_files(home: Path) -> list[str]:
    root = home / "weights"
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_good_file_is_fetched_cached_and_reused(server, home):
    base, files, log, _ = server
    data = _payload()
    files["/toy.pth"] = data
    entry = _entry([base + "/toy.pth"], data)
    path = W.resolve_weights(entry, progress=False)
    assert path == home / "weights" / "toy.pth"
    assert path.read_bytes() == data
    assert len(log) == 1
    again = W.resolve_weights(entry, progress=False)
    assert again == path and len(log) == 1  # no second request
    assert not list((home / "weights").glob("*.part"))


def test_wrong_checksum_is_refused_and_nothing_is_kept(server, home):
    base, files, log, _ = server
    data = _payload()
    files["/toy.pth"] = data
    entry = _entry([base + "/toy.pth"], data, sha="0" * 64)
    with pytest.raises(WeightsError, match="checksum mismatch") as err:
        W.resolve_weights(entry, progress=False)
    assert "\n" not in str(err.value)
    assert _cache_files(home) == []  # no file, no .part


def test_wrong_size_is_refused(server, home):
    base, files, _, _ = server
    data = _payload()
    files["/toy.pth"] = data + b"extra"
    entry = _entry([base + "/toy.pth"], data)
    with pytest.raises(WeightsError):
        W.resolve_weights(entry, progress=False)
    assert _cache_files(home) == []


def test_interrupted_download_resumes_with_range(server, home):
    base, files, log, drop_after = server
    data = _payload()
    files["/toy.pth"] = data
    drop_after["/toy.pth"] = len(data) // 2
    path = W.resolve_weights(_entry([base + "/toy.pth"], data), progress=False)
    assert path.read_bytes() == data
    assert log[0] == ("/toy.pth", None)
    assert log[1] == ("/toy.pth", f"bytes={len(data) // 2}-")


def test_leftover_part_from_a_killed_run_is_resumed(server, home):
    base, files, log, _ = server
    data = _payload()
    files["/toy.pth"] = data
    (home / "weights").mkdir(parents=True)
    (home / "weights" / "toy.pth.part").write_bytes(data[:1000])
    path = W.resolve_weights(_entry([base + "/toy.pth"], data), progress=False)
    assert path.read_bytes() == data
    assert log == [("/toy.pth", "bytes=1000-")]


def test_corrupt_leftover_part_is_not_kept(server, home):
    # A .part whose first bytes are wrong: the resumed file fails its checksum and
    # is deleted; the next attempt starts clean and succeeds.
    base, files, log, _ = server
    data = _payload()
    files["/toy.pth"] = data
    (home / "weights").mkdir(parents=True)
    (home / "weights" / "toy.pth.part").write_bytes(b"\0" * 1000)
    entry = _entry([base + "/toy.pth"], data)
    with pytest.raises(WeightsError, match="checksum"):
        W.resolve_weights(entry, progress=False)
    assert _cache_files(home) == []
    assert W.resolve_weights(entry, progress=False).read_bytes() == data


def test_mirrors_tried_in_turn(server, home):
    base, files, log, _ = server
    data = _payload()
    files["/mirror/toy.pth"] = data
    entry = _entry([base + "/gone/toy.pth", base + "/mirror/toy.pth"], data)
    path = W.resolve_weights(entry, progress=False)
    assert path.read_bytes() == data
    assert [p for p, _ in log] == ["/gone/toy.pth", "/mirror/toy.pth"]


def test_offline_one_clear_message(home):
    data = _payload(1000)
    url = f"http://127.0.0.1:{_closed_port()}/resnet-34_kinetics.onnx"
    entry = _entry([url], data)
    with pytest.raises(WeightsError) as err:
        W.resolve_weights(entry, progress=False)
    msg = str(err.value)
    assert "\n" not in msg
    assert url in msg and "toy.pth" in msg and f"{len(data):,} bytes" in msg
    assert "--weights FILE" in msg
    assert _cache_files(home) == []


def test_no_download_when_disabled(home):
    entry = _entry(["http://127.0.0.1:9/x"], b"abc")
    with pytest.raises(WeightsError, match="--weights FILE"):
        W.resolve_weights(entry, download=False)


def test_url_weights_cached_and_pinned(server, home):
    base, files, log, _ = server
    data = _payload(5000)
    files["/w/model.pth"] = data
    url = base + "/w/model.pth"
    entry = zoo.REGISTRY["r3d10-k400"]
    good = hashlib.sha256(data).hexdigest()
    p1 = W.resolve_weights(entry, url, sha256=good, progress=False)
    assert p1.read_bytes() == data and p1.name.endswith("model.pth")
    p2 = W.resolve_weights(entry, url, sha256=good, progress=False)
    assert p2 == p1 and len(log) == 1
    with pytest.raises(WeightsError, match="checksum mismatch"):
        W.resolve_weights(entry, url, sha256="ab" * 32, progress=False)
    with pytest.raises(WeightsError, match="not a sha256"):
        W.resolve_weights(entry, url, sha256="xyz", progress=False)


def test_local_file_pinned_sha(tmp_path):
    f = tmp_path / "w.pth"
    f.write_bytes(b"hello")
    entry = zoo.REGISTRY["r3d10-k400"]
    assert W.resolve_weights(entry, f, sha256=hashlib.sha256(b"hello").hexdigest()) == f
    with pytest.raises(WeightsError, match="w.pth"):
        W.resolve_weights(entry, f, sha256="1" * 64)


def test_sha256_prefix_check(server, home):
    # torchvision publishes only 8 hex digits of the sha256 (in the file name).
    base, files, _, _ = server
    data = _payload(4000)
    files["/toy.pth"] = data
    digest = hashlib.sha256(data).hexdigest()
    wf = WeightsFile(filename="toy.pth", format="torchvision", urls=(base + "/toy.pth",),
                     sha256_prefix=digest[:8])
    assert wf.checksum == digest[:8]
    assert W.download(wf.urls, home / "weights" / "a.pth", sha256=wf.checksum,
                      progress=False).read_bytes() == data
    bad = "0" * 8 if digest[:8] != "0" * 8 else "1" * 8
    with pytest.raises(WeightsError, match="prefix"):
        W.download(wf.urls, home / "weights" / "b.pth", sha256=bad, progress=False)
    assert not (home / "weights" / "b.pth").exists()


def test_cli_fetch_list_verify(server, home, monkeypatch, capsys):
    base, files, _, _ = server
    data = _payload()
    files["/toy.pth"] = data
    entry = _entry([base + "/toy.pth"], data)
    monkeypatch.setitem(zoo.REGISTRY, entry.name, entry)
    assert main(["weights", "fetch", entry.name, "--no-progress"]) == 0
    assert (home / "weights" / "toy.pth").read_bytes() == data
    capsys.readouterr()
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "toy.pth" in out and entry.name in out
    assert main(["weights", "verify"]) == 0
    assert "ok" in capsys.readouterr().out
    # Corrupt the cache: verify says so and exits non-zero.
    with open(home / "weights" / "toy.pth", "r+b") as fh:
        fh.write(b"\xff\xfe")
    assert main(["weights", "verify"]) == 4  # weights that fail their check
    assert "BAD" in capsys.readouterr().out


def test_cli_fetch_offline_one_line(home, monkeypatch, capsys):
    url = f"http://127.0.0.1:{_closed_port()}/toy.pth"
    entry = _entry([url], b"x" * 10)
    monkeypatch.setitem(zoo.REGISTRY, entry.name, entry)
    code = main(["weights", "fetch", entry.name, "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1 and "Traceback" not in err and url in err


def test_cli_fetch_without_public_url(capsys):
    code = main(["weights", "fetch", "r3d50-k400"])
    err = capsys.readouterr().err
    assert code != 0 and "resnet-50-kinetics.pth" in err and "--weights" in err


class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + str(_EVIL_MARK),))


_EVIL_MARK = Path("/nonexistent")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_with_code_is_refused(tmp_path):
    global _EVIL_MARK
    _EVIL_MARK = tmp_path / "pwned"
    f = tmp_path / "evil.pth"
    with open(f, "wb") as fh:
        pickle.dump({"state_dict": {"conv1.weight": torch.zeros(1)}, "x": Evil()}, fh)
    torch.save({"state_dict": {"a": torch.zeros(1)}, "obj": Evil()}, tmp_path / "evil2.pth")
    for path in (f, tmp_path / "evil2.pth"):
        with pytest.raises(WeightsError, match="refused") as err:
            read_state_dict(path)
        assert path.name in str(err.value)
    assert not _EVIL_MARK.exists()  # no code ran


def test_concurrent_fetches_download_once(server, home):
    base, files, log, _ = server
    data = _payload(2_000_000)
    files["/toy.pth"] = data
    entry = _entry([base + "/toy.pth"], data)
    results, errors = [], []

    def run():
        try:
            results.append(W.resolve_weights(entry, progress=False))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 1 and results[0].read_bytes() == data
    assert len(log) == 1


def test_force_fetch_keeps_old_copy_until_new_one_verifies(server, home, monkeypatch):
    base, files, log, _ = server
    data = _payload(5000)
    files["/toy.pth"] = data
    entry = _entry([base + "/toy.pth"], data)
    path = W.fetch(entry, progress=False)
    files["/toy.pth"] = data[:-1] + bytes([data[-1] ^ 1])  # the server now serves junk
    with pytest.raises(WeightsError, match="checksum"):
        W.fetch(entry, force=True, progress=False)
    assert path.read_bytes() == data  # the verified copy survived
    files["/toy.pth"] = data
    assert W.fetch(entry, force=True, progress=False) == path and len(log) == 3


def test_predict_offline_is_one_line(home, monkeypatch, capsys, video_factory):
    """`har predict` with weights that must be downloaded, offline: one line naming the
    URL, the file and its size, and how to pass a copy; no traceback."""
    url = f"http://127.0.0.1:{_closed_port()}/resnet-34_kinetics.onnx"
    entry = _entry([url], b"x" * 1234)
    monkeypatch.setitem(zoo.REGISTRY, entry.name, entry)
    video = video_factory(20, size=(64, 64))
    code = main(["predict", str(video), "--model", entry.name, "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert url in lines[0] and "toy.pth" in lines[0] and "1,234 bytes" in lines[0]
    assert "--weights FILE" in lines[0]


def test_predict_weights_url_with_sha256(server, home, capsys, video_factory):
    base, files, log, _ = server
    from reference_hara import hara_resnet, published_checkpoint, randomize_

    f = home.parent / "r10.pth"
    torch.save(published_checkpoint(randomize_(hara_resnet(10, "A")), "resnet-10"), f)
    data = f.read_bytes()
    files["/r10.pth"] = data
    video = video_factory(20, size=(64, 64))
    args = ["predict", str(video), "--model", "r3d10-k400", "--weights", base + "/r10.pth",
            "--no-progress", "--json", str(home.parent / "out.json")]
    assert main(args + ["--sha256", hashlib.sha256(data).hexdigest()]) == 0
    assert main(args + ["--sha256", hashlib.sha256(data).hexdigest()]) == 0
    assert len(log) == 1  # the URL download was cached
    capsys.readouterr()
    assert main(args + ["--sha256", "0" * 64]) != 0
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and err.count("\n") == 1

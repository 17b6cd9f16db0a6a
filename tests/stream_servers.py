"""Real stream servers for the live tests, all on 127.0.0.1 and bounded in time.

* :func:`udp_sender`: a subprocess that plays a video file as MPEG-TS over UDP at its
  own frame rate (PyAV muxing to ``udp://127.0.0.1:PORT``), like a camera or encoder.
* :class:`SilentServer`: accepts TCP connections and never sends a byte (a camera that
  hangs after connecting).
* :class:`GarbageServer`: accepts and sends random bytes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

SENDER = r"""
import sys, time, av
src, url, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
inp = av.open(src)
vin = inp.streams.video[0]
fps = float(vin.average_rate or 25)
out = av.open(url, "w", format="mpegts")
vs = out.add_stream("libx264", rate=int(round(fps)))
vs.width, vs.height, vs.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
vs.options = {"preset": "ultrafast", "tune": "zerolatency", "g": "8", "bf": "0"}
frames = [f.to_ndarray(format="rgb24") for f in inp.decode(video=0)]
t0 = time.monotonic()
i = 0
print("sending", flush=True)
while time.monotonic() - t0 < seconds:
    due = t0 + i / fps
    wait = due - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    frame = av.VideoFrame.from_ndarray(frames[i % len(frames)], format="rgb24")
    frame.pts = i
    for p in vs.encode(frame):
        out.mux(p)
    i += 1
for p in vs.encode():
    out.mux(p)
out.close()
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def udp_sender(video: str, port: int, seconds: float) -> subprocess.Popen:
    """Play ``video`` (looped) as MPEG-TS to udp://127.0.0.1:port for ``seconds``."""
    url = f"udp://127.0.0.1:{port}?pkt_size=1316"
    return subprocess.Popen([sys.executable, "-c", SENDER, str(video), url, str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class _TCPServer:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            self._conns.append(conn)
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for c in self._conns:
            c.close()
        self.sock.close()


class SilentServer(_TCPServer):
    """Accepts and never sends anything."""


class GarbageServer(_TCPServer):
    def handle(self, conn: socket.socket) -> None:
        try:
            conn.sendall(os.urandom(200_000))
        except OSError:
            pass


# -- HTTP servers (HLS, MJPEG, trickle, endless body, MPEG-TS once per request) -------
import http.server  # noqa: E402
import time  # noqa: E402


class HTTPServer:
    """A ThreadingHTTPServer on 127.0.0.1 in a thread; ``handler(req)`` answers GETs.
    ``close()`` stops it and ends every response loop (each is bounded in time too)."""

    def __init__(self, handler) -> None:
        server = self
        self.closed = threading.Event()
        self.requests: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):  # noqa: N802
                server.requests.append(self.path)
                try:
                    handler(self)
                except OSError:
                    pass

            def do_HEAD(self):  # noqa: N802
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.closed.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_dir(folder) -> HTTPServer:
    """Static files from ``folder`` (an HLS playlist and its segments)."""
    folder = os.fspath(folder)

    def handle(req):
        path = os.path.join(folder, os.path.basename(req.path.split("?")[0]))
        if not os.path.isfile(path):
            req.send_error(404)
            return
        with open(path, "rb") as fh:
            data = fh.read()
        req.send_response(200)
        req.send_header("Content-Type", "application/vnd.apple.mpegurl"
                        if path.endswith(".m3u8") else "video/mp2t")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    return HTTPServer(handle)


def serve_bytes_once(data: bytes, content_type: str = "video/mp2t") -> HTTPServer:
    """The same body (e.g. an MPEG-TS file) on every request, then the connection ends:
    a stream that drops and can be reopened."""
    def handle(req):
        req.send_response(200)
        req.send_header("Content-Type", content_type)
        req.end_headers()
        req.wfile.write(data)

    return HTTPServer(handle)


def serve_mjpeg(jpegs: list[bytes], fps: float, seconds: float) -> HTTPServer:
    """multipart/x-mixed-replace JPEGs at ``fps`` (no timestamps, as IP cameras send)."""
    def handle(req):
        req.send_response(200)
        req.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        req.end_headers()
        t0 = time.monotonic()
        i = 0
        while not server.closed.is_set() and time.monotonic() - t0 < seconds:
            wait = t0 + i / fps - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            data = jpegs[i % len(jpegs)]
            req.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " +
                            str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n")
            req.wfile.flush()
            i += 1

    server = HTTPServer(handle)
    return server


def serve_trickle(first: bytes, every_s: float, seconds: float) -> HTTPServer:
    """Sends ``first``, then one byte every ``every_s`` for at most ``seconds``."""
    def handle(req):
        req.send_response(200)
        req.send_header("Content-Type", "video/mp2t")
        req.end_headers()
        req.wfile.write(first)
        req.wfile.flush()
        t0 = time.monotonic()
        while not server.closed.is_set() and time.monotonic() - t0 < seconds:
            time.sleep(every_s)
            req.wfile.write(b"\0")
            req.wfile.flush()

    server = HTTPServer(handle)
    return server


def serve_endless(seconds: float) -> HTTPServer:
    """An endless body of zeros (for at most ``seconds``), as fast as it is read."""
    def handle(req):
        req.send_response(200)
        req.send_header("Content-Type", "video/mp4")
        req.end_headers()
        chunk = b"\0" * 65536
        t0 = time.monotonic()
        while not server.closed.is_set() and time.monotonic() - t0 < seconds:
            req.wfile.write(chunk)

    server = HTTPServer(handle)
    return server


def write_hls(video: str, folder, *, vod: bool, segment_s: float = 1.0) -> str:
    """Cut ``video`` into an HLS playlist with PyAV's HLS muxer; ``vod=False`` leaves
    out #EXT-X-ENDLIST (a live playlist that is never updated: a dead camera).
    Returns the playlist's file name."""
    import av

    folder = os.fspath(folder)
    playlist = os.path.join(folder, "index.m3u8")
    inp = av.open(video)
    vin = inp.streams.video[0]
    fps = int(round(float(vin.average_rate or 25)))
    out = av.open(playlist, "w", format="hls",
                  options={"hls_time": str(segment_s), "hls_list_size": "0",
                           "hls_playlist_type": "vod" if vod else "event",
                           "hls_segment_filename": os.path.join(folder, "seg%03d.ts")})
    vs = out.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
    vs.options = {"preset": "ultrafast", "g": str(fps), "bf": "0"}
    for i, f in enumerate(inp.decode(video=0)):
        frame = av.VideoFrame.from_ndarray(f.to_ndarray(format="rgb24"), format="rgb24")
        frame.pts = i
        for p in vs.encode(frame):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    out.close()
    inp.close()
    if not vod:
        with open(playlist) as fh:
            text = fh.read().replace("#EXT-X-ENDLIST\n", "").replace(
                "#EXT-X-PLAYLIST-TYPE:EVENT\n", "")
        with open(playlist, "w") as fh:
            fh.write(text)
    return "index.m3u8"

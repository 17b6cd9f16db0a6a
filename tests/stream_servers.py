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

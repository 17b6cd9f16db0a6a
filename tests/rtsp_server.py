"""A real RTSP server for the live tests: GStreamer's RTSP server (Debian's
gir1.2-gst-rtsp-server-1.0), run with Debian's /usr/bin/python3 which has python3-gi.

    /usr/bin/python3 tests/rtsp_server.py PORT        # rtsp://127.0.0.1:PORT/cam

Serves a live 320x240 test pattern at 30 fps as H.264 (zero-latency x264), on
127.0.0.1 only; prints "ready" once listening.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
port = sys.argv[1]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,"
    "framerate=30/1 ! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast "
    "key-int-max=15 ! rtph264pay name=pay0 pt=96 config-interval=1 )")
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    sys.exit("cannot listen")
print("ready", flush=True)
GLib.MainLoop().run()

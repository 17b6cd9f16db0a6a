"""``har serve``: an HTTP API and a web page over one shared :class:`~har.Recognizer`.

- :mod:`.store`: jobs persisted in SQLite under the data folder (uploads kept there);
- :mod:`.worker`: one thread runs queued jobs through the recognizer's stream;
- :mod:`.app`: the FastAPI application (``/v1/...``, ``/docs``, the page at ``/``).

FastAPI, uvicorn and python-multipart are the optional extra ``serve``.
"""

from __future__ import annotations

__all__ = ["create_app", "JobStore", "Worker"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "JobStore":
        from .store import JobStore

        return JobStore
    if name == "Worker":
        from .worker import Worker

        return Worker
    raise AttributeError(name)

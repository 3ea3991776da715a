"""A faithful local stand-in for Polyv's v3 source-file-task API and its download CDN.

``python -m polyv_retriever.polyv_emulator --port 8090`` runs it by hand; tests and the local stack start it
in-process with :class:`~polyv_retriever.polyv_emulator.server.EmulatorServer`.
"""

from polyv_retriever.polyv_emulator.content import VideoContent
from polyv_retriever.polyv_emulator.server import EmulatorServer

__all__ = ["EmulatorServer", "VideoContent"]

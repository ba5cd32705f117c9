"""The DPS emulator behind ``enosprov serve``: the EnOS API contract over a local store.

``create_app`` builds the WSGI application (enosprov.emulator.app); ``serve`` runs it until
interrupted and ``start_in_thread`` runs it in the background for tests (enosprov.emulator.server).
waitress is imported only when a server starts.
"""

from __future__ import annotations

from .app import Behaviour, EmulatorApp, Faults, create_app
from .server import RunningServer, serve, start_in_thread

__all__ = [
    "Behaviour",
    "EmulatorApp",
    "Faults",
    "RunningServer",
    "create_app",
    "serve",
    "start_in_thread",
]

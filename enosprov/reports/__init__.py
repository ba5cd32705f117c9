"""Batch reports to hand over: one HTML page for people, one CSV for spreadsheets.

``enosprov batches report`` writes them from what :func:`enosprov.core.batches.show_batch` found.
The HTML page (:mod:`.batch_html`) is self-contained so it can be mailed and opened offline; the
CSV (:mod:`.batch_csv`) lists every unit of the batch, one row each, streamed from the backend.
"""

from __future__ import annotations

from .batch_csv import CSV_COLUMNS, device_state, write_batch_csv
from .batch_html import render_batch_html, write_batch_html

__all__ = [
    "CSV_COLUMNS",
    "device_state",
    "render_batch_html",
    "write_batch_csv",
    "write_batch_html",
]

"""An interactive dashboard over the lake: any symbol, any span, read without a JVM (`python -m lib.dashboard`).

`Lake` reads (data), `render_view` / `figure` draw (page), `build_app` / `serve` answer HTTP on loopback (server).
"""

from lib.dashboard.data import BadRequestError, Lake, View, ViewRequest, WarehouseMissingError
from lib.dashboard.page import figure, render_view
from lib.dashboard.server import build_app, serve

__all__ = [
    "BadRequestError", "Lake", "View", "ViewRequest", "WarehouseMissingError", "build_app", "figure", "render_view", "serve",
]

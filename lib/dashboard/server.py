"""The dashboard's web server: aiohttp on loopback, the page at `/`, its numbers as JSON at `/api/view`, plotly.js
from the installed `plotly` package (no CDN). Lake reads run in worker threads so that the event loop stays free."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from pathlib import Path

from aiohttp import web

from lib.dashboard import page
from lib.dashboard.data import BadRequestError, Lake, WarehouseMissingError

logger = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"
LAKE = web.AppKey("lake", Lake)


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def page_response(lake: Lake, query: dict[str, str]) -> tuple[int, str]:
    """(HTTP status, HTML) for `?symbol=&start=&end=&adjust=`: the view, or a page that says what to fix."""
    try:
        universe = lake.universe()
    except WarehouseMissingError as exc:
        return 503, page.render_message("No data yet: run `make run` first", str(exc))
    try:
        request = lake.request(query)
        return 200, page.render_view(universe, lake.view(request))
    except BadRequestError as exc:
        return 400, page.render_message("This view cannot be shown", str(exc), universe, query)
    except Exception as exc:  # the page says what happened; the traceback goes to the server's log
        logger.exception("the view %s failed", query)
        return 500, page.render_message("The dashboard failed on this view", f"{type(exc).__name__}: {exc}", universe, query)


def _finite(value):
    return value if not (isinstance(value, float) and not math.isfinite(value)) else None


def view_summary(lake: Lake, query: dict[str, str]) -> tuple[int, dict]:
    """(HTTP status, JSON body) of the view's headline numbers: what the page shows, for scripts and benchmarks."""
    try:
        view = lake.view(lake.request(query))
    except WarehouseMissingError as exc:
        return 503, {"error": str(exc)}
    except BadRequestError as exc:
        return 400, {"error": str(exc)}
    request = view.request
    return 200, {
        "symbol": request.symbol, "start": request.start.isoformat(), "end": request.end.isoformat(),
        "adjust": request.adjust, "bars": len(view.bars), "last_close": _finite(view.last_close),
        "actions": len(view.actions), "anomalies": len(view.anomalies), "indicators": len(view.indicators),
        "missing_days": [d.isoformat() for d in view.missing_days], "notes": view.notes,
    }  # fmt: skip


async def _in_thread(function, *args):
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(function, *args))


async def _page(request: web.Request) -> web.Response:
    status, body = await _in_thread(page_response, request.app[LAKE], dict(request.query))
    return web.Response(status=status, text=body, content_type="text/html", headers={"Cache-Control": "no-store"})


async def _view(request: web.Request) -> web.Response:
    status, body = await _in_thread(view_summary, request.app[LAKE], dict(request.query))
    return web.json_response(body, status=status)


async def _plotly(request: web.Request) -> web.FileResponse:
    # The URL names plotly's version, so the browser may keep it for good.
    return web.FileResponse(_plotly_js(), headers={"Cache-Control": "public, max-age=31536000, immutable"})


def build_app(lake: Lake) -> web.Application:
    app = web.Application()
    app[LAKE] = lake
    app.router.add_get("/", _page)
    app.router.add_get("/api/view", _view)
    app.router.add_get(page.PLOTLY_URL, _plotly)
    return app


async def serve(lake: Lake, port: int, on_ready=print) -> None:
    """Serve until cancelled on 127.0.0.1:`port` (0: a free port); `on_ready` gets the address to open."""
    runner = web.AppRunner(build_app(lake), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, port)
    await site.start()
    bound = runner.addresses[0][1]
    # The first view pays for imports, the trading calendar and plotly's figure classes: pay before the first visitor.
    await _in_thread(page_response, lake, {})
    on_ready(f"http://{LOOPBACK}:{bound}/")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()

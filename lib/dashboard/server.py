"""The dashboard's web server: aiohttp on loopback, the page at `/`, its numbers as JSON at `/api/view`, plotly.js
from the installed `plotly` package (no CDN) and the page's script. Lake reads run in worker threads so that the event
loop stays free.

Any web page the user opens can make the browser send requests here, so the server answers only to its own name
(`127.0.0.1:PORT`, `localhost:PORT`: no DNS rebinding), every response carries a Content-Security-Policy that allows
no script but its own files and no framing, and a client's error costs one line of log, never a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from pathlib import Path

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from lib.dashboard import page
from lib.dashboard.data import BadRequestError, Lake, WarehouseMissingError

logger = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"
HOST_NAMES = (LOOPBACK, "localhost")  # the only Host names answered: a rebound DNS name is someone else's page
LAKE = web.AppKey("lake", Lake)
# plotly.js styles its elements at run time: inline styles stay allowed, inline scripts do not.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
LOGGED_CHARS = 200  # of a client's URL or Host in a log line


def _shown(text: str) -> str:
    """A client's text for a log line or a message: one line, at most LOGGED_CHARS characters."""
    flat = " ".join(str(text).split())
    return repr(flat if len(flat) <= LOGGED_CHARS else flat[:LOGGED_CHARS] + "…")


class _OneLineClientErrors(logging.Filter):
    """aiohttp logs a request it cannot parse (a request line or header over 8 KB, bad bytes) with a traceback:
    the client's mistake becomes one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and 400 <= error.code < 500:
            first_line = error.message.splitlines()[0] if error.message else ""
            record.msg = f"{record.getMessage()}: {error.code} {type(error).__name__}: {_shown(first_line)}"
            record.args = ()
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


HTTP_LOGGER = logging.getLogger(f"{__name__}.http")
HTTP_LOGGER.addFilter(_OneLineClientErrors())


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
        logger.exception("the view %s failed", _shown(query))
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
    except Exception as exc:  # a bug, not the client's: the traceback goes to the server's log
        logger.exception("the view %s failed", _shown(query))
        return 500, {"error": f"the dashboard failed on this view: {type(exc).__name__}: {exc}"}
    request = view.request
    return 200, {
        "symbol": request.symbol, "start": request.start.isoformat(), "end": request.end.isoformat(),
        "adjust": request.adjust, "bars": len(view.bars), "last_close": _finite(view.last_close),
        "actions": len(view.actions), "anomalies": len(view.anomalies), "indicators": len(view.indicators),
        "missing_days": [d.isoformat() for d in view.missing_days], "notes": view.notes,
        "ticker_changes": [{"from": old, "to": new, "day": day.isoformat()} for old, new, day in view.ticker_changes],
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


async def _script(request: web.Request) -> web.FileResponse:
    # The URL names the script's content hash: kept for good as well.
    return web.FileResponse(page.SCRIPT_FILE, headers={"Cache-Control": "public, max-age=31536000, immutable"})


def allowed_hosts(port: int) -> set[str]:
    """The Host header values answered by a server on `port`: loopback by address or by name."""
    hosts = {f"{name}:{port}" for name in HOST_NAMES}
    return hosts | set(HOST_NAMES) if port == 80 else hosts


@web.middleware
async def _loopback_host_only(request: web.Request, handler):
    """421 for a Host that is not this server's loopback name (a DNS-rebinding page reads nothing); one log line for
    every client error."""
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    port = sockname[1] if sockname else None
    host = request.headers.get("Host", "")
    if port is None or host.lower() not in allowed_hosts(port):
        logger.warning("421 %s %s: refused Host %s", request.method, _shown(request.path_qs), _shown(host))
        where = f"http://{LOOPBACK}:{port}/" if port is not None else "the address the dashboard printed"
        return web.Response(
            status=421, content_type="text/plain",
            text=f"This dashboard answers only to Host {LOOPBACK}:{port} or localhost:{port}, not {_shown(host)}: open {where}",
        )  # fmt: skip
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # 404, 405 from the router
        if 400 <= exc.status < 500:
            logger.warning("%d %s %s", exc.status, request.method, _shown(request.path_qs))
        raise
    if 400 <= response.status < 500:
        logger.warning("%d %s %s", response.status, request.method, _shown(request.path_qs))
    return response


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


def build_app(lake: Lake) -> web.Application:
    app = web.Application(middlewares=[_loopback_host_only])
    app[LAKE] = lake
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/", _page)
    app.router.add_get("/api/view", _view)
    app.router.add_get(page.PLOTLY_URL, _plotly)
    app.router.add_get(page.SCRIPT_URL, _script)
    return app


async def serve(lake: Lake, port: int, on_ready=print) -> None:
    """Serve until cancelled on 127.0.0.1:`port` (0: a free port); `on_ready` gets the address to open."""
    runner = web.AppRunner(build_app(lake), access_log=None, logger=HTTP_LOGGER)
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

"""GET /ui/ and its files: the models page, a few static files shipped in the package.

The page holds no data: its script reads models, nodes, tasks and metrics through the API's own
routes, from the browser, as the signed-in user (so each read and each deploy is authorized as
that user's, and a same-origin POST passes the cross-site check of api/hosts.py). This handler
only maps a name to one of the files it knows, so no path can reach anything else, and sends
each with a Content-Security-Policy that lets the page load only this origin's scripts, styles
and data: an API value that looked like markup could not run, even if a bug inserted it as HTML.
"""
from __future__ import annotations

from functools import cache
from importlib import resources

from aiohttp import web

from mlcommons.errors import NotFound

PAGE = "index.html"
# name -> Content-Type: the only files served
FILES = {
    PAGE: "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; base-uri 'none'; form-action 'none'; "
                                "frame-ancestors 'none'; object-src 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # small files that change with the package: revalidated, never stale after an upgrade
    "Cache-Control": "no-cache",
}


@cache
def _content(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


def _file(name: str) -> web.Response:
    return web.Response(body=_content(name), headers={**HEADERS, "Content-Type": FILES[name]})


async def page(request: web.Request) -> web.Response:
    if not request.path.endswith("/"):  # the page's files are named relative to /ui/
        raise web.HTTPFound("/ui/")
    return _file(PAGE)


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["file"]
    if name not in FILES:
        raise NotFound(f"no such file of the models page [{name[:100]}]")
    return _file(name)


ROUTES = [
    ("GET", "/ui", page),
    ("GET", "/ui/{file}", asset),
]

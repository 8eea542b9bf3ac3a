"""The ops console (``/console``): server-rendered pages for operations staff.

:func:`install_console` adds its routes, its static assets (served by us: operators'
networks often block the internet), the redirect of anonymous visitors to the login
form, and the security headers on every console response.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .session import PATH, SECURITY_HEADERS
from .views import LoginRequired, router

__all__ = ["install_console"]

STATIC = Path(__file__).resolve().parent / "static"


def install_console(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(f"{PATH}/static", StaticFiles(directory=STATIC), name="console-static")

    @app.exception_handler(LoginRequired)
    async def _to_login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"{PATH}/login", status_code=303)

    app.add_middleware(ConsoleHeaders)


class ConsoleHeaders:
    """The security headers on every response under ``/console`` (errors included); other
    paths pass straight through, so ``$find`` pays nothing for the console."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == PATH or path.startswith(PATH + "/")):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)

"""The console's pages and static files (see :mod:`api.console`).

Pages: ``/signin`` (GET the form, POST the token), ``/signout`` (POST), ``/`` (overview),
``/rigs`` (status and a live exposure-plan preview), ``/jobs`` (live list: progress, cancel,
errors), ``/scenes`` → ``/scenes/{name}`` (gallery) → ``/scenes/{name}/pairs/{id}`` (pair
viewer), ``/deblur`` (upload, before/after, mask overlay; operators), ``/tokens`` (admin).
Every page but the sign-in needs a valid session (else a 303 to ``/signin``); a page the role may not see answers 403 with the reason. The pages carry the
session's CSRF token in ``<meta name="csrf-token">`` for their scripts; the data comes from the
REST API. Static files (``/static/…``) are served with ``ETag`` / ``Last-Modified``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api.console import session
from api.http import auth
from core import __version__
from core.models import ApiToken, Role

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)

NAV = [("/", "Overview", Role.VIEWER), ("/rigs", "Rigs", Role.VIEWER), ("/capture", "Capture", Role.OPERATOR),
       ("/jobs", "Jobs", Role.VIEWER), ("/scenes", "Scenes", Role.VIEWER),
       ("/calibrations", "Calibrations", Role.VIEWER),
       ("/deblur", "Deblur", Role.VIEWER), ("/tokens", "Tokens", Role.ADMIN)]
"""(path, label, role needed) of the navigation bar; links the role may not use are not shown."""


class SignedOut(Exception):
    """No valid session: the page redirects to the sign-in form."""


def _verify(db_session: Any, secret: str) -> ApiToken:
    token = auth.verify_secret(db_session, secret)
    if db_session.dirty:
        db_session.commit()
    return token


async def _session_token(request: Request) -> tuple[ApiToken, str]:
    secret = session.cookie_secret(request)
    if not secret:
        raise SignedOut
    try:
        token = await request.app.state.database.run(_verify, secret)
    except auth.AuthenticationError:
        raise SignedOut from None
    return token, secret


def _allowed(token: ApiToken, needed: Role) -> bool:
    return auth.ROLE_RANK[Role(token.role)] >= auth.ROLE_RANK[needed]


def _page(request: Request, template: str, token: ApiToken, secret: str, status: int = 200,
          **context: Any) -> HTMLResponse:
    role = Role(token.role)
    nav = [(path, label) for path, label, needed in NAV if _allowed(token, needed)]
    response = templates.TemplateResponse(request, template, {
        "token": token, "role": role.value, "csrf": session.csrf_token(secret), "nav": nav,
        "path": request.url.path, "version": __version__,
        "can_operate": _allowed(token, Role.OPERATOR), "is_admin": role == Role.ADMIN, **context,
    }, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _signin_form(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    response = templates.TemplateResponse(request, "signin.html", {"error": error, "version": __version__},
                                          status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/signin", response_class=HTMLResponse)
async def signin_form(request: Request) -> Response:
    return _signin_form(request)


@router.post("/signin", response_class=HTMLResponse)
async def signin(request: Request) -> Response:
    """Check the posted token; on success set the session cookie and go to the overview."""
    if not session.same_origin(request):
        return _signin_form(request, "cross-site sign-in refused", 403)
    form = await request.form()
    secret = str(form.get("token") or "").strip()
    if not secret:
        return _signin_form(request, "enter an API token (reloblur token create NAME --role ROLE)", 422)
    try:
        token = await request.app.state.database.run(_verify, secret)
    except auth.AuthenticationError as exc:
        log.info("console sign-in refused: %s", exc)
        return _signin_form(request, str(exc), 401)
    log.info("console sign-in: token %s %r (%s)", token.id, token.name, Role(token.role).value)
    response = RedirectResponse("/", status_code=303)
    session.set_session(response, request, secret)
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    secret = session.cookie_secret(request)
    response = RedirectResponse("/signin", status_code=303)
    if secret:
        form = await request.form()
        session.check_csrf(request, secret, str(form.get(session.CSRF_FIELD) or ""))
    session.clear_session(response, request)
    return response


def _page_route(path: str, template: str, needed: Role = Role.VIEWER, title: str = ""):
    async def page(request: Request) -> Response:
        try:
            token, secret = await _session_token(request)
        except SignedOut:
            return RedirectResponse("/signin", status_code=303)
        if not _allowed(token, needed):
            return _page(request, "forbidden.html", token, secret, 403, title="Not allowed",
                         reason=f"this page needs the {needed.value} role; you are signed in as a "
                                f"{Role(token.role).value}")
        params = dict(request.path_params)
        page_title = title.format(**params)
        return _page(request, template, token, secret, title=page_title, **params)

    page.__name__ = f"page_{template.removesuffix('.html')}"
    router.add_api_route(path, page, methods=["GET"], response_class=HTMLResponse)


_page_route("/", "overview.html", title="Overview")
_page_route("/rigs", "rigs.html", title="Rigs")
_page_route("/capture", "capture.html", title="Capture")
_page_route("/jobs", "jobs.html", title="Jobs")
_page_route("/calibrations", "calibrations.html", title="Colour calibrations")
_page_route("/scenes", "scenes.html", title="Scenes")
_page_route("/scenes/{scene}", "gallery.html", title="Scene {scene}")
_page_route("/scenes/{scene}/pairs/{capture_id:int}", "pair.html", title="Scene {scene}, pair {capture_id}")
_page_route("/deblur", "deblur.html", title="Deblur")
_page_route("/tokens", "tokens.html", Role.ADMIN, title="Tokens")


def mount_console(app: FastAPI) -> None:
    """Add the pages and ``/static`` to ``app``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="console-static")

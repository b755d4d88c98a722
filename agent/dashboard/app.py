"""The dashboard's FastAPI app: server-rendered pages (skills, experts, jobs, runs) and a JSON
API under /api over one `Store`. GET requests only read; the one mutation (queue a
consolidation job) needs the configured token.

Pages and API share the read-side queries of `agent/dashboard/queries.py`.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.dashboard import queries as q
from agent.dashboard.guard import LOOPBACK, HostGuard
from agent.dashboard.schemas import (NAME_PATTERN, EpisodeOut, EvaluationOut, ExpertOut, JobOut,
                                     JobRequest, Order, RunOut, SkillDetailOut, SkillOut,
                                     SkillSort)
from envs.errors import PeamError
from memory.store import Store

HERE = Path(__file__).parent
PLOTLY_JS = files("plotly") / "package_data" / "plotly.min.js"
TOKEN_HEADER = "X-Peam-Token"
MAX_ID = 2**62  # larger ids cannot exist; refusing them keeps the database driver from overflowing

Limit = Annotated[int, Query(ge=1, le=500, description="rows per page")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="rows to skip")]
Category = Annotated[str | None, Query(pattern=NAME_PATTERN)]
SkillName = Annotated[str | None, Query(pattern=NAME_PATTERN, description="one skill's points")]
Name = Annotated[str, PathParam(max_length=128)]
RowId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


FACTOR_NOTES = [  # worthiness factors as the skill page explains them (DESIGN.md "Methods")
    ("cost_saving", "Cost saving", "uses × seconds saved per use"),
    ("stability", "Stability", "consistency and number of successful demonstrations"),
    ("redundancy", "Redundancy", "how well an existing expert already covers it"),
    ("interference", "Interference", "how much training would disturb skills sharing the expert"),
]


class DashboardError(PeamError):
    """The dashboard cannot start as asked; the message says how to mend it."""


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token: anyone who can reach the port could
    otherwise queue jobs."""
    if token or host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass  # a hostname: it may resolve to anything
    raise DashboardError(f"refusing to bind {host} without a token: set PEAM_DASHBOARD_TOKEN, "
                         f"or bind 127.0.0.1")


def bind_socket(host: str, port: int):
    """The listening socket the dashboard will serve on, or a DashboardError saying what to do."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise DashboardError(f"cannot listen on {host}:{port} ({e.strerror}): choose a free "
                             f"port with --port, or stop what uses it") from None
    sock.set_inheritable(True)
    return sock


def create_app(store: Store, *, token: str | None, read_only_bind: bool,
               hosts: Iterable[str] = LOOPBACK) -> FastAPI:
    """The dashboard over `store`. With `token`, a POST must carry it (header X-Peam-Token or
    form field `token`); with `read_only_bind`, every POST is refused. It answers only requests
    addressed to one of `hosts` and refuses writes from other origins (agent/dashboard/guard.py)."""
    app = FastAPI(title="peam dashboard", version="1",
                  description="What the agent knows: skills, experts, consolidation jobs, runs.")
    app.add_middleware(HostGuard, hosts=hosts)
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["pct"] = lambda x: "–" if x is None else f"{100 * x:.0f}%"
    templates.env.filters["num"] = lambda x, d=2: "–" if x is None else f"{x:.{d}f}"
    form_nonce = secrets.token_urlsafe(16)  # our own form's stand-in for a token when none is set
    app.mount("/static/app", StaticFiles(directory=HERE / "static"), name="static")

    def page(request: Request, name: str, **context) -> HTMLResponse:
        context |= {"read_only": read_only_bind, "token_required": token is not None,
                    "form_nonce": form_nonce}
        return templates.TemplateResponse(request, name, context)

    def authorise(supplied: str | None, *, form: bool = False) -> None:
        if read_only_bind:
            raise HTTPException(403, "this dashboard is read-only")
        if token is None and (not form or supplied == form_nonce):
            return
        if not supplied:
            raise HTTPException(401, f"missing token: send header {TOKEN_HEADER}")
        if token is None or not secrets.compare_digest(supplied.encode(), token.encode()):
            raise HTTPException(403, "wrong token")

    @app.exception_handler(q.NotFound)
    async def not_found(request: Request, exc: q.NotFound):
        return _error(request, 404, str(exc).strip("'\""), page)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _error(request, exc.status_code, str(exc.detail), page)

    @app.exception_handler(SQLAlchemyError)
    async def store_error(request: Request, exc: SQLAlchemyError):
        return _error(request, 503, store_failure(exc), page)

    # ---- pages ---------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def index():
        return RedirectResponse("/skills")

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js():
        return FileResponse(str(PLOTLY_JS), media_type="application/javascript")

    @app.get("/skills", response_class=HTMLResponse, include_in_schema=False)
    def skills_page(request: Request, category: Category = None, sort: SkillSort = "name",
                    order: Order = "asc", game: Category = None):
        rows = q.skills(store, category=category, sort=sort, order=order, limit=500, offset=0,
                        game=game)
        return page(request, "skills.html", skills=rows, categories=q.categories(store),
                    category=category, sort=sort, order=order, games=q.games(store), game=game)

    @app.get("/skills/{name}", response_class=HTMLResponse, include_in_schema=False)
    def skill_page(request: Request, name: Name, game: Category = None):
        detail = q.skill_detail(store, name, game)
        points = [p.model_dump(mode="json") for p in detail.success_over_time]
        curve = [v.model_dump(mode="json") for v in detail.evaluations]
        return page(request, "skill.html", detail=detail, points=points, curve=curve,
                    factors=FACTOR_NOTES)

    @app.get("/experts", response_class=HTMLResponse, include_in_schema=False)
    def experts_page(request: Request, limit: Limit = 100, offset: Offset = 0):
        return page(request, "experts.html", experts=q.experts(store, limit=limit, offset=offset))

    @app.get("/jobs", response_class=HTMLResponse, include_in_schema=False)
    def jobs_page(request: Request, limit: Limit = 100, offset: Offset = 0):
        return page(request, "jobs.html", jobs=q.jobs(store, limit=limit, offset=offset),
                    skills=q.skills(store, category=None, sort="name", order="asc", limit=500,
                                    offset=0),
                    categories=q.categories(store))

    @app.post("/jobs", include_in_schema=False)
    async def jobs_form(request: Request):
        if request.headers.get("content-type", "").split(";")[0] != \
                "application/x-www-form-urlencoded":
            raise HTTPException(415, "send the form as application/x-www-form-urlencoded")
        fields = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace"),
                                               max_num_fields=8).items()}
        authorise(fields.get("token") or request.headers.get(TOKEN_HEADER), form=True)
        kind, _, target = fields.get("target", "").partition(":")
        if kind not in ("skill", "category") or not target:
            raise HTTPException(422, "choose a skill or a category to consolidate")
        try:
            job = JobRequest(game=fields.get("game") or "crafter", **{kind: target})
        except ValidationError as e:
            raise HTTPException(422, e.errors()[0]["msg"]) from None
        q.queue_job(store, job)
        return RedirectResponse("/jobs", status_code=303)

    @app.get("/runs", response_class=HTMLResponse, include_in_schema=False)
    def runs_page(request: Request, run_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
                  limit: Limit = 100, offset: Offset = 0):
        return page(request, "runs.html", runs=q.runs(store, limit=limit, offset=offset),
                    episodes=q.episodes(store, run_id=run_id, limit=limit, offset=offset),
                    shares=q.fast_share_series(store, run_id=run_id), run_id=run_id)

    # ---- JSON API ------------------------------------------------------------------------

    @app.get("/api/skills", response_model=list[SkillOut], tags=["api"])
    def api_skills(category: Category = None, sort: SkillSort = "name", order: Order = "asc",
                   limit: Limit = 100, offset: Offset = 0, game: Category = None):
        return q.skills(store, category=category, sort=sort, order=order, limit=limit,
                        offset=offset, game=game)

    @app.get("/api/skills/{name}", response_model=SkillDetailOut, tags=["api"],
             responses={404: {"description": "no such skill"}})
    def api_skill(name: Name, game: Category = None):
        return q.skill_detail(store, name, game)

    @app.get("/api/evaluations", response_model=list[EvaluationOut], tags=["api"])
    def api_evaluations(skill: SkillName = None, limit: Limit = 100, offset: Offset = 0):
        """Forgetting-curve points (a skill re-measured after each promotion), in
        registry-version order."""
        return q.evaluations(store, skill=skill, limit=limit, offset=offset)

    @app.get("/api/experts", response_model=list[ExpertOut], tags=["api"])
    def api_experts(limit: Limit = 100, offset: Offset = 0):
        return q.experts(store, limit=limit, offset=offset)

    @app.get("/api/jobs", response_model=list[JobOut], tags=["api"])
    def api_jobs(limit: Limit = 100, offset: Offset = 0):
        return q.jobs(store, limit=limit, offset=offset)

    @app.post("/api/jobs", response_model=JobOut, status_code=201, tags=["api"],
              responses={401: {"description": "token missing"}, 403: {"description": "wrong token"},
                         404: {"description": "no such skill or category"}})
    def api_queue_job(request: Request, job: JobRequest,
                      x_peam_token: Annotated[str | None, Header()] = None):
        """Queue a consolidation of a skill or category (status 'queued', reason 'dashboard')."""
        authorise(x_peam_token)
        return q.queue_job(store, job)

    @app.get("/api/runs", response_model=list[RunOut], tags=["api"])
    def api_runs(limit: Limit = 100, offset: Offset = 0):
        return q.runs(store, limit=limit, offset=offset)

    @app.get("/api/episodes", response_model=list[EpisodeOut], tags=["api"])
    def api_episodes(run_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
                     limit: Limit = 100, offset: Offset = 0):
        return q.episodes(store, run_id=run_id, limit=limit, offset=offset)

    @app.get("/api/episodes/{episode_id}", response_model=EpisodeOut, tags=["api"],
             responses={404: {"description": "no such episode"}})
    def api_episode(episode_id: RowId):
        return q.episode(store, episode_id)

    return app


def store_failure(exc: SQLAlchemyError) -> str:
    """What the page says when the store fails: a missing table is not cured by retrying."""
    from sqlalchemy.exc import DBAPIError

    from memory.db import db_failure

    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    if "no such table" in reason or ("relation" in reason and "does not exist" in reason):
        return (f"the store lacks one of peam's tables ({reason}): it was changed outside peam; "
                f"restore it from a backup or point --db at another store, then restart the "
                f"dashboard")
    if isinstance(exc, DBAPIError):
        return db_failure(exc)
    return f"the store did not answer ({type(exc).__name__}); retry"


def _error(request: Request, status: int, message: str, page):
    if request.url.path.startswith("/api") or request.method != "GET":
        return JSONResponse({"detail": message}, status_code=status)
    response = page(request, "error.html", status=status, message=message)
    response.status_code = status
    return response

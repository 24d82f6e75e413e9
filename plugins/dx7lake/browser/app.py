"""The phrase browser's FastAPI app: an index, one page per phrase, its audio and spectrogram.

Routes (relative to wherever the app is mounted: ``/`` alone, ``/dx7lake`` in Airflow):
``/profiles/<id>/phrases`` (index with paging and filters), ``/profiles/<id>/phrases/<n>``
(player, mel-spectrogram, piano roll, metadata, previous/next/random, a picker of the
render profiles), ``.../phrases/0`` (a random phrase), ``.../phrases/<n>/audio.flac``,
``.../phrases/<n>/preview.mp3`` (``&download=1`` to save it) and ``.../phrases/<n>/mel.png``
(``?patch=<id>``), ``/stats`` (the dataset's shape, the plots of a release's card) and its
``/stats/<name>.png``. Every phrase route also answers without ``/profiles/<id>`` (the URLs
from before profiles): those show the default profile.

Nothing here turns request text into a storage path: ``n`` is an integer, the profile a
12-digit hex id, the patch is looked up among the phrase's renders in the warehouse, and
the object key is read from the gold manifest.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.params import Depends
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from psycopg.errors import UndefinedTable
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import Settings
from ..gold.preview import PREVIEW_FORMAT, PREVIEW_MEDIA_TYPE, preview
from ..warehouse.postgres import warehouse_url
from .catalog import SORTS, SPLITS, Catalog, Filters
from .pianoroll import note_name, pianoroll_svg
from .ranges import RangeNotSatisfiable, parse_range
from .spectrogram import spectrogram_png
from .stats import stats_plots

PAGE_SIZES = (25, 50, 100, 200)
_PATCH_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_PROFILE_ID = re.compile(r"^[0-9a-f]{12}$")

templates = Environment(loader=PackageLoader("dx7lake.browser", "templates"), autoescape=select_autoescape())
templates.filters["note_name"] = note_name


def _int_param(request: Request, name: str, low: int, high: int) -> int | None:
    raw = request.query_params.get(name, "").strip()
    if raw == "":
        return None
    if not re.fullmatch(r"-?\d{1,6}", raw) or not low <= int(raw) <= high:
        raise HTTPException(400, f"{name} must be an integer from {low} to {high}")
    return int(raw)


def _float_param(request: Request, name: str, low: float, high: float) -> float | None:
    raw = request.query_params.get(name, "").strip()
    if raw == "":
        return None
    if not re.fullmatch(r"-?\d{1,6}(\.\d{1,3})?", raw) or not low <= float(raw) <= high:
        raise HTTPException(400, f"{name} must be a number from {low:g} to {high:g}")
    return float(raw)


def filters_of(request: Request, profile: str) -> Filters:
    """The filters in the query string, in ``profile``; bad values are a 400, empty form fields mean unset."""
    if not _PROFILE_ID.match(profile):
        raise HTTPException(400, "profile must be a render profile id (12 hex digits)")
    split = request.query_params.get("split", "").strip() or None
    if split is not None and split not in SPLITS:
        raise HTTPException(400, f"split must be one of {', '.join(SPLITS)}")
    patch = request.query_params.get("patch", "").strip() or None
    if patch is not None and not _PATCH_ID.match(patch):
        raise HTTPException(400, "patch must be a patch id")
    song = request.query_params.get("song", "").strip()[:200] or None
    sort = request.query_params.get("sort", "").strip() or "number"
    if sort not in SORTS:
        raise HTTPException(400, f"sort must be one of {', '.join(SORTS)}")
    return Filters(
        profile=profile,
        split=split,
        patch=patch,
        pitch_min=_int_param(request, "pitch_min", 0, 127),
        pitch_max=_int_param(request, "pitch_max", 0, 127),
        song=song,
        lufs_min=_float_param(request, "lufs_min", -200, 20),
        lufs_max=_float_param(request, "lufs_max", -200, 20),
        centroid_min=_float_param(request, "centroid_min", 0, 100000),
        centroid_max=_float_param(request, "centroid_max", 0, 100000),
        sort=sort,
    )


def _base(request: Request) -> str:
    """Where the app is mounted, so links work alone and under Airflow's ``/dx7lake``."""
    return request.scope.get("root_path", "").rstrip("/")


def _link(request: Request, path: str, query: dict[str, str] | None = None) -> str:
    query = {k: v for k, v in (query or {}).items() if v not in (None, "")}
    return _base(request) + path + (f"?{urlencode(query)}" if query else "")


def create_app(
    settings: Settings,
    dependencies: Sequence[Depends] = (),
    login_url: Callable[[Request], str] | None = None,
    refresh_s: float = 30.0,
) -> FastAPI:
    """The browser for one home.

    ``dependencies`` guard every route (Airflow's authentication in the plugin); when one
    answers 401 to a browser asking for a page, ``login_url`` says where to sign in.
    """
    catalog = Catalog(settings, refresh_s=refresh_s)
    app = FastAPI(
        title="dx7lake phrase browser",
        dependencies=list(dependencies),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.catalog = catalog

    def html(name: str, status: int = 200, **context) -> HTMLResponse:
        context.setdefault("home", context.get("base", ""))  # the app's root, for links outside a profile
        return HTMLResponse(templates.get_template(name).render(**context), status_code=status)

    def phrase_routes(path: str, methods: Sequence[str] = ("GET",), **options):
        """Register a phrase route under ``/profiles/{profile}`` and, for the URLs from before
        profiles, without it (``profile`` then is an optional query parameter: the default)."""

        def register(fn):
            app.api_route(f"/profiles/{{profile}}{path}", methods=list(methods), **options)(fn)
            app.api_route(path, methods=list(methods), include_in_schema=False, **options)(fn)
            return fn

        return register

    def scope(request: Request, profile: str | None) -> tuple[Filters, Callable[..., str]]:
        """The request's filters and a link maker for paths within its profile."""
        filters = filters_of(request, profile or catalog.default_profile)

        def link(path: str, query: dict[str, str] | None = None) -> str:
            return _link(request, f"/profiles/{filters.profile}{path}", query)

        return filters, link

    def profile_links(request: Request, filters: Filters, path: str) -> dict[str, str]:
        """The picker: each profile with renders (by name) and this page in it."""
        return {
            name: _link(request, f"/profiles/{pid}{path}", filters.query()) for pid, name in catalog.profiles().items()
        }

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if "text/html" not in request.headers.get("accept", ""):
            return await http_exception_handler(request, exc)
        if exc.status_code == 401 and login_url is not None:
            return RedirectResponse(login_url(request), status_code=303)
        title = f"{exc.status_code}"
        return html("message.html", exc.status_code, base=_base(request), title=title, message=exc.detail)

    @app.exception_handler(UndefinedTable)
    async def not_built(request: Request, _exc: UndefinedTable) -> HTMLResponse:
        return html(
            "message.html",
            503,
            base=_base(request),
            title="No gold renders yet",
            message="The warehouse has no silver phrases or gold renders: run the pipeline first.",
        )

    def load_phrase(n: int, profile: str) -> dict:
        phrase = catalog.phrase(n, profile)
        if phrase is None:
            raise HTTPException(404, f"no phrase {n}")
        return phrase

    def load_render(phrase: dict, patch: str | None) -> dict:
        if patch is None or patch not in phrase["renders"]:
            raise HTTPException(404, "no render of this phrase with that patch")
        render = catalog.render(phrase, patch)
        if render is None:
            raise HTTPException(404, "render not in its manifest")
        return render

    @app.get("/", include_in_schema=False)
    def root(request: Request) -> RedirectResponse:
        return RedirectResponse(_link(request, f"/profiles/{catalog.default_profile}/phrases"))

    @phrase_routes("/phrases", response_class=HTMLResponse)
    def index(request: Request, profile: str | None = None) -> HTMLResponse:
        filters, link = scope(request, profile)
        size = _int_param(request, "size", 1, max(PAGE_SIZES)) or PAGE_SIZES[1]
        page = _int_param(request, "page", 1, 10**6) or 1
        total, rows = catalog.page(filters, (page - 1) * size, size)
        pages = max(1, math.ceil(total / size))
        query = filters.query() | {"size": str(size)}
        return html(
            "index.html",
            base=link(""),
            home=_base(request),
            profile=filters.profile,
            profile_links=profile_links(request, filters, "/phrases"),
            rows=rows,
            total=total,
            page=page,
            pages=pages,
            size=size,
            page_sizes=PAGE_SIZES,
            filters=filters,
            splits=SPLITS,
            sorts=SORTS,
            patches=catalog.patches(),
            filter_query=filters.query(),
            prev_page=link("/phrases", query | {"page": str(page - 1)}) if page > 1 else None,
            next_page=link("/phrases", query | {"page": str(page + 1)}) if page < pages else None,
            random_link=link("/phrases/0", filters.query()),
        )

    @phrase_routes("/phrases/{n:int}", response_class=HTMLResponse)
    def phrase_page(request: Request, n: int, profile: str | None = None) -> Response:
        filters, link = scope(request, profile)
        if n == 0:
            chosen = catalog.random(filters)
            if chosen is None:
                raise HTTPException(404, "no phrase matches these filters")
            return RedirectResponse(link(f"/phrases/{chosen}", filters.query()), status_code=302)
        phrase = load_phrase(n, filters.profile)
        names = catalog.patches()
        patch = filters.patch or min(phrase["renders"], key=lambda p: (names.get(p, p), p))
        render = load_render(phrase, patch)
        prev_n, next_n = catalog.neighbours(n, filters)
        query = filters.query()
        other = {k: v for k, v in query.items() if k != "patch"}
        return html(
            "phrase.html",
            base=link(""),
            home=_base(request),
            profile=filters.profile,
            profile_links=profile_links(request, filters, f"/phrases/{n}"),
            n=n,
            phrase=phrase,
            render=render,
            patch=patch,
            patch_names=names,
            patch_links={p: link(f"/phrases/{n}", other | {"patch": p}) for p in phrase["renders"]},
            audio_src=link(f"/phrases/{n}/audio.flac", {"patch": patch}),
            mel_src=link(f"/phrases/{n}/mel.png", {"patch": patch}),
            preview_download=link(f"/phrases/{n}/preview.{PREVIEW_FORMAT}", {"patch": patch, "download": "1"}),
            pianoroll=pianoroll_svg(render["notes"], render["duration_s"], render["bpm"]),
            prev_link=link(f"/phrases/{prev_n}", query) if prev_n else None,
            next_link=link(f"/phrases/{next_n}", query) if next_n else None,
            random_link=link("/phrases/0", query),
            index_link=link("/phrases", query),
        )

    def requested_render(request: Request, n: int, profile: str | None) -> dict:
        filters, _ = scope(request, profile)
        return load_render(load_phrase(n, filters.profile), filters.patch)

    @phrase_routes("/phrases/{n:int}/audio.flac", methods=("GET", "HEAD"))
    def audio(request: Request, n: int, profile: str | None = None) -> Response:
        render = requested_render(request, n, profile)
        data = catalog.audio(render)
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": f'"{render["sha256"]}"',
            "Cache-Control": "private, max-age=3600",
        }
        try:
            wanted = parse_range(request.headers.get("range"), len(data))
        except RangeNotSatisfiable:
            return Response(status_code=416, headers=headers | {"Content-Range": f"bytes */{len(data)}"})
        if wanted is None:
            return Response(data, media_type="audio/flac", headers=headers)
        first, last = wanted
        headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
        return Response(data[first : last + 1], status_code=206, media_type="audio/flac", headers=headers)

    @phrase_routes("/phrases/{n:int}/mel.png")
    def mel(request: Request, n: int, profile: str | None = None) -> Response:
        render = requested_render(request, n, profile)
        png = catalog.derived("mel.png", render, spectrogram_png)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @phrase_routes(f"/phrases/{{n:int}}/preview.{PREVIEW_FORMAT}")
    def audio_preview(request: Request, n: int, profile: str | None = None) -> Response:
        """The render as a compressed preview: played by pages, saved with ``download=1``."""
        render = requested_render(request, n, profile)
        data = catalog.derived(PREVIEW_FORMAT, render, preview)
        headers = {"ETag": f'"{render["sha256"]}"', "Cache-Control": "private, max-age=3600"}
        if request.query_params.get("download") == "1":
            name = f"{render['content_hash']}_{render['patch_id']}.{PREVIEW_FORMAT}"
            headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return Response(data, media_type=PREVIEW_MEDIA_TYPE, headers=headers)

    stats_cache: dict[str, object] = {"at": float("-inf"), "plots": {}}
    stats_lock = threading.Lock()

    def current_stats() -> dict[str, bytes]:
        """The plots, redrawn at most every ``refresh_s`` (they read whole marts)."""
        with stats_lock:
            if time.monotonic() - stats_cache["at"] >= refresh_s:
                stats_cache["plots"] = stats_plots(warehouse_url(settings), catalog.patches())
                stats_cache["at"] = time.monotonic()
            return stats_cache["plots"]

    @app.get("/stats", response_class=HTMLResponse)
    def stats(request: Request) -> HTMLResponse:
        plots = current_stats()
        return html(
            "stats.html",
            base=_base(request),
            plots={name: _link(request, f"/stats/{name}.png") for name in plots},
        )

    @app.get("/stats/{name}.png")
    def stats_png(name: str) -> Response:
        png = current_stats().get(name)
        if png is None:
            raise HTTPException(404, f"no plot {name!r}")
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})

    return app

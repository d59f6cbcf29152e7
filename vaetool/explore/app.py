"""The web application behind ``vaetool explore``: one page, its static files, and a small JSON API.

Starlette parses the requests; this module checks their shape (body size, JSON, types) and hands
the values to :class:`~vaetool.explore.explorer.Explorer`, which checks what they mean. Anything a
client gets wrong is a 4xx with ``{"error": "one sentence"}``; the server keeps running.

    GET  /                  the page
    GET  /static/…          its script and style sheet, from the installed package
    GET  /api/model         the card, the sliders, the classes (Explorer.info)
    POST /api/decode        {"z": [...], "label": k?}              → image/png
    POST /api/encode        the image file's bytes; ?label=k&invert=auto|yes|no → {"z": [...], "input": data URL}
    POST /api/interpolate   {"from": {"z"|"label"}, "to": …, "steps", "method", "label"?, "fps"?, "bounce"?} → image/gif
    GET  /api/map?method=pca|tsne                                   → {"points", "codes", "labels", "axes", "method"}
"""
from __future__ import annotations

import asyncio
import base64
import json
import math
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from vaetool.errors import VaetoolError
from vaetool.explore.explorer import Explorer, shown

MAX_IMAGE_BYTES = 10_000_000
MAX_JSON_BYTES = 100_000


class BadRequest(Exception):
    """A request this API cannot read: the status to answer and the sentence to show."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def create_app(explorer: Explorer, threads: int | None = None, allowed_hosts: list[str] | None = None) -> Starlette:
    """The Starlette application serving ``explorer``; the model computes with ``threads`` CPU
    threads (default: as many as torch uses in the calling thread). With ``allowed_hosts``, a request
    whose Host header names another host is refused (400)."""
    import torch

    # Every model call runs on one thread of its own, with torch's thread count set there: the
    # OpenMP count is per calling thread, and a pool thread left at the default would start a
    # worker per core, which spin-wait and make one small decode many times slower on a busy CPU.
    model_thread = ThreadPoolExecutor(1, thread_name_prefix="vaetool-explore", initializer=torch.set_num_threads,
                                      initargs=(threads or torch.get_num_threads(),))

    async def run(function, *args):
        return await asyncio.wrap_future(model_thread.submit(function, *args))

    async def page(request: Request) -> Response:
        html = resources.files("vaetool.explore").joinpath("static", "index.html").read_text(encoding="utf-8")
        return Response(html, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})

    async def model_info(request: Request) -> Response:
        _query(request, set())
        return JSONResponse(await run(explorer.info))

    async def decode(request: Request) -> Response:
        _query(request, set())
        body = await _json(request)
        _only(body, {"z", "label"}, required={"z"})
        png = await run(explorer.decode_png, body["z"], body.get("label"))
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def encode(request: Request) -> Response:
        query = _query(request, {"label", "invert"})
        data = await _body(request, MAX_IMAGE_BYTES, "image")
        label = _int_param(query, "label")
        answer = await run(explorer.encode_image, data, label, query.get("invert", "auto"))
        return JSONResponse({"z": answer["z"], "input": _data_url(answer["input"], "image/png")})

    async def interpolate(request: Request) -> Response:
        _query(request, set())
        body = await _json(request)
        _only(body, {"from", "to", "steps", "method", "label", "fps", "bounce"}, required={"from", "to"})
        steps = _typed(body, "steps", int, 16)
        method = _typed(body, "method", str, "slerp")
        fps = _typed(body, "fps", (int, float), 12.0)
        bounce = _typed(body, "bounce", bool, True)
        gif = await run(explorer.interpolation_gif, body["from"], body["to"], steps, method,
                                      body.get("label"), fps, bounce)
        return Response(gif, media_type="image/gif", headers={"Content-Disposition": 'inline; filename="interpolation.gif"'})

    async def latent_map(request: Request) -> Response:
        method = _query(request, {"method"}).get("method", "pca")
        return JSONResponse(await run(explorer.latent_map, method))

    async def refused(request: Request, exc: Exception) -> Response:
        status = exc.status if isinstance(exc, BadRequest) else 400
        return JSONResponse({"error": str(exc)}, status_code=status)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    routes = [
        Route("/", page),
        Route("/api/model", model_info),
        Route("/api/decode", decode, methods=["POST"]),
        Route("/api/encode", encode, methods=["POST"]),
        Route("/api/interpolate", interpolate, methods=["POST"]),
        Route("/api/map", latent_map),
        Mount("/static", StaticFiles(packages=[("vaetool.explore", "static")]), name="static"),
    ]
    middleware = [Middleware(_KnownHosts, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={VaetoolError: refused, BadRequest: refused, HTTPException: http_error})


class _KnownHosts(TrustedHostMiddleware):
    """Starlette's Host check, answering a refused request with ``{"error": …}`` as every other refusal is."""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            given = Headers(scope=scope).get("host", "")
            host = given.split("]")[0] + "]" if given.startswith("[") else given.split(":")[0]  # less the port
            if host not in self.allowed_hosts:
                response = JSONResponse({"error": f"This explorer serves requests for {', '.join(self.allowed_hosts)}, "
                                                  f"not for the host {shown(host)}."}, status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _body(request: Request, limit: int, what: str) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes, whatever the headers claim."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"The {what} is {int(declared):,} bytes; at most {limit:,} are accepted.", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"The {what} is over {limit:,} bytes, the most accepted.", 413)
        chunks.append(chunk)
    return b"".join(chunks)


MAX_DIGITS = 30  # no number a request means has more; Python refuses integers of over 4,300


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise BadRequest(f"The request holds an integer of {len(text.lstrip('-')):,} digits; "
                         f"numbers here have at most {MAX_DIGITS}.")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequest(f"The request holds a number too large for a float ({text[:30]}).")
    return value


def _json_constant(name: str):
    raise BadRequest(f"The request holds {name}, which is not a JSON number; send finite numbers.")


async def _json(request: Request) -> dict[str, Any]:
    data = await _body(request, MAX_JSON_BYTES, "request")
    try:
        body = json.loads(data, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"The request body must be JSON ({exc}).") from exc
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def _only(body: dict[str, Any], allowed: set[str], required: set[str]) -> None:
    missing = sorted(required - body.keys())
    if missing:
        raise BadRequest(f"The request lacks {', '.join(map(repr, missing))}.")
    unknown = sorted(body.keys() - allowed)
    if unknown:
        raise BadRequest(f"Unknown field {unknown[0]!r}; this request takes {', '.join(sorted(allowed))}.")


def _typed(body: dict[str, Any], key: str, kind, default):
    value = body.get(key, default)
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        names = {int: "an integer", str: "a string", bool: "true or false"}
        raise BadRequest(f"{key!r} must be {names.get(kind, 'a number')}, not {shown(value)}.")
    return value


def _query(request: Request, allowed: set[str]) -> dict[str, str]:
    """The query's parameters, each given at most once and each one this request takes."""
    params = request.query_params
    for key in params.keys():
        if key not in allowed:
            takes = f"it takes {', '.join(sorted(allowed))}" if allowed else "it takes none"
            raise BadRequest(f"Unknown query parameter {shown(key)}; {takes}.")
        if len(params.getlist(key)) > 1:
            raise BadRequest(f"The query gives {key} {len(params.getlist(key))} times; give it once.")
    return dict(params)


def _int_param(query: dict[str, str], key: str) -> int | None:
    text = query.get(key)
    if text is None or text == "":
        return None
    if len(text.strip().lstrip("+-")) > MAX_DIGITS:
        raise BadRequest(f"{key} must be an integer of at most {MAX_DIGITS} digits, not {shown(text)}.")
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"{key} must be an integer, not {shown(text)}.") from None


def _data_url(data: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"

"""The HTTP side: a FastAPI app over a ``JobRunner``, and the page in ``static/``.

    GET    /                        the studio page (static HTML + JS)
    GET    /api/info                the pipeline's stages, defaults and the server's limits
    POST   /api/jobs                a job (JSON, or multipart with a ``source`` upload) -> 202 {id, ...}
    GET    /api/jobs                every job, newest first (the gallery)
    GET    /api/jobs/{id}           status, stage, step/total, queue position, error, settings
    GET    /api/jobs/{id}/events    server-sent events: the job's state at every change, at least once a step
    DELETE /api/jobs/{id}           cancel: a queued job at once, a running one within one denoising step
    GET    /api/jobs/{id}/video     the video of a done job (mp4, H.264)
    GET    /openapi.json            this API as an OpenAPI document

Errors are ``{"detail": "one line"}``: 422 a request the CLI would refuse (its words), 429 a
full queue, 413 a body over the upload limit, 401 a missing or wrong token, 404 no such job.
With a token every API call needs ``Authorization: Bearer <token>``; the events and video
URLs (which EventSource and <video> fetch without headers) also take ``?token=``.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile

from .. import __version__
from .jobs import FINISHED, ID_PATTERN, JobRunner, QueueFull, Unavailable
from .options import FIELDS, KINDS, SOURCE_FIELD, RequestError, Upload, request_schema, resolve

STATIC = Path(__file__).parent / "static"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
KEEPALIVE_S = 15.0  # an SSE comment this often: a proxy keeps the stream open, a gone client is noticed


class Guard:
    """ASGI middleware before everything else. The Host header must name an allowed host
    (bound to loopback, a page on another site cannot reach the API by DNS rebinding); a
    state-changing request sent by a page must come from this origin; and a request body over
    ``max_body`` bytes is answered 413, whether its length is declared or not."""

    def __init__(self, app, max_body: int, allowed_hosts: tuple[str, ...] | None):
        self.app, self.max_body, self.allowed_hosts = app, max_body, allowed_hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if self.allowed_hosts is not None and (urlsplit(f"//{host}").hostname or "") not in self.allowed_hosts:
            return await JSONResponse({"detail": f"host {host!r} is not served here"}, 403)(scope, receive, send)
        origin = headers.get("origin")
        if origin and scope["method"] not in ("GET", "HEAD") and urlsplit(origin).netloc != host:
            return await JSONResponse({"detail": f"cross-origin request from {origin} refused"}, 403)(
                scope, receive, send)
        too_large = HTTPException(413, f"request body over the upload limit of {self.max_body} bytes")
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return await JSONResponse({"detail": too_large.detail}, 413)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:
                raise too_large  # from inside the endpoint's body read: answered by FastAPI
            return message

        return await self.app(scope, limited_receive, send)


def _public(snap: dict[str, Any]) -> dict[str, Any]:
    return {**snap, "video": f"/api/jobs/{snap['id']}/video" if snap["status"] == "done" else None}


def _not_found(job_id: str) -> HTTPException:
    return HTTPException(404, f"no job {job_id!r}")


def create_app(runner: JobRunner, token: str | None = None, max_upload_bytes: int = 32 << 20,
               allowed_hosts: tuple[str, ...] | None = LOOPBACK_HOSTS) -> FastAPI:
    """The app. The runner's worker starts and stops with it (its lifespan).
    ``allowed_hosts``: Host header names served (None: any, for a server bound beyond loopback)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        runner.start()
        yield
        await run_in_threadpool(runner.close)

    app = FastAPI(title="magicvideo serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Text-to-video jobs on one pipeline: a bounded queue, one worker, progress as "
                              "server-sent events. Fields and limits as `magicvideo generate|animate|vary|edit`.")
    app.add_middleware(Guard, max_body=max_upload_bytes, allowed_hosts=allowed_hosts)

    def authorize(request: Request, allow_query: bool) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header[:7].lower() == "bearer " else None
        if given is None and allow_query:
            given = request.query_params.get("token")
        if given is None or not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "this server needs its token: Authorization: Bearer <token>",
                                headers={"WWW-Authenticate": "Bearer"})

    def api_auth(request: Request) -> None:
        authorize(request, allow_query=False)

    def media_auth(request: Request) -> None:  # EventSource and <video> cannot set headers
        authorize(request, allow_query=True)

    def job_id_or_404(job_id: str) -> str:
        if not ID_PATTERN.fullmatch(job_id):
            raise _not_found(job_id)
        return job_id

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/info", dependencies=[Depends(api_auth)], summary="The pipeline's stages and defaults, the limits")
    def info() -> dict[str, Any]:
        pipe = runner.pipe
        from ..config import SCHEDULERS

        return {"version": __version__, "kinds": list(KINDS), "schedulers": list(SCHEDULERS),
                "frame_size": pipe.frame_size, "max_frames": pipe.unet.config.max_frames,
                "stages": {"interpolation": pipe.has_stage("interpolation"), "super-resolution": pipe.has_stage("sr")},
                "defaults": dataclasses.asdict(pipe.defaults),
                "limits": {"queue": runner.max_queue, "upload_bytes": max_upload_bytes}}

    body_doc = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": request_schema()},
        "multipart/form-data": {"schema": {**request_schema(), "properties": {
            **request_schema()["properties"],
            SOURCE_FIELD: {"type": "string", "format": "binary",
                           "description": "animate: the image; vary / edit: the source video"}}}}}}}

    @app.post("/api/jobs", status_code=202, dependencies=[Depends(api_auth)], openapi_extra=body_doc,
              summary="Queue a generate / animate / vary / edit job",
              responses={202: {"description": "queued: the job's state, with its id"},
                         413: {"description": "body over the upload limit"}, 422: {"description": "bad request"},
                         429: {"description": "the queue is full"}})
    async def submit(request: Request) -> JSONResponse:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        upload = None
        if ctype == "application/json":
            try:
                raw = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise HTTPException(422, "the body is not valid JSON") from None
            if not isinstance(raw, dict):
                raise HTTPException(422, "expected a JSON object of job fields")
        elif ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            raw = {}
            async with request.form(max_files=1, max_fields=len(FIELDS)) as form:
                for key, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        if key != SOURCE_FIELD:
                            raise HTTPException(422, f"unknown file field {key!r}; the upload goes in {SOURCE_FIELD!r}")
                        upload = Upload(value.filename or "", await value.read())
                    elif key in raw:
                        raise HTTPException(422, f"field {key!r} given twice")
                    else:
                        raw[key] = value
        else:
            raise HTTPException(415, "send the job as application/json or multipart/form-data")
        try:
            spec = await run_in_threadpool(resolve, runner.pipe, raw, upload)
            snap = await run_in_threadpool(runner.submit, spec)
        except RequestError as err:
            raise HTTPException(422, str(err)) from None
        except QueueFull as err:
            raise HTTPException(429, str(err), headers={"Retry-After": str(err.retry_after)}) from None
        except Unavailable as err:
            raise HTTPException(503, str(err)) from None
        return JSONResponse(_public(snap), status_code=202, headers={"Location": f"/api/jobs/{snap['id']}"})

    @app.get("/api/jobs", dependencies=[Depends(api_auth)], summary="Every job, newest first")
    def history() -> list[dict[str, Any]]:
        return [_public(s) for s in runner.history()]

    @app.get("/api/jobs/{job_id}", dependencies=[Depends(api_auth)], summary="A job's state")
    def job(job_id: str) -> dict[str, Any]:
        snap = runner.get(job_id_or_404(job_id))
        if snap is None:
            raise _not_found(job_id)
        return _public(snap)

    @app.delete("/api/jobs/{job_id}", status_code=202, dependencies=[Depends(api_auth)],
                summary="Cancel a job (a running one stops within one denoising step)")
    def cancel(job_id: str) -> dict[str, Any]:
        snap = runner.cancel(job_id_or_404(job_id))
        if snap is None:
            raise _not_found(job_id)
        if snap["status"] in FINISHED and snap["status"] != "cancelled":
            raise HTTPException(409, f"job {job_id} is already {snap['status']}")
        return _public(snap)

    @app.get("/api/jobs/{job_id}/events", dependencies=[Depends(media_auth)],
             summary="Server-sent events: the job's state at every change until it ends",
             response_class=StreamingResponse)
    async def events(job_id: str) -> StreamingResponse:
        loop = asyncio.get_running_loop()
        changes: asyncio.Queue = asyncio.Queue()

        def notify(snap: dict) -> None:  # on the worker thread
            loop.call_soon_threadsafe(changes.put_nowait, snap)

        first = runner.subscribe(job_id_or_404(job_id), notify)
        if first is None:
            raise _not_found(job_id)

        async def stream():
            try:
                snap = first
                while True:
                    yield f"data: {json.dumps(_public(snap))}\n\n"
                    if snap["status"] in FINISHED:
                        return
                    while True:
                        try:
                            snap = await asyncio.wait_for(changes.get(), KEEPALIVE_S)
                            break
                        except asyncio.TimeoutError:
                            yield ": keep-alive\n\n"
            finally:
                runner.unsubscribe(job_id, notify)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/api/jobs/{job_id}/video", dependencies=[Depends(media_auth)], response_class=FileResponse,
             summary="The video of a done job (mp4)")
    def video(job_id: str) -> FileResponse:
        path = runner.video_path(job_id_or_404(job_id))
        if path is None:
            snap = runner.get(job_id)
            raise _not_found(job_id) if snap is None else HTTPException(404, f"job {job_id} is {snap['status']}: "
                                                                             "no video")
        return FileResponse(path, media_type="video/mp4", filename=f"magicvideo-{job_id}.mp4",
                            content_disposition_type="inline")

    return app

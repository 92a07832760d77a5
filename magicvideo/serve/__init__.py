"""``magicvideo serve``: a local web studio and an HTTP job API over one pipeline.

One process: an ASGI app (``app.py``, FastAPI) in front of a bounded job queue, and one worker
thread that owns the loaded pipeline and runs one job at a time (``jobs.py``). A request is
checked with the CLI's own checks before it is queued (``options.py``). The page in
``static/`` is plain HTML and JS over the same API. ``command.py`` is the CLI entry point.

Nothing here is imported by ``magicvideo --help``: FastAPI, uvicorn and torch load only when
the server starts. They come with the ``serve`` extra (``pip install -e ".[serve]"``).
"""

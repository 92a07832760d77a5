"""``magicvideo serve``: every check that needs no model first (host and token, port, outputs,
the extra installed), then the pipeline, then the server on the socket bound at the start."""
from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os
import socket
import sys
from pathlib import Path

TOKEN_ENV = "MAGICVIDEO_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it may resolve to anything
        return False


def _listen(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        raise ValueError(f"cannot listen on {host}:{port} ({err.strerror or err})") from None
    sock.set_inheritable(True)
    return sock


def serve(args: argparse.Namespace) -> int:
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    loopback = is_loopback(args.host)
    if not loopback and not token:
        raise ValueError(f"--host {args.host} is reachable from other machines: give --token (or set {TOKEN_ENV}), "
                         "a secret every API call must carry")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be between 0 and 65535, got {args.port}")
    modules = {"fastapi": ("fastapi",), "uvicorn": ("uvicorn",), "python-multipart": ("python_multipart", "multipart")}
    missing = [package for package, names in modules.items() if not any(importlib.util.find_spec(n) for n in names)]
    if missing:
        raise ValueError(f"serve needs the serve extra: pip install 'magicvideo[serve]' ({missing[0]} is missing)")
    outputs = Path(args.outputs)
    try:
        outputs.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--outputs {outputs}: cannot create it ({err.strerror})") from None
    if not os.access(outputs, os.W_OK):
        raise ValueError(f"--outputs {outputs}: not writable")
    sock = _listen(args.host, args.port)
    try:
        from ..pipeline import MagicVideoPipeline
        from .app import LOOPBACK_HOSTS, create_app
        from .jobs import JobRunner

        pipe = MagicVideoPipeline.from_pretrained(args.pipeline, device=args.device)
        runner = JobRunner(pipe, outputs, max_queue=args.queue_size)
        app = create_app(runner, token=token, max_upload_bytes=int(args.max_upload_mb * 2 ** 20),
                         allowed_hosts=(*LOOPBACK_HOSTS, args.host) if loopback else None)
        if not loopback:
            print(f"magicvideo serve: warning: listening on {args.host}, reachable from other machines; every API "
                  "call needs the token (plain HTTP: use it only on a network you trust, or behind TLS)",
                  file=sys.stderr)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"magicvideo serve: http://{shown}:{port}/" + (" (open it once as /?token=<token>)" if token else "")
              + f", outputs in {outputs}; Ctrl-C stops", flush=True)
        import uvicorn

        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0

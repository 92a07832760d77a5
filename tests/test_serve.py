"""`magicvideo serve`: the job API against the real app and a tiny pipeline.

The app runs under FastAPI's TestClient (its worker thread and all) except where a test
needs a real process: the kill test starts `python -m magicvideo serve` and SIGKILLs it.
Waiting is done on the job's own event stream, never by sleeping.
"""
from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from magicvideo.cli import main
from magicvideo.pipeline import MagicVideoPipeline
from magicvideo.serve.app import create_app
from magicvideo.serve.jobs import STOPPED, JobRunner
from magicvideo.video_io import read_video, write_video

LONG = {"prompt": "a red circle moving right", "num_frames": 2, "steps": 400}  # runs until cancelled


@pytest.fixture(scope="module")
def pipe(pipeline_dir):
    return MagicVideoPipeline.from_pretrained(pipeline_dir)


@contextmanager
def serving(pipe, outputs: Path, max_queue: int = 4, **app_options):
    runner = JobRunner(pipe, outputs, max_queue=max_queue)
    with TestClient(create_app(runner, **app_options), base_url="http://127.0.0.1") as client:
        yield client


def events(client, job_id: str, **params):
    """The job's server-sent events, decoded, until the stream ends (or the caller stops)."""
    with client.stream("GET", f"/api/jobs/{job_id}/events", params=params) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                yield json.loads(line[len("data: "):])


def wait_until(client, job_id: str, condition) -> dict:
    for snap in events(client, job_id):
        if condition(snap):
            return snap
    raise AssertionError(f"job {job_id} ended as {snap['status']} before the condition held")


def finish(client, job_id: str) -> dict:
    return wait_until(client, job_id, lambda s: s["status"] in ("done", "failed", "cancelled"))


def submit(client, **fields) -> dict:
    response = client.post("/api/jobs", json=fields)
    assert response.status_code == 202, response.text
    return response.json()


def test_a_generate_job_reports_every_step_and_ends_in_the_pipelines_video(pipe, tmp_path):
    with serving(pipe, tmp_path) as client:
        blocker = submit(client, **LONG)  # holds the worker until the job's events are followed
        wait_until(client, blocker["id"], lambda s: s["status"] == "running")
        response = client.post("/api/jobs", json={"prompt": "a blue square moving up", "num_frames": 4, "steps": 4,
                                                  "seed": 3, "fps": 6, "scheduler": "ddim"})
        assert response.status_code == 202
        job = response.json()
        assert re.fullmatch(r"[0-9a-f]{16}", job["id"]) and response.headers["location"] == f"/api/jobs/{job['id']}"
        stream = events(client, job["id"])
        first = next(stream)
        assert first["status"] == "queued" and first["queue_position"] == 1
        client.delete(f"/api/jobs/{blocker['id']}")
        seen = [first, *stream]
        assert seen[-1]["status"] == "done" and seen[-1]["video"] == f"/api/jobs/{job['id']}/video"
        keyframe_steps = [s["step"] for s in seen if s["stage"] == "keyframes" and s["status"] == "running"]
        assert sorted(set(keyframe_steps)) == [1, 2, 3, 4]  # at least one event per denoising step
        assert {s["total"] for s in seen if s["stage"] == "keyframes"} == {4}
        stages = [s["stage"] for s in seen if s["stage"]]
        assert stages.index("keyframes") < stages.index("decoding")
        video = client.get(f"/api/jobs/{job['id']}/video")
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        (tmp_path / "got.mp4").write_bytes(video.content)
        frames, fps = read_video(tmp_path / "got.mp4")
        settings = client.get(f"/api/jobs/{job['id']}").json()["settings"]
    direct = pipe("a blue square moving up", num_frames=4, steps=4, seed=3, fps=6, scheduler="ddim", progress=False)
    expected, _ = read_video(write_video(direct.frames, tmp_path / "direct.mp4", fps=direct.fps))
    assert frames.shape == (4, 16, 16, 3) and fps == pytest.approx(6.0)
    assert np.abs(frames.astype(float) - expected).mean() < 0.5  # the video the pipeline makes, as the CLI writes it
    record = json.loads((tmp_path / f"{job['id']}.json").read_text())
    assert record["status"] == "done" and record["settings"] == settings
    assert settings == {"kind": "generate", "prompt": "a blue square moving up", "seed": 3, "fps": 6.0, "steps": 4,
                        "guidance": 5.0, "scheduler": "ddim", "interpolate": False, "upscale": False,
                        "num_frames": 4, "context_frames": None}


def test_cancel_stops_a_running_job_within_one_step_and_frees_the_worker(pipe, tmp_path):
    with serving(pipe, tmp_path) as client:
        job = submit(client, **LONG)
        wait_until(client, job["id"], lambda s: s["step"] >= 2)
        response = client.delete(f"/api/jobs/{job['id']}")
        assert response.status_code == 202
        at_cancel = response.json()["step"]
        seen = list(events(client, job["id"]))
        assert seen[-1]["status"] == "cancelled" and seen[-1]["error"] is None
        assert seen[-1]["step"] <= at_cancel + 1 < LONG["steps"]
        assert client.get(f"/api/jobs/{job['id']}/video").status_code == 404
        assert client.delete(f"/api/jobs/{job['id']}").json()["status"] == "cancelled"  # idempotent
        after = submit(client, prompt="a green square", num_frames=2, steps=1)
        assert finish(client, after["id"])["status"] == "done"
    assert json.loads((tmp_path / f"{job['id']}.json").read_text())["status"] == "cancelled"
    assert not (tmp_path / f"{job['id']}.mp4").exists()


def test_a_long_video_is_written_as_its_windows_finish_and_a_cancel_leaves_nothing(pipe, tmp_path):
    """More keyframes than one window: the worker writes the first window's frames while the
    second is sampled (the pipeline's stream; a long video is never held whole), and a cancel
    then removes the half-written file."""
    with serving(pipe, tmp_path) as client:
        job = submit(client, prompt="a red circle moving right", num_frames=12, steps=200)  # windows of 8
        decoded = False

        def in_second_window(snap: dict) -> bool:
            nonlocal decoded
            decoded = decoded or snap["stage"] == "decoding"
            return decoded and snap["stage"] == "keyframes"

        wait_until(client, job["id"], in_second_window)
        partial = list(tmp_path.glob(f".{job['id']}.mp4.tmp-*"))
        assert len(partial) == 1 and partial[0].stat().st_size > 0  # the first window's frames, encoded
        assert client.delete(f"/api/jobs/{job['id']}").status_code == 202
        assert finish(client, job["id"])["status"] == "cancelled"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{job['id']}.json"]  # no video, no temporary


def test_a_full_queue_is_429_and_a_queued_job_cancels_at_once(pipe, tmp_path):
    with serving(pipe, tmp_path, max_queue=1) as client:
        running = submit(client, **LONG)
        wait_until(client, running["id"], lambda s: s["status"] == "running")
        queued = submit(client, prompt="a red circle", num_frames=2, steps=1)
        assert queued["status"] == "queued" and queued["queue_position"] == 1
        full = client.post("/api/jobs", json={"prompt": "a red circle", "num_frames": 2, "steps": 1})
        assert full.status_code == 429 and "queue is full" in full.json()["detail"]
        assert 1 <= int(full.headers["retry-after"]) <= 60  # about the running job's expected rest
        cancelled = client.delete(f"/api/jobs/{queued['id']}").json()
        assert cancelled["status"] == "cancelled" and cancelled["started"] is None  # it never ran
        assert client.post("/api/jobs", json={"prompt": "a red circle", "num_frames": 2, "steps": 1}).status_code == 202
        client.delete(f"/api/jobs/{running['id']}")
        assert finish(client, running["id"])["status"] == "cancelled"
        statuses = [j["status"] for j in client.get("/api/jobs").json()]
        assert len(statuses) == 3  # the 429 left no trace


@pytest.mark.parametrize("fields, message", [
    ({"prompt": "   "}, "prompt is empty"),
    ({}, "prompt is empty"),
    ({"prompt": "a red circle", "fps": 0}, "fps: must be > 0, got 0"),
    ({"prompt": "a red circle", "steps": "many"}, "steps: not an integer: 'many'"),
    ({"prompt": "a red circle", "guidance": -1}, "guidance: must be >= 0, got -1"),
    ({"prompt": "a red circle", "scheduler": "euler"}, "unknown scheduler 'euler'; choose one of ddim, dpm"),
    ({"prompt": "a red circle", "num_frames": 2000}, "num_frames must be between 1 and 1024"),
    ({"prompt": "a red circle", "interpolate": True}, "this pipeline has no 'interpolation' stage"),
    ({"prompt": "a red circle", "output": "/etc/passwd"}, "unknown field 'output'"),
    ({"prompt": "a red circle", "strength": 0.5}, "generate does not take 'strength'"),
    ({"kind": "animate"}, "animate needs an image upload (multipart field 'source')"),
    ({"kind": "train", "prompt": "x"}, "kind must be one of generate, animate, vary, edit, got 'train'"),
    ({"prompt": "a red circle", "upscale": "maybe"}, "upscale: expected true or false, got 'maybe'"),
    ({"prompt": "a red circle", "seed": -1}, "seed"),  # refused at submission, not when the job runs
    ({"prompt": "a red circle", "seed": 2**64}, "seed"),
])
def test_a_request_the_cli_refuses_is_422_with_one_line(pipe, tmp_path, fields, message):
    with serving(pipe, tmp_path) as client:
        response = client.post("/api/jobs", json=fields)
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert isinstance(detail, str) and message in detail and "\n" not in detail
        assert client.get("/api/jobs").json() == []  # nothing queued, nothing written
    assert list(tmp_path.iterdir()) == []


def test_the_422_messages_are_the_clis_own(pipe, tmp_path, capsys, pipeline_dir):
    with serving(pipe, tmp_path) as client:
        api = {name: client.post("/api/jobs", json={"prompt": prompt, name: value}).json()["detail"]
               for name, prompt, value in (("fps", "a red circle", "0"), ("steps", "a red circle", "0"),
                                           ("prompt", "", ""))}
    for flag, value in (("--fps", "0"), ("--steps", "0")):
        with pytest.raises(SystemExit):
            main(["generate", "a red circle", "-o", str(tmp_path / "x.mp4"), flag, value])
        cli = capsys.readouterr().err.strip()  # magicvideo generate: error: argument --fps: must be > 0, got 0
        assert cli.endswith(api[flag[2:]].split(": ", 1)[1]) and cli.split("argument ")[1].startswith(flag)
    assert main(["generate", "", "-o", str(tmp_path / "x.mp4"), "--pipeline", str(pipeline_dir)]) == 2
    assert capsys.readouterr().err.strip() == f"magicvideo generate: error: {api['prompt']}"


def _png(width: int, height: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_animate_vary_and_edit_take_an_upload(pipe, tmp_path):
    source = tmp_path / "source.mp4"
    write_video((np.random.default_rng(1).random((5, 20, 24, 3)) * 255).astype(np.uint8), source, fps=5)
    outputs = tmp_path / "out"
    with serving(pipe, outputs) as client:
        jobs = {
            "animate": client.post("/api/jobs", data={"kind": "animate", "num_frames": "3", "steps": "2"},
                                   files={"source": ("cat.png", _png(30, 20), "image/png")}),
            "vary": client.post("/api/jobs", data={"kind": "vary", "steps": "2", "strength": "0.5", "seed": "4"},
                                files={"source": ("clip.mp4", source.read_bytes(), "video/mp4")}),
            "edit": client.post("/api/jobs", data={"kind": "edit", "prompt": "a blue square", "steps": "2"},
                                files={"source": ("clip.mp4", source.read_bytes(), "video/mp4")}),
        }
        for kind, response in jobs.items():
            assert response.status_code == 202, (kind, response.text)
            assert finish(client, response.json()["id"])["status"] == "done", kind
        settings = {kind: client.get(f"/api/jobs/{r.json()['id']}").json()["settings"] for kind, r in jobs.items()}
        bad = client.post("/api/jobs", data={"kind": "animate"}, files={"source": ("notes.txt", b"hello", "text/plain")})
        assert bad.status_code == 422 and bad.json()["detail"].startswith("notes.txt: not a readable image")
        small = client.post("/api/jobs", data={"kind": "animate"}, files={"source": ("dot.png", _png(4, 4), "image/png")})
        assert small.status_code == 422 and small.json()["detail"] == "dot.png: 4x4 is too small (at least 8x8)"
        stray = client.post("/api/jobs", data={"prompt": "x"}, files={"source": ("cat.png", _png(30, 20), "image/png")})
        assert stray.status_code == 422 and stray.json()["detail"] == "generate takes no upload"
    assert settings["animate"]["source"] == "cat.png" and settings["animate"]["anchor"] is True
    assert settings["animate"]["guidance"] == 2.5  # an image condition's default, as `magicvideo animate`
    assert settings["vary"]["fps"] == 5.0 and settings["vary"]["num_frames"] == 5  # the source's rate and length
    assert settings["vary"]["strength"] == 0.5 and settings["edit"]["strength"] == 0.7
    lengths = {kind: read_video(outputs / f"{r.json()['id']}.mp4")[0].shape for kind, r in jobs.items()}
    assert lengths == {"animate": (3, 16, 16, 3), "vary": (5, 16, 16, 3), "edit": (5, 16, 16, 3)}


def test_a_body_over_the_upload_limit_is_413(pipe, tmp_path):
    with serving(pipe, tmp_path, max_upload_bytes=4096) as client:
        declared = client.post("/api/jobs", data={"kind": "animate"},
                               files={"source": ("big.png", b"\0" * 8192, "image/png")})
        assert declared.status_code == 413 and "upload limit of 4096 bytes" in declared.json()["detail"]

        def chunks():  # no Content-Length: counted as it arrives
            yield b'{"prompt": "' + b"a" * 8192 + b'"}'

        streamed = client.post("/api/jobs", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert client.post("/api/jobs", json={"prompt": "a red circle", "num_frames": 1, "steps": 1}).status_code == 202


def test_the_history_survives_a_restart(pipe, tmp_path):
    with serving(pipe, tmp_path) as client:
        job = submit(client, prompt="a red circle moving left", num_frames=2, steps=1, seed=7)
        assert finish(client, job["id"])["status"] == "done"
        before = client.get("/api/jobs").json()
    with serving(pipe, tmp_path) as client:
        after = client.get("/api/jobs").json()
        assert after == before and after[0]["settings"]["seed"] == 7 and after[0]["video"]
        assert client.get(after[0]["video"]).status_code == 200
        again = submit(client, prompt="a red circle moving left", num_frames=2, steps=1)
        assert finish(client, again["id"])["status"] == "done"
        assert [j["id"] for j in client.get("/api/jobs").json()] == [again["id"], job["id"]]  # newest first


def test_a_job_killed_with_the_server_is_failed_on_the_next_start_and_leaves_no_video(pipe, pipeline_dir, tmp_path):
    outputs = tmp_path / "out"
    server = subprocess.Popen([sys.executable, "-m", "magicvideo", "serve", "--port", "0", "--pipeline",
                               str(pipeline_dir), "--outputs", str(outputs)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        line = server.stdout.readline()  # printed once the socket listens and the pipeline is loaded
        url = re.search(r"http://\S+?/", line)
        assert url, (line, server.stderr.read() if server.poll() is not None else "")
        with httpx.Client(base_url=url.group(0), timeout=60) as client:
            job = client.post("/api/jobs", json=LONG).json()
            wait_until(client, job["id"], lambda s: s["step"] >= 1)
        server.send_signal(signal.SIGKILL)
        server.wait(30)
    finally:
        server.kill()
        server.wait(30)
        server.stdout.close()
        server.stderr.close()
    assert json.loads((outputs / f"{job['id']}.json").read_text())["status"] == "running"
    # what a kill during the final writes could leave: the finished video, a temporary file
    (outputs / f"{job['id']}.mp4").write_bytes(b"not yet recorded as done")
    (outputs / f".{job['id']}.json.x1y2.tmp").write_text("{")
    with serving(pipe, outputs) as client:
        snap = client.get(f"/api/jobs/{job['id']}").json()
        assert snap["status"] == "failed" and snap["error"] == STOPPED and snap["video"] is None
        assert client.get(f"/api/jobs/{job['id']}/video").status_code == 404
    assert sorted(p.name for p in outputs.iterdir()) == [f"{job['id']}.json"]
    assert json.loads((outputs / f"{job['id']}.json").read_text())["status"] == "failed"


def test_off_localhost_a_token_is_needed_on_every_api_call(pipe, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MAGICVIDEO_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "--host 0.0.0.0 is reachable from other machines: give --token" in capsys.readouterr().err
    with serving(pipe, tmp_path, token="s3cret", allowed_hosts=None) as client:
        assert client.get("/").status_code == 200  # the page itself holds nothing; it asks for the token
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            for method, path in (("GET", "/api/jobs"), ("GET", "/api/info"), ("POST", "/api/jobs")):
                response = client.request(method, path, headers=headers, json={"prompt": "x"})
                assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        auth = {"Authorization": "Bearer s3cret"}
        job = client.post("/api/jobs", json={"prompt": "a red circle", "num_frames": 1, "steps": 1}, headers=auth).json()
        assert client.get("/api/jobs", params={"token": "s3cret"}).status_code == 401  # headers only, but...
        assert finish_with_token(client, job["id"])["status"] == "done"  # ...EventSource and <video> use ?token=
        assert client.get(f"/api/jobs/{job['id']}/video", params={"token": "s3cret"}).status_code == 200
        assert client.get(f"/api/jobs/{job['id']}/video", params={"token": "s3cre"}).status_code == 401
        assert client.get(f"/api/jobs/{job['id']}", headers=auth).json()["status"] == "done"


def finish_with_token(client, job_id: str) -> dict:
    for snap in events(client, job_id, token="s3cret"):
        pass
    return snap


def test_requests_name_no_path_and_come_from_this_host(pipe, tmp_path):
    with serving(pipe, tmp_path) as client:
        for job_id in ("..%2F..%2Fetc%2Fpasswd", "0123456789abcdef", "ABCDEF0123456789", "x" * 16):
            assert client.get(f"/api/jobs/{job_id}/video").status_code == 404
            assert client.get(f"/api/jobs/{job_id}").status_code == 404
        rebound = client.get("/api/jobs", headers={"Host": "attacker.example:7860"})
        assert rebound.status_code == 403  # DNS rebinding: another name pointed at 127.0.0.1
        other_site = client.post("/api/jobs", json={"prompt": "x"}, headers={"Origin": "http://attacker.example"})
        assert other_site.status_code == 403
        assert client.post("/api/jobs", content=b"prompt=x", headers={"content-type": "text/plain"}).status_code == 415


def test_the_api_is_described_by_its_openapi_schema(pipe, tmp_path):
    with serving(pipe, tmp_path) as client:
        schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert set(paths) >= {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/events", "/api/jobs/{job_id}/video",
                          "/api/info"}
    assert set(paths["/api/jobs"]) == {"get", "post"} and set(paths["/api/jobs/{job_id}"]) == {"get", "delete"}
    body = paths["/api/jobs"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert "source" in body["multipart/form-data"]["schema"]["properties"]
    assert {"prompt", "seed", "fps", "steps", "guidance", "scheduler", "strength"} <= set(
        body["application/json"]["schema"]["properties"])


def test_serve_help_and_its_checks_import_neither_torch_nor_fastapi():
    code = ("import sys\n"
            "from magicvideo.cli import build_parser, main\n"
            "build_parser().parse_args(['serve', '--port', '8000'])\n"
            "assert main(['serve', '--host', '0.0.0.0']) == 2\n"
            "print(sorted(m for m in ('torch', 'fastapi', 'uvicorn', 'starlette') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if k != "MAGICVIDEO_TOKEN"})
    assert result.stdout.splitlines() == ["[]"], result.stderr
    assert "give --token" in result.stderr
    help_text = subprocess.run([sys.executable, "-m", "magicvideo", "serve", "--help"], capture_output=True,
                               text=True, check=True).stdout
    assert "--token" in help_text and "--outputs" in help_text and "--queue-size" in help_text


def test_a_record_that_cannot_be_written_fails_its_job_not_the_worker(pipe, tmp_path, monkeypatch):
    """Disk full while a job ends: that job fails with the reason, its video is removed, and the
    worker goes on to the next job; a submit that cannot be recorded is 503, not a traceback."""
    original, calls = JobRunner._write, []

    def flaky_write(self, job):
        calls.append(job.status)
        if job.status == "done" and len(calls) <= 4:  # the first job's final record
            raise OSError(28, "No space left on device")
        original(self, job)

    monkeypatch.setattr(JobRunner, "_write", flaky_write)
    with serving(pipe, tmp_path) as client:
        first = submit(client, prompt="a red circle moving right", num_frames=2, steps=1)
        ended = wait_until(client, first["id"], lambda s: s["status"] in ("done", "failed"))
        assert ended["status"] == "failed" and "No space left on device" in ended["error"]
        assert not (tmp_path / f"{first['id']}.mp4").exists()
        second = submit(client, prompt="a blue square moving up", num_frames=2, steps=1)
        assert wait_until(client, second["id"], lambda s: s["status"] in ("done", "failed"))["status"] == "done"

        monkeypatch.setattr(JobRunner, "_write", lambda self, job: (_ for _ in ()).throw(OSError(28, "No space")))
        refused = client.post("/api/jobs", json={"prompt": "a red circle", "num_frames": 2, "steps": 1})
        assert refused.status_code == 503 and "cannot write under --outputs" in refused.json()["detail"]


def test_the_info_call_loads_no_optional_stage(tmp_path):
    """The page's first call (/api/info) says which stages exist without loading their weights
    (from_pretrained defers them to their first use)."""
    from magicvideo.pipeline import MagicVideoPipeline

    shipped = MagicVideoPipeline.from_pretrained()
    with serving(shipped, tmp_path) as client:
        stages = client.get("/api/info").json()["stages"]
    assert stages == {"interpolation": True, "super-resolution": True}
    assert set(shipped._loaders) == {"interpolation", "sr"}  # still deferred

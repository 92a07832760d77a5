"""The studio page in a real browser: Debian's Chromium, headless, driven by playwright.

The real server (uvicorn on a free port, a tiny pipeline) runs in a thread; the browser is the
system's `chromium` (playwright never downloads one here). Skipped only when chromium is not
installed: `.ci/run` installs it.
"""
from __future__ import annotations

import shutil
import socket
import threading
from contextlib import contextmanager

import httpx
import pytest

from magicvideo.pipeline import MagicVideoPipeline
from magicvideo.serve.app import create_app
from magicvideo.serve.jobs import JobRunner

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                                         "(apt-get install chromium; .ci/run installs it)")
VIDEO_PLAYS = "() => { const v = document.querySelector('#video'); return v.readyState >= 1 && v.duration > 0; }"


@contextmanager
def live_server(pipe, outputs, token=None):
    """The app under uvicorn on 127.0.0.1, on a socket bound before the thread starts (so the
    first request just waits in the backlog)."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    runner = JobRunner(pipe, outputs, max_queue=4)
    server = uvicorn.Server(uvicorn.Config(create_app(runner, token=token), log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def pipe(pipeline_dir):
    return MagicVideoPipeline.from_pretrained(pipeline_dir)


@pytest.fixture(scope="module")
def server(pipe, tmp_path_factory):
    with live_server(pipe, tmp_path_factory.mktemp("outputs")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda err: page.errors.append(str(err)))
    yield page
    context.close()
    assert page.errors == []  # no uncaught script error on any page


def record_status(page) -> None:
    """Keep every text #status shows (a fast job passes through its steps quicker than a poll)."""
    page.evaluate("""() => { window.statusLog = [];
        new MutationObserver(() => window.statusLog.push(document.querySelector('#status').textContent))
            .observe(document.querySelector('#status'), {childList: true, characterData: true, subtree: true}); }""")


def fill_job(page, prompt: str, steps: int, frames: int = 4) -> None:
    page.fill("#prompt", prompt)
    page.fill("#num_frames", str(frames))
    page.fill("#steps", str(steps))


def run_long_job(server: str) -> str:
    """A job that holds the worker until cancelled; returns its id once it runs."""
    # 1,000 steps (the schedule's length, the most a job may ask) hold a tiny model long enough
    job = httpx.post(f"{server}/api/jobs", json={"prompt": "a long job", "num_frames": 2, "steps": 1000}).json()
    with httpx.stream("GET", f"{server}/api/jobs/{job['id']}/events", timeout=60) as events:
        for line in events.iter_lines():
            if '"status": "running"' in line:
                return job["id"]
    raise AssertionError("the long job never ran")


def test_the_page_generates_a_playable_video_with_live_progress(page, server):
    from playwright.sync_api import expect

    page.goto(server)
    expect(page.locator("#pipeline-info")).to_contain_text("16px keyframes")
    expect(page.locator("#interpolate")).to_be_disabled()  # the tiny pipeline has no interpolation stage
    record_status(page)
    fill_job(page, "a red circle moving right", steps=8)
    blocker = run_long_job(server)  # so the page's job waits in the queue until its events are followed
    page.click("#generate")
    expect(page.locator("#status")).to_have_text("Queued: position 1 in the queue")
    page.wait_for_function("() => events !== null && events.readyState === EventSource.OPEN")
    assert httpx.delete(f"{server}/api/jobs/{blocker}").status_code == 202
    expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
    log = page.evaluate("window.statusLog")
    assert {f"Running: keyframes, step {i} of 8" for i in range(1, 9)} <= set(log), log
    page.wait_for_function(VIDEO_PLAYS, timeout=30_000)
    assert page.evaluate("document.querySelector('#video').videoWidth") == 16
    href = page.get_attribute("#download", "href")
    assert href.startswith("/api/jobs/") and href.endswith("/video")
    assert httpx.get(server + href).content[4:8] == b"ftyp"  # the download is the mp4
    card = page.locator("#gallery .card", has_text="a red circle moving right")
    expect(card).to_have_count(1)
    settings = card.evaluate("c => Object.fromEntries([...c.querySelectorAll('dt')].map("
                             "dt => [dt.textContent, dt.nextElementSibling.textContent]))")
    assert settings["steps"] == "8" and settings["frames"] == "4" and settings["scheduler"] == "dpm"


def test_cancel_in_the_page_stops_the_running_job(page, server):
    from playwright.sync_api import expect

    page.goto(server)
    fill_job(page, "a blue square moving up", steps=400, frames=2)
    page.click("#generate")
    expect(page.locator("#status")).to_contain_text("step", timeout=30_000)
    page.click("#cancel")
    expect(page.locator("#status")).to_have_text("Cancelled", timeout=30_000)
    job_id = page.text_content("#job-id")
    snap = httpx.get(f"{server}/api/jobs/{job_id}").json()
    assert snap["status"] == "cancelled" and snap["step"] < 400
    expect(page.locator("#history")).to_contain_text("cancelled")


def test_errors_appear_on_the_page_in_words(page, server, tmp_path):
    from playwright.sync_api import expect

    page.goto(server)
    page.fill("#prompt", "   ")
    page.click("#generate")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_have_text("prompt is empty")
    page.fill("#prompt", "a red circle")
    page.fill("#fps", "0")
    page.click("#generate")
    expect(page.locator("#error")).to_have_text("fps: must be > 0, got 0")
    page.check("input[value=animate]")
    (tmp_path / "notes.txt").write_text("not an image")
    page.set_input_files("#source", str(tmp_path / "notes.txt"))
    page.fill("#fps", "")
    page.click("#generate")
    expect(page.locator("#error")).to_contain_text("notes.txt: not a readable image")


def test_the_gallery_is_there_again_after_a_restart(page, pipe, tmp_path):
    from playwright.sync_api import expect

    with live_server(pipe, tmp_path) as url:
        job = httpx.post(f"{url}/api/jobs", json={"prompt": "a green circle", "num_frames": 2, "steps": 1}).json()
        with httpx.stream("GET", f"{url}/api/jobs/{job['id']}/events") as events:
            assert '"done"' in "".join(events.iter_text())
    with live_server(pipe, tmp_path) as url:
        page.goto(url)
        card = page.locator("#gallery .card", has_text="a green circle")
        expect(card).to_have_count(1)
        page.wait_for_function("() => { const v = document.querySelector('#gallery .card video');"
                               " return v && v.readyState >= 1 && v.duration > 0; }", timeout=30_000)
        card.get_by_text("show").click()
        page.wait_for_function(VIDEO_PLAYS, timeout=30_000)


def test_with_a_token_the_page_works_once_opened_with_it(page, pipe, tmp_path):
    from playwright.sync_api import expect

    with live_server(pipe, tmp_path, token="s3cret") as url:
        page.goto(url)
        expect(page.locator("#error")).to_contain_text("needs its token")
        page.goto(f"{url}/?token=s3cret")
        assert "token" not in page.url  # kept by the browser, taken out of the address bar
        fill_job(page, "a red square", steps=2, frames=2)
        page.click("#generate")
        page.wait_for_function(VIDEO_PLAYS, timeout=60_000)  # events and video carry the token as ?token=
        page.reload()
        expect(page.locator("#gallery .card")).to_have_count(1)

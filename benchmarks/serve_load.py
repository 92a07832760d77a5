"""Load and speed of ``magicvideo serve``: concurrent clients on a real server process.

    python benchmarks/serve_load.py --out docs/serve_load.json [--pipeline DIR] [--clients 20]
        [--jobs 100] [--screenshot docs/serve.png]

The server is ``python -m magicvideo serve`` on a free port (default pipeline: the shipped
tiny one); the clients are threads here, each with its own HTTP connection. Measured:

1. Outcomes: ``--clients`` clients submit ``--jobs`` small jobs (4 keyframes, 4 steps, no
   interpolation or super-resolution), each client one job at a time, following it over
   server-sent events; every 10th job is cancelled right after it is accepted. A client
   answered 429 (the queue of 16 is full) waits the Retry-After the server gives and tries
   again, 3 tries in all, then counts the job rejected. Every job must end done, cancelled or
   rejected 429: none lost, none failed; every done video is fetched and must decode.
2. Memory: the server process's resident set (VmRSS) after its first job and after the run;
   the run must stay within 10% of the first.
3. Latency: GET / (the page) and GET /api/jobs/{id} timed while one long job runs (nothing
   else going on) and during the load; the page's p95 must be under 100 ms while a job runs.
4. Events: one job through the whole cascade (keyframes, decoding, interpolation,
   super-resolution) followed over SSE; every step of every stage must produce an event.

With ``--screenshot`` the page (Debian's Chromium, headless) types a prompt, generates with
interpolation and waits for the video, then saves a picture with the gallery. Prints what it
measured with the machine; writes ``--out``; exits 1 when a threshold is missed.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

SMALL_JOB = {"prompt": "a red circle moving right", "num_frames": 4, "steps": 4, "interpolate": False,
             "upscale": False}
PROMPTS = ["a red circle moving right", "a blue square moving up", "a green triangle moving left",
           "a yellow circle moving down"]
FINISHED = ("done", "failed", "cancelled")
SUBMIT_TRIES = 3  # a client answered 429 waits the Retry-After and tries again, then gives the job up
RSS_GROWTH_LIMIT = 0.10
PAGE_P95_LIMIT_MS = 100.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def stream_events(client: httpx.Client, job_id: str):
    """The job's states from its server-sent events, until it ends."""
    with client.stream("GET", f"/api/jobs/{job_id}/events", timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: "):
                yield json.loads(line[6:])
    raise RuntimeError(f"the event stream of {job_id} ended early")


def follow(client: httpx.Client, job_id: str, on_event=None, until=None) -> dict:
    """The job's events until it ends (or ``until(state)``); its last state."""
    for snap in stream_events(client, job_id):
        if on_event is not None:
            on_event(snap)
        if snap["status"] in FINISHED or (until is not None and until(snap)):
            return snap


def start_server(pipeline: str | None, outputs: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "magicvideo", "serve", "--port", "0", "--outputs", str(outputs)]
    if pipeline:
        cmd += ["--pipeline", pipeline]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    url = re.search(r"http://\S+?/", line)
    if not url:
        server.kill()
        raise SystemExit(f"the server did not start: {line}{server.stderr.read()}")
    return server, url.group(0).rstrip("/")


def timed_get(client: httpx.Client, path: str) -> float:
    start = time.perf_counter()
    client.get(path).raise_for_status()
    return (time.perf_counter() - start) * 1000


def summary_ms(samples: list[float]) -> dict:
    samples = sorted(samples)
    return {"n": len(samples), "p50": round(statistics.median(samples), 2),
            "p95": round(samples[int(0.95 * (len(samples) - 1))], 2), "max": round(samples[-1], 2)}


def latency_while_running(url: str, samples: int) -> dict:
    """GET / and GET /api/jobs/{id} while one long job runs and nothing else does."""
    with httpx.Client(base_url=url, timeout=30) as client:
        job = client.post("/api/jobs", json={**SMALL_JOB, "steps": 100000}).json()  # the same size, running on
        follow(client, job["id"], until=lambda snap: snap["step"] >= 1)
        page, status = [], []
        for _ in range(samples):
            page.append(timed_get(client, "/"))
            status.append(timed_get(client, f"/api/jobs/{job['id']}"))
            time.sleep(0.02)
        still = client.get(f"/api/jobs/{job['id']}").json()
        client.delete(f"/api/jobs/{job['id']}")
        follow(client, job["id"])
    return {"page": summary_ms(page), "job_status": summary_ms(status), "job_was_running": still["status"] == "running",
            "steps_during_probe": still["step"]}


def events_per_step(url: str, steps: int) -> dict:
    """One job through every stage of the cascade, followed over SSE: per stage, the events
    and the steps they name; every step of every stage must have one."""
    job_fields = {**SMALL_JOB, "num_frames": 2, "steps": steps, "interpolate": True, "upscale": True}
    with httpx.Client(base_url=url, timeout=300) as client:
        blocker = client.post("/api/jobs", json={**SMALL_JOB, "steps": 100000}).json()  # holds the worker
        follow(client, blocker["id"], until=lambda snap: snap["status"] == "running")
        response = client.post("/api/jobs", json=job_fields)
        response.raise_for_status()
        stream = stream_events(client, response.json()["id"])
        seen = [next(stream)]  # followed from before it starts
        client.delete(f"/api/jobs/{blocker['id']}")
        for snap in stream:
            seen.append(snap)
            if snap["status"] in FINISHED:
                break
        stream.close()
        final = seen[-1]
    stages = {}
    for stage in dict.fromkeys(s["stage"] for s in seen if s["stage"] and s["status"] == "running"):
        mine = [s for s in seen if s["stage"] == stage and s["status"] == "running"]
        total = mine[-1]["total"]
        stages[stage] = {"events": len(mine), "total": total, "per_step": round(len(mine) / total, 2),
                         "every_step_seen": sorted({s["step"] for s in mine}) == list(range(1, total + 1))}
    return {"job": job_fields, "status": final["status"], "events": len(seen), "stages": stages,
            "every_step_seen": final["status"] == "done" and all(s["every_step_seen"] for s in stages.values())}


def probe_loop(url: str, stop, results) -> None:
    """GET / and GET /api/jobs/{the running job} every 50 ms until ``stop``; the timings to ``results``."""
    page, status = [], []
    with httpx.Client(base_url=url, timeout=30) as client:
        client.get("/")  # not timed: a new process's first request pays for its client's lazy imports
        while not stop.is_set():
            page.append(timed_get(client, "/"))
            running = [j for j in client.get("/api/jobs").json() if j["status"] == "running"]
            if running:
                status.append(timed_get(client, f"/api/jobs/{running[0]['id']}"))
            time.sleep(0.05)
    results.put((page, status))


def load(url: str, clients: int, jobs: int) -> dict:
    outcomes: list[tuple[str, str | None]] = []  # (outcome, job id)
    answers_429: list[int] = []  # every 429's Retry-After
    lock = threading.Lock()
    counter = iter(range(jobs))
    spawn = multiprocessing.get_context("spawn")
    stop_probe = spawn.Event()

    def client_loop(k: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                for attempt in range(SUBMIT_TRIES):
                    response = client.post("/api/jobs", json={**SMALL_JOB, "prompt": PROMPTS[i % len(PROMPTS)],
                                                              "seed": i})
                    if response.status_code != 429:
                        break
                    with lock:
                        answers_429.append(int(response.headers["retry-after"]))
                    if attempt + 1 < SUBMIT_TRIES:
                        time.sleep(int(response.headers["retry-after"]))
                if response.status_code == 429:
                    with lock:
                        outcomes.append(("rejected_429", None))
                    continue
                response.raise_for_status()
                job_id = response.json()["id"]
                if i % 10 == 3:
                    client.delete(f"/api/jobs/{job_id}")
                final = follow(client, job_id)
                with lock:
                    outcomes.append((final["status"], job_id))

    start = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(clients)]
    results = spawn.Queue()
    prober = spawn.Process(target=probe_loop, args=(url, stop_probe, results))
    prober.start()  # a process of its own: the clients' threads do not delay its timings
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop_probe.set()
    probe_page, probe_status = results.get(timeout=60)
    prober.join()
    wall = time.perf_counter() - start
    counts = {name: sum(1 for o, _ in outcomes if o == name) for name in ("done", "cancelled", "rejected_429", "failed")}
    counts["lost"] = jobs - len(outcomes)
    return {"clients": clients, "submitted": jobs, **counts, "answers_429": len(answers_429),
            "retry_after_s": sorted(set(answers_429)), "wall_s": round(wall, 1),
            "done_ids": [j for o, j in outcomes if o == "done"],
            "latency_ms_under_load": {"page": summary_ms(probe_page),
                                      "job_status": summary_ms(probe_status) if probe_status else None}}


def decode_all(url: str, ids: list[str]) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from magicvideo.video_io import read_video

    ok, bad = 0, []
    with httpx.Client(base_url=url, timeout=60) as client, tempfile.TemporaryDirectory() as tmp:
        for job_id in ids:
            path = Path(tmp) / f"{job_id}.mp4"
            path.write_bytes(client.get(f"/api/jobs/{job_id}/video").content)
            try:
                frames, _ = read_video(path)
                ok += frames.shape[0] == SMALL_JOB["num_frames"]
            except ValueError as err:
                bad.append(str(err))
    return {"decoded": ok, "of": len(ids), "errors": bad[:5]}


def screenshot(pipeline: str | None, path: Path) -> None:
    """A fresh server with a few earlier results in its gallery; the page makes one more."""
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("--screenshot needs Debian's chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_server(pipeline, Path(tmp) / "outputs")
        try:
            with httpx.Client(base_url=url, timeout=300) as client:
                for seed, prompt in enumerate(PROMPTS):
                    job = client.post("/api/jobs", json={"prompt": prompt, "num_frames": 8, "upscale": False,
                                                         "seed": seed}).json()
                    follow(client, job["id"])
            _shoot(chromium, url, path)
        finally:
            server.terminate()
            server.wait(60)


def _shoot(chromium: str, url: str, path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 1380})
        page.goto(url)
        expect(page.locator("#pipeline-info")).to_contain_text("keyframes")
        page.fill("#prompt", "a blue circle moving right")
        page.fill("#num_frames", "8")
        page.uncheck("#upscale")
        page.click("#generate")
        expect(page.locator("#status")).to_contain_text("Done", timeout=300_000)
        page.wait_for_function("() => { const v = document.querySelector('#video');"
                               " return v.readyState >= 2 && v.duration > 0; }")
        page.wait_for_function("() => [...document.querySelectorAll('video')].every(v => v.readyState >= 2)")
        page.evaluate("() => document.querySelectorAll('video').forEach(v => { v.pause(); v.currentTime = v.duration / 2; })")
        page.wait_for_function("() => [...document.querySelectorAll('video')].every(v => !v.seeking && v.readyState >= 2)")
        page.screenshot(path=str(path))
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file for the figures")
    parser.add_argument("--pipeline", default=None, help="pipeline directory (default: the shipped tiny one)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--event-steps", type=int, default=20)
    parser.add_argument("--latency-samples", type=int, default=100)
    parser.add_argument("--screenshot", default=None, help="also save a picture of the page here (.png)")
    args = parser.parse_args()

    import torch

    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "load_average_1min_before": round(os.getloadavg()[0], 2)}  # other work on the machine
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_server(args.pipeline, Path(tmp) / "outputs")
        try:
            with httpx.Client(base_url=url, timeout=300) as client:
                first = client.post("/api/jobs", json=SMALL_JOB).json()
                first_final = follow(client, first["id"])
            rss_first = rss_mib(server.pid)
            result = load(url, args.clients, args.jobs)
            rss_after = rss_mib(server.pid)
            videos = decode_all(url, result.pop("done_ids"))
            quiet = latency_while_running(url, args.latency_samples)
            events = events_per_step(url, args.event_steps)  # after the RSS figures: the cascade's SR needs more
        finally:
            server.terminate()
            server.wait(60)
    if args.screenshot:
        screenshot(args.pipeline, Path(args.screenshot))
    machine["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    report = {
        "machine": machine, "pipeline": args.pipeline or "shipped default", "job": SMALL_JOB,
        "first_job": first_final["status"],
        "load": result, "videos": videos,
        "rss_mib": {"after_first_job": round(rss_first, 1), "after_run": round(rss_after, 1),
                    "growth": round(rss_after / rss_first - 1, 4)},
        "latency_ms_one_job_running": quiet, "events": events,
    }
    checks = {
        "every job done, cancelled or 429, none lost or failed": result["lost"] == 0 and result["failed"] == 0
        and result["done"] + result["cancelled"] + result["rejected_429"] == args.jobs,
        "every done video decodes": videos["decoded"] == videos["of"] == result["done"],
        f"RSS after the run within {RSS_GROWTH_LIMIT:.0%} of after the first job":
            abs(report["rss_mib"]["growth"]) <= RSS_GROWTH_LIMIT,
        f"page p95 < {PAGE_P95_LIMIT_MS:g} ms while a job runs": quiet["job_was_running"]
        and quiet["page"]["p95"] < PAGE_P95_LIMIT_MS,
        "an event for every step of every stage": events["every_step_seen"],
    }
    report["checks"] = checks
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")

    print(f"{machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} ({machine['torch_threads']} threads), "
          f"load average {machine['load_average_1min_before']} before / {machine['load_average_1min_after']} after; "
          f"server: python -m magicvideo serve, pipeline {report['pipeline']}")
    print(f"load: {args.clients} clients, {args.jobs} jobs of {SMALL_JOB['num_frames']} keyframes x "
          f"{SMALL_JOB['steps']} steps in {result['wall_s']} s: {result['done']} done, {result['cancelled']} cancelled, "
          f"{result['rejected_429']} rejected 429 ({result['answers_429']} answers 429 in all, Retry-After "
          f"{result['retry_after_s']} s), {result['failed']} failed, {result['lost']} lost")
    print(f"videos: {videos['decoded']} of {videos['of']} decode")
    print(f"server RSS: {report['rss_mib']['after_first_job']} MiB after the first job, "
          f"{report['rss_mib']['after_run']} MiB after the run ({report['rss_mib']['growth']:+.1%})")
    q, u = quiet["page"], result["latency_ms_under_load"]["page"]
    print(f"GET / while one job runs: p50 {q['p50']} ms, p95 {q['p95']} ms, max {q['max']} ms "
          f"(job status: p95 {quiet['job_status']['p95']} ms); during the load: p50 {u['p50']} ms, p95 {u['p95']} ms, "
          f"max {u['max']} ms")
    print("events: " + "; ".join(f"{stage} {e['events']} for {e['total']} steps" for stage, e in events["stages"].items())
          + f" (a job of {events['job']['num_frames']} keyframes through the whole cascade)")
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    print(f"wrote {args.out}" + (f" and {args.screenshot}" if args.screenshot else ""))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

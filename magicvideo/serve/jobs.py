"""Jobs: one worker thread owns the pipeline and runs one job at a time from a bounded queue.

A job is its checked request (``options.JobSpec``), a status and, when done, a video. The
history is the files under ``--outputs``, one pair per job::

    <id>.json   {"id", "kind", "status", "settings", "stage", "step", "total", "error", "created", ...}
    <id>.mp4    the video, only once the job is done

Both are written atomically (a temporary file renamed into place). The JSON is written when
the job is queued, rewritten "running" before any compute and rewritten at the end, after the
video; so a server killed mid-job leaves "running" (or "queued") on disk, and the next start
marks that job failed and removes whatever it may have left. Only a job whose JSON says done
has a video that is served or listed.

Progress comes from the pipeline's ``on_progress(stage, step, total)`` callback, at least once
per denoising step; cancel is a flag that callback reads, raising ``Cancelled`` to stop the
pipeline within one step.
"""
from __future__ import annotations

import collections
import json
import logging
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import PROGRESS_STAGES as STAGES  # noqa: F401 (the stages a job reports: on_progress's)
from .options import JobSpec

log = logging.getLogger("magicvideo.serve")

STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
ID_PATTERN = re.compile(r"[0-9a-f]{16}")  # secrets.token_hex(8): server-made, never a path
# what an atomic write of <id>.json / <id>.mp4 leaves behind when killed (models.io.atomic_file, video_io.write_video)
LEFTOVER = re.compile(r"\.[0-9a-f]{16}\..+")
STOPPED = "the server stopped before the job finished"


class QueueFull(Exception):
    """The queue holds ``max_queue`` jobs already: answered 429, with the seconds after which
    a place is likely free (the running job's expected rest: the mean of recent jobs)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(Exception):
    """The server cannot take a job now for a reason of its own (its outputs folder cannot be
    written): answered 503."""


class Cancelled(Exception):
    """Raised from the progress callback to stop a job whose cancel flag is set."""


@dataclass
class Job:
    id: str
    kind: str
    settings: dict[str, Any]
    created: float
    status: str = "queued"
    stage: str | None = None
    step: int = 0
    total: int = 0
    error: str | None = None
    started: float | None = None
    finished: float | None = None
    spec: JobSpec | None = None  # in memory while queued or running (the upload's pixels)
    cancel: threading.Event = field(default_factory=threading.Event)

    def record(self) -> dict[str, Any]:
        """What goes to <id>.json."""
        return {"id": self.id, "kind": self.kind, "status": self.status, "settings": self.settings,
                "stage": self.stage, "step": self.step, "total": self.total, "error": self.error,
                "created": self.created, "started": self.started, "finished": self.finished}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Job":
        job = cls(id=record["id"], kind=record["kind"], settings=record["settings"], created=float(record["created"]),
                  status=record["status"], stage=record.get("stage"), step=int(record.get("step", 0)),
                  total=int(record.get("total", 0)), error=record.get("error"), started=record.get("started"),
                  finished=record.get("finished"))
        if job.status not in STATUSES:
            raise ValueError(f"unknown status {job.status!r}")
        return job


class JobRunner:
    """The queue, the worker thread and the history of one server.

    ``pipe`` is only ever called from the worker thread; the request side reads its
    configuration (defaults, stages) to check requests. All job state is guarded by one lock;
    ``subscribe`` hands a callback every change of one job, called with the lock held (it
    must only hand the snapshot on, e.g. ``loop.call_soon_threadsafe``)."""

    def __init__(self, pipe, outputs: str | Path, max_queue: int = 16):
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self.pipe, self.outputs, self.max_queue = pipe, Path(outputs), max_queue
        self.outputs.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Condition()
        self._jobs: dict[str, Job] = {}
        self._queue: collections.deque[Job] = collections.deque()
        self._running: Job | None = None
        self._subscribers: dict[str, list[Callable[[dict], None]]] = collections.defaultdict(list)
        self._closing = False
        self._mean_job_s = 1.0  # running mean of recent jobs' durations: the 429's Retry-After
        self._thread: threading.Thread | None = None
        self._recover()

    # -- files ------------------------------------------------------------------------------
    def video_path(self, job_id: str) -> Path | None:
        """The finished video of a done job; None for any other id."""
        with self._lock:
            job = self._jobs.get(job_id)
            return self.outputs / f"{job.id}.mp4" if job is not None and job.status == "done" else None

    def _write(self, job: Job) -> None:
        from ..models.io import atomic_file

        with atomic_file(self.outputs / f"{job.id}.json") as tmp:
            tmp.write_text(json.dumps(job.record(), indent=1) + "\n")

    def _recorded(self, job: Job) -> bool:
        """``_write`` from the worker: a record that cannot be written (disk full, folder gone)
        fails the job in memory, with the reason, instead of ending the worker thread."""
        try:
            self._write(job)
            return True
        except OSError as err:
            log.error("job %s: cannot write its record under %s: %s", job.id, self.outputs, err)
            job.status, job.error = "failed", f"cannot write under --outputs: {err.strerror or err}"
            job.finished, job.spec = time.time(), None
            (self.outputs / f"{job.id}.mp4").unlink(missing_ok=True)  # no video without its record
            return False

    def _recover(self) -> None:
        """Load the history; a job the last server left queued or running is failed, and
        whatever it may have left (a finished video not yet recorded, a temporary file) goes."""
        for path in sorted(self.outputs.iterdir()):
            if LEFTOVER.fullmatch(path.name) and path.is_file():
                path.unlink()
        for path in sorted(self.outputs.glob("*.json")):
            if not ID_PATTERN.fullmatch(path.stem):
                continue
            try:
                job = Job.from_record(json.loads(path.read_text()))
                if job.id != path.stem:
                    raise ValueError(f"id {job.id!r} is not the file's")
            except (OSError, ValueError, KeyError, TypeError) as err:
                log.warning("%s: skipped, not a job record (%s)", path, err)
                continue
            video = self.outputs / f"{job.id}.mp4"
            if job.status in ("queued", "running"):
                job.status, job.error, job.finished = "failed", STOPPED, job.finished or time.time()
                self._write(job)
            elif job.status == "done" and not video.is_file():
                job.status, job.error = "failed", f"the video {video.name} is missing"
                self._write(job)
            if job.status != "done":
                video.unlink(missing_ok=True)
            self._jobs[job.id] = job

    # -- the request side -------------------------------------------------------------------
    def snapshot(self, job: Job) -> dict[str, Any]:
        """A job as the API shows it (call with the lock held)."""
        position = None
        if job.status == "queued":
            position = next(i for i, queued in enumerate(self._queue, 1) if queued is job)
        return {"id": job.id, "kind": job.kind, "status": job.status, "stage": job.stage, "step": job.step,
                "total": job.total, "queue_position": position, "error": job.error, "settings": job.settings,
                "created": job.created, "started": job.started, "finished": job.finished}

    def submit(self, spec: JobSpec) -> dict[str, Any]:
        """Queue a checked request; QueueFull when ``max_queue`` jobs wait already."""
        with self._lock:
            if self._closing:
                raise QueueFull("the server is stopping", retry_after=60)
            if len(self._queue) >= self.max_queue:
                wait = max(1, min(60, math.ceil(self._mean_job_s)))
                raise QueueFull(f"the queue is full ({self.max_queue} jobs waiting); try again in {wait} s", wait)
            job = Job(id=secrets.token_hex(8), kind=spec.kind, settings=spec.settings, created=time.time(), spec=spec)
            try:
                self._write(job)
            except OSError as err:
                raise Unavailable(f"cannot write under --outputs: {err.strerror or err}") from None
            self._jobs[job.id] = job
            self._queue.append(job)
            self._lock.notify_all()
            return self.snapshot(job)

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else self.snapshot(job)

    def history(self) -> list[dict[str, Any]]:
        """Every job, newest first."""
        with self._lock:
            return [self.snapshot(j) for j in sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)]

    def cancel(self, job_id: str) -> dict[str, Any] | None:
        """A queued job ends now; a running one at its next progress call. None: no such job."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.status == "queued":
                self._queue.remove(job)
                self._finish(job, "cancelled")
                self._publish_queue()
            elif job.status == "running":
                job.cancel.set()
            return self.snapshot(job)

    def subscribe(self, job_id: str, notify: Callable[[dict], None]) -> dict[str, Any] | None:
        """``notify(snapshot)`` on every change of the job from now on; returns its snapshot
        now (None: no such job). Nothing is missed between the two."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            self._subscribers[job_id].append(notify)
            return self.snapshot(job)

    def unsubscribe(self, job_id: str, notify: Callable[[dict], None]) -> None:
        with self._lock:
            subscribers = self._subscribers.get(job_id, [])
            if notify in subscribers:
                subscribers.remove(notify)
            if not subscribers:
                self._subscribers.pop(job_id, None)

    # -- the worker -------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="magicvideo-worker", daemon=True)
                self._thread.start()

    def close(self, timeout: float = 60.0) -> None:
        """Stop: the running job stops at its next step and, with every queued one, is
        recorded failed (the server stopped)."""
        with self._lock:
            self._closing = True
            if self._running is not None:
                self._running.cancel.set()
            while self._queue:
                self._finish(self._queue.popleft(), "failed", STOPPED)
            self._lock.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _publish(self, job: Job) -> None:
        """Hand the job's snapshot to its subscribers (lock held)."""
        subscribers = self._subscribers.get(job.id)
        if not subscribers:
            return
        snap = self.snapshot(job)
        for notify in list(subscribers):
            try:
                notify(snap)
            except RuntimeError:  # its event loop is gone: the client left
                subscribers.remove(notify)

    def _publish_queue(self) -> None:
        for job in self._queue:  # positions moved
            self._publish(job)

    def _finish(self, job: Job, status: str, error: str | None = None) -> None:
        """Record a job's end (lock held)."""
        job.status, job.error, job.finished, job.spec = status, error, time.time(), None
        self._recorded(job)
        self._publish(job)

    def _progress(self, job: Job) -> Callable[[str, int, int], None]:
        def on_progress(stage: str, step: int, total: int) -> None:
            if job.cancel.is_set():
                raise Cancelled
            with self._lock:
                job.stage, job.step, job.total = stage, step, total
                self._publish(job)

        return on_progress

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._lock.wait()
                if self._closing:
                    return
                job = self._running = self._queue.popleft()
                job.status, job.started = "running", time.time()
                # "running" on disk before any compute: a kill from here is a failed job
                written = self._recorded(job)
                if not written:
                    self._running = None
                self._publish(job)
                self._publish_queue()
            if not written:
                continue
            status, error = "done", None
            try:
                if job.cancel.is_set():
                    raise Cancelled
                from ..video_io import write_video

                video = job.spec.run(self.pipe, self._progress(job))
                # a stream computes while it is written (cancel raises from on_progress inside);
                # a whole video is checked once more before its file is made
                if job.cancel.is_set():
                    raise Cancelled
                write_video(video.frames, self.outputs / f"{job.id}.mp4", fps=video.fps)
            except Cancelled:
                status, error = ("failed", STOPPED) if self._closing else ("cancelled", None)
            except ValueError as err:  # a problem the checks could not see before compute: the CLI's words
                status, error = "failed", str(err)
            except Exception as err:  # noqa: BLE001 - the worker outlives any one job
                log.exception("job %s failed", job.id)
                status, error = "failed", f"{type(err).__name__}: {err}"
            with self._lock:
                self._running = None
                self._finish(job, status, error)
                self._mean_job_s = 0.8 * self._mean_job_s + 0.2 * (job.finished - job.started)

"""The consolidation worker: claim a job, run it under a heartbeated lease, record the outcome.

What a job does (train, evaluate, promote) is the `pipeline` callable passed in —
`consolidation.pipeline.run_job` in production, a stub in tests — so the loop is tested without
torch. A worker that dies (SIGKILL, power loss) simply stops heartbeating; `requeue_expired`,
run by every worker before it claims, puts its job back ("Nothing is lost", DESIGN.md).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Callable

from consolidation.queue import (MAX_ATTEMPTS, JobRow, LeaseLostError, advance, claim, get_job,
                                 heartbeat, release, requeue_expired)
from envs.errors import PeamError

log = logging.getLogger(__name__)
OUTCOMES = ("promoted", "rejected")


@dataclass(frozen=True)
class JobOutcome:
    """What the job's `pipeline` reports when a job ran to its end (a crash is an exception instead)."""

    status: str  # promoted | rejected
    expert_id: int | None = None
    metrics: dict | None = None

    def __post_init__(self):
        if self.status not in OUTCOMES:
            raise ValueError(f"job outcome {self.status!r} not in {OUTCOMES}")


JobPipeline = Callable[[JobRow, Callable[[], None]], JobOutcome]  # (job, heartbeat) -> outcome


class WorkerSetupError(PeamError):
    """The worker itself cannot run jobs (no such device, ...): its job goes back to the queue,
    never failed for it (issue 19, item 1); the message says how to mend the worker."""


def check_device(device: str) -> None:
    """Refuse a device this machine does not have, before any job is claimed."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise WorkerSetupError(f"--device {device} but torch sees no CUDA GPU on this machine: "
                                   "use --device cpu (or auto), or start the worker on a GPU machine")


def default_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class Worker:
    """`Worker(store, pipeline, name=..., lease_s=60, poll_s=2).run_forever(stop_event)`."""

    def __init__(self, store, pipeline: JobPipeline, *, name: str | None = None,
                 lease_s: float = 60.0, poll_s: float = 2.0, max_attempts: int = MAX_ATTEMPTS):
        if lease_s <= 0 or poll_s <= 0:
            raise ValueError(f"lease_s and poll_s must be positive, got {lease_s}, {poll_s}")
        self.store, self.pipeline = store, pipeline
        self.name = name or default_name()
        self.lease_s, self.poll_s, self.max_attempts = lease_s, poll_s, max_attempts

    def run_once(self) -> JobRow | None:
        """Requeue expired leases, claim one job and run it; the job's final row, or None when
        the queue was empty."""
        requeue_expired(self.store, max_attempts=self.max_attempts)
        job = claim(self.store, self.name, self.lease_s)
        if job is None:
            return None
        beat = _Heartbeat(self.store, job.id, self.name, self.lease_s)
        try:
            try:
                outcome = self.pipeline(job, beat)
            finally:
                beat.stop()
            self._finish(job.id, outcome)
        except LeaseLostError as e:  # another worker owns it now: record nothing
            log.warning("worker %s lost job %d: %s", self.name, job.id, e)
        except WorkerSetupError:  # the worker's fault, not the job's: back to the queue
            release(self.store, job.id, self.name)
            raise
        except Exception as e:  # noqa: BLE001 — any crash of a job is recorded on the job
            log.exception("job %d failed", job.id)
            try:
                advance(self.store, job.id, self.name, "failed", error=one_line(e))
            except LeaseLostError:
                pass
        return get_job(self.store, job.id)

    def _finish(self, job_id: int, outcome: JobOutcome) -> None:
        # The pipeline may have moved the job to `evaluating` itself (the pipeline does, between
        # training and the in-game evaluation); if not, pass through it now, so the state
        # machine is the same for every job.
        if get_job(self.store, job_id).status == "running":
            advance(self.store, job_id, self.name, "evaluating")
        advance(self.store, job_id, self.name, outcome.status, expert_id=outcome.expert_id,
                metrics=outcome.metrics)

    def run_forever(self, stop_event: threading.Event) -> None:
        while not stop_event.is_set():
            if self.run_once() is None:
                stop_event.wait(self.poll_s)


class _Heartbeat:
    """Renews the lease every lease_s / 3 on a background thread — two beats may be lost before
    the lease lapses. Calling it (what the pipeline gets) raises LeaseLostError once the lease was
    lost, so a long training loop can stop early."""

    def __init__(self, store, job_id: int, worker: str, lease_s: float):
        self.store, self.job_id, self.worker, self.lease_s = store, job_id, worker, lease_s
        self.lost: LeaseLostError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{job_id}",
                                        daemon=True)
        self._thread.start()

    def __call__(self) -> None:
        if self.lost is not None:
            raise self.lost
        self._beat()

    def _beat(self) -> None:
        try:
            heartbeat(self.store, self.job_id, self.worker, self.lease_s)
        except LeaseLostError as e:
            self.lost = e
            raise

    def _loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                self._beat()
            except LeaseLostError:
                return
            except Exception:  # noqa: BLE001 — a database hiccup: try again next beat
                log.warning("heartbeat of job %d failed", self.job_id, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

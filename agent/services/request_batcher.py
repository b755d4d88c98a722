"""Gathers model calls that arrive together from many threads into one batched call.

The Ray pool's planner actor is threaded: every runner's `complete(messages)` lands on its own
thread. One `generate` over the lot costs little more than one over a single prompt, so the
first caller of a round waits `window_s` for company, then answers everyone pending with one
`complete_batch`. Plain threading, no Ray: tested in process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

BATCH_WINDOW_S = 0.005  # how long the first of a batch waits for others to join


@dataclass
class PendingRequest:
    messages: list
    done: threading.Event
    answer: tuple[str, int, int] | None = None
    error: BaseException | None = None


class RequestBatcher:
    """`RequestBatcher(planner.complete_batch).complete(messages)`: a drop-in `complete`."""

    def __init__(self, complete_batch: Callable[[list], list], window_s: float = BATCH_WINDOW_S):
        self.complete_batch = complete_batch
        self.window_s = window_s
        self.pending: list[PendingRequest] = []
        self.lock = threading.Lock()  # guards `pending`
        self.model_lock = threading.Lock()  # one generate at a time on the model
        self.sizes: list[int] = []  # batch sizes served, for tests and tuning

    def complete(self, messages: list) -> tuple[str, int, int]:
        request = PendingRequest(messages, threading.Event())
        with self.lock:
            self.pending.append(request)
            leader = len(self.pending) == 1
        if leader:
            time.sleep(self.window_s)
            with self.model_lock:
                with self.lock:
                    batch, self.pending = self.pending, []
                self._serve(batch)
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.answer

    def _serve(self, batch: list[PendingRequest]) -> None:
        self.sizes.append(len(batch))
        try:
            answers = self.complete_batch([r.messages for r in batch])
            for request, answer in zip(batch, answers):
                request.answer = answer
        except BaseException as e:  # every waiter gets the error, none hangs
            for request in batch:
                request.error = e
        finally:
            for request in batch:
                request.done.set()

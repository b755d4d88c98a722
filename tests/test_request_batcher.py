"""The request batcher: concurrent calls become one batched call, and a failure reaches every
caller of that batch (none waits forever)."""

from __future__ import annotations

import threading

from agent.services.request_batcher import RequestBatcher


def ask_concurrently(batcher: RequestBatcher, prompts: list) -> list:
    answers: list = [None] * len(prompts)

    def ask(i):
        try:
            answers[i] = batcher.complete(prompts[i])
        except Exception as e:  # noqa: BLE001 — the test inspects what each caller got
            answers[i] = e

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads), "a caller still waits"
    return answers


def test_calls_arriving_together_are_answered_by_one_batch_each_with_its_own_answer():
    batcher = RequestBatcher(lambda batch: [(m.upper(), len(m), 1) for m in batch], window_s=0.3)
    answers = ask_concurrently(batcher, ["a", "bb", "ccc"])
    assert batcher.sizes == [3]
    assert answers == [("A", 1, 1), ("BB", 2, 1), ("CCC", 3, 1)]


def test_a_failed_batch_raises_in_every_caller():
    def broken(batch):
        raise RuntimeError("model fell over")

    answers = ask_concurrently(RequestBatcher(broken, window_s=0.3), ["a", "b"])
    assert [str(a) for a in answers] == ["model fell over"] * 2


def test_a_lone_call_is_served_alone():
    batcher = RequestBatcher(lambda batch: [(m, 0, 0) for m in batch], window_s=0.0)
    assert batcher.complete("x") == ("x", 0, 0)
    assert batcher.sizes == [1]

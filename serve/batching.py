"""Micro-batching: requests that arrive together go into one `planner.plan(batch)` call.

A transformers planner decodes a batch of 8 prompts in little more time than one (the system spec, most
of each prompt, is shared and prefilled once), so concurrent HTTP requests are collected for a few
milliseconds and sent as one batch from a worker thread. Thread-based on purpose: the same batcher
serves the sync Python API, FastAPI's event loop and the MCP server's, without being bound to any loop.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future

from ir_core.types import Planner, PlanRequest, PlanResponse

log = logging.getLogger(__name__)


class MicroBatcher:
    """`submit(request) -> Future[PlanResponse]`; a worker thread batches pending requests.

    A batch closes when it holds `max_batch` requests or `max_wait_s` has passed since its first one.
    A planner exception fails every future of its batch (with that exception); the worker keeps going.
    """

    def __init__(self, planner: Planner, max_batch: int = 8, max_wait_s: float = 0.01):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if not 0 <= max_wait_s <= 1:
            raise ValueError(f"max_wait_s must be in [0, 1] seconds, got {max_wait_s}")
        self.planner, self.max_batch, self.max_wait_s = planner, max_batch, max_wait_s
        self.batches: list[int] = []  # sizes of the batches sent, for tests and benchmarks
        self._queue: queue.Queue[tuple[PlanRequest, Future] | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="plan-batcher", daemon=True)
        self._thread.start()

    def submit(self, request: PlanRequest) -> Future:
        if self._closed:
            raise RuntimeError("the batcher is closed")
        fut: Future = Future()
        self._queue.put((request, fut))
        return fut

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _collect(self, first: tuple[PlanRequest, Future]) -> tuple[list[tuple[PlanRequest, Future]], bool]:
        batch, stop = [first], False
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _work(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._collect(first)
            # a request whose caller gave up (timeout, disconnect) is dropped before it costs decoding
            live = [(req, fut) for req, fut in batch if fut.set_running_or_notify_cancel()]
            if not live:
                continue
            self.batches.append(len(live))
            try:
                responses = self.planner.plan([req for req, _ in live])
                if len(responses) != len(live):
                    raise RuntimeError(f"planner returned {len(responses)} responses for {len(live)} requests")
            except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
                log.exception("planner batch failed")
                for _, fut in live:
                    fut.set_exception(exc)
                continue
            for (_, fut), resp in zip(live, responses, strict=True):
                fut.set_result(resp if isinstance(resp, PlanResponse) else PlanResponse(None, "bad_response"))

"""`mlreg serve`: the registry worker (worker.py) against the emulator, as deployed: the table's stream
feeds it, it queues its jobs on the jobs queue (with a dead-letter queue), and runs them from there,
several at a time (each deployed job is an invocation of its own).

The emulated queue does not outlive the process, so at start the worker queues again what the table
still calls for (pending versions, deleted models not purged): a copy cut off by a stop goes on.

`MLREG_WORKER_SECONDS` stands in for the Lambda timeout (a job longer than that continues in a new
message). `MLREG_SLOW_COPY_SECONDS` (fault injection for tests; never set in a deployment) pauses
each of the worker's file copies that long, to show a copy longer than the API's 29 s still ends
READY; it also leaves every copy to the worker (no source counts as small, packages.small_source)."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from threading import Semaphore

from shared.events.local import QUEUE_WAIT_SECONDS, LocalConsumer, log
from shared.registry import packages, worker

JOBS_QUEUE, JOBS_DLQ = "mlreg-registry-jobs", "mlreg-registry-dead-letters"
JOB_THREADS = 4


class LocalWorker(LocalConsumer):
    handler = staticmethod(worker.handle)
    stream_batch = 1000  # few records concern it (deployed, a filter passes only those)

    def _setup(self) -> None:
        self.stream_dlq = self._queue(JOBS_DLQ)
        redrive = json.dumps({"deadLetterTargetArn": self._arn(self.stream_dlq), "maxReceiveCount": worker.MAX_RECEIVES})
        seconds = int(float(os.environ.get("MLREG_WORKER_SECONDS") or worker.LOCAL_SECONDS))
        self.queue = self._queue(JOBS_QUEUE, {"RedrivePolicy": redrive, "VisibilityTimeout": str(seconds + 30)})
        os.environ["MLREG_WORKER_QUEUE_URL"] = self.queue
        packages.COPY_PAUSE_SECONDS = float(os.environ.get("MLREG_SLOW_COPY_SECONDS") or 0)
        if packages.COPY_PAUSE_SECONDS:
            packages.INLINE_MAX_FILES = -1
        self._pool, self._slots = ThreadPoolExecutor(JOB_THREADS, "mlreg-worker"), Semaphore(JOB_THREADS)

    def start(self, model_items: list[dict]) -> None:
        """`model_items`: every item of the models' partitions as the service starts (the emulator's
        `model_items`): the jobs a stopped `mlreg serve` left undone are queued again from them."""
        super().start()
        worker.enqueue(worker.pending_jobs(model_items))

    def _queue_loop(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self._slots.acquire()
                messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=1,
                                                    WaitTimeSeconds=QUEUE_WAIT_SECONDS,
                                                    AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
                if not messages:
                    self._slots.release()
                    continue
                self._pool.submit(self._job, messages)
            except Exception:
                self._slots.release()
                log.exception("local registry job poller")

    def _job(self, messages: list[dict]) -> None:
        try:
            self._deliver(messages)
        except Exception:
            log.exception("local registry job")
        finally:
            self._slots.release()


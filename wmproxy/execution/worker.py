"""The execution worker loop: claim, stage, run, watch, collect.

Several workers may run against one database: claiming uses the queue's
``FOR UPDATE SKIP LOCKED`` (PostgreSQL) or compare-and-set (SQLite). A worker runs up
to ``execution.max_running`` jobs at once and polls them every ``poll_interval`` seconds.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from wmproxy.domain import JobState, to_filename
from wmproxy.errors import WMProxyError
from wmproxy.execution.backends import ExecutionBackend, JobRunSpec, RunHandle
from wmproxy.execution.staging import stage_in, stage_out, write_job_proxy
from wmproxy.services import execution as service
from wmproxy.services.execution import StartOrder
from wmproxy.services.perusal import perusal_lists
from wmproxy.services.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class RunningJob:
    order: StartOrder
    handle: RunHandle
    work_dir: Path
    next_sample: float = 0.0
    offsets: dict[str, int] = field(default_factory=dict)


class ExecutionWorker:
    """Runs started jobs through ``backend``; ``step()`` is one cycle, ``run()`` loops."""

    def __init__(self, rt: Runtime, backend: ExecutionBackend, name: str | None = None) -> None:
        self.rt = rt
        self.backend = backend
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.settings = rt.settings.execution
        self.running: dict[str, RunningJob] = {}

    def run(self, stop: threading.Event) -> None:
        log.info("execution worker %s started (max %d jobs)", self.name, self.settings.max_running)
        while not stop.is_set():
            busy = self.step()
            if not busy:
                stop.wait(self.settings.poll_interval)
        for job_id in list(self.running):
            self._cancel(job_id, reason="worker shut down")

    def step(self) -> bool:
        """One cycle; returns True when a job was started (so the loop goes on at once)."""
        for job_id in service.take_cancel_requests(self.rt, list(self.running)):
            self._cancel(job_id)
        self._sample_perusal()
        self._reap()
        if len(self.running) >= self.settings.max_running:
            return False
        order = service.claim_next_start(self.rt, self.name)
        if order is None:
            return False
        self._start(order)
        return True

    def _start(self, order: StartOrder) -> None:
        job_id = order.job_id
        work_dir = Path(self.settings.work_dir) / to_filename(job_id)
        desc = order.description
        try:
            stage_in(order.area, work_dir, order.isb_files)
            proxy_file = write_job_proxy(self.rt.storage, order.area, order.proxy_pem)
            if not service.set_state(self.rt, job_id, JobState.SCHEDULED):
                shutil.rmtree(work_dir, ignore_errors=True)
                return
            environment = dict(entry.split("=", 1) for entry in desc.environment)
            handle = self.backend.start(
                JobRunSpec(
                    job_id=job_id,
                    work_dir=work_dir,
                    executable=desc.executable,
                    arguments=desc.arguments,
                    std_input=desc.std_input,
                    std_output=desc.std_output,
                    std_error=desc.std_error,
                    environment=environment,
                    proxy_file=proxy_file,
                )
            )
        except WMProxyError as exc:
            log.info("job %s aborted before running: %s", job_id, exc)
            service.set_state(self.rt, job_id, JobState.ABORTED, reason=str(exc))
            shutil.rmtree(work_dir, ignore_errors=True)
            return
        self.running[job_id] = RunningJob(order, handle, work_dir)
        service.set_state(self.rt, job_id, JobState.RUNNING, backend_ref=f"local:{self.name}:{handle.pid}")
        log.info("job %s running as pid %d", job_id, handle.pid)

    def _reap(self) -> None:
        for job_id, job in list(self.running.items()):
            code = self.backend.poll(job.handle)
            if code is None:
                continue
            del self.running[job_id]
            if job.order.perusal_interval is not None:
                self._sample(job, perusal_lists(self.rt, [job_id]).get(job_id, []))
            try:
                missing = stage_out(self.rt.storage, job.order.area, job.work_dir, job.order.description.output_sandbox)
                reason = f"output sandbox files not produced: {', '.join(missing)}" if missing else None
            except WMProxyError as exc:
                reason = f"output sandbox not collected: {exc}"
            service.set_state(self.rt, job_id, JobState.DONE, exit_code=code, reason=reason)
            shutil.rmtree(job.work_dir, ignore_errors=True)
            log.info("job %s done, exit code %d", job_id, code)

    def _sample_perusal(self) -> None:
        """Copy what perused files gained into chunks, every PerusalTimeInterval seconds."""
        now = time.monotonic()
        due = [j for j in self.running.values() if j.order.perusal_interval is not None and j.next_sample <= now]
        if not due:
            return
        lists = perusal_lists(self.rt, [j.order.job_id for j in due])
        for job in due:
            job.next_sample = now + float(job.order.perusal_interval or 0)
            self._sample(job, lists.get(job.order.job_id, []))

    def _sample(self, job: RunningJob, files: list[str]) -> None:
        stamp = int(time.time())
        for name in files:
            path = job.work_dir / name
            try:
                size = path.stat().st_size
                offset = job.offsets.get(name, 0)
                if size <= offset:
                    continue
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    data = handle.read(size - offset)
            except OSError:
                continue
            self.rt.storage.write_perusal_chunk(job.order.job_id, name, data, stamp)
            job.offsets[name] = offset + len(data)

    def _cancel(self, job_id: str, reason: str | None = None) -> None:
        job = self.running.pop(job_id, None)
        if job is None:
            return
        self.backend.cancel(job.handle)
        if reason is None:
            service.mark_cancelled(self.rt, job_id)
        else:
            service.set_state(self.rt, job_id, JobState.ABORTED, reason=reason)
        shutil.rmtree(job.work_dir, ignore_errors=True)
        log.info("job %s stopped", job_id)

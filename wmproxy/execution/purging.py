"""The purger as a periodic task of the execution worker (``[purge]``; the rules are in
``wmproxy.services.purge``). The worker runs it because it may remove job work dirs
(``identity.remove_work_dir``), which belong to the mapped accounts."""

from __future__ import annotations

import functools
from pathlib import Path

from wmproxy.execution.identity import remove_work_dir
from wmproxy.execution.worker import PeriodicTask
from wmproxy.services.purge import purge
from wmproxy.services.runtime import Runtime


def purge_tasks(rt: Runtime) -> list[PeriodicTask]:
    """``[PeriodicTask]`` purging every ``[purge] interval`` seconds; none when disabled."""
    policy = rt.settings.purge
    if not policy.enabled:
        return []
    remover = functools.partial(remove_work_dir, Path(rt.settings.execution.work_dir))
    return [PeriodicTask("purging old jobs and credentials", policy.interval,
                         lambda: purge(rt, remove_work_dir=remover))]

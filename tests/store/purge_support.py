"""Helpers of the purge tests (``test_purge``, ``test_purge_before_0008``)."""

from __future__ import annotations

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from wmproxy.domain import Principal
from wmproxy.services import jobs as job_service
from wmproxy.services.runtime import Runtime

#: The owner of the purge tests' jobs (``tests.admin.support.job_row``'s default).
ALICE = "/C=XX/O=wmproxy-demo/OU=Users/CN=Alice"


def job_purge_whose_commit_fails(rt: Runtime, job_id: str) -> None:
    """jobPurge of Alice's ``job_id`` whose commit fails: neither its committed() nor its undone()
    runs, so its areas stay aside (``.purging-*``) and its bytes on her counter."""
    def commit_fails(session: Session) -> None:
        raise OSError("the connection went")

    event.listen(Session, "before_commit", commit_fails)
    try:
        with pytest.raises(OSError, match="the connection went"):
            job_service.purge_job(rt, Principal(dn=ALICE), job_id)
    finally:
        event.remove(Session, "before_commit", commit_fails)

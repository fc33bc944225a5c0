"""What the services need at run time, built once per process by each edge."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from wmproxy.config import Settings
from wmproxy.sandbox.storage import FilesystemSandboxStorage
from wmproxy.security import ca_policy
from wmproxy.security.sealing import Sealer
from wmproxy.services.uris import sandbox_base_url
from wmproxy.store import UnitOfWork, make_engine, make_session_factory


@dataclass
class Runtime:
    """Settings plus the process-wide collaborators (database, sealer, sandbox storage).

    ``stopping`` is set when the process begins to stop (the gunicorn worker's SIGTERM,
    :mod:`wmproxy.soap.tls_worker`): a request held open to wait (an inspection long-poll) is
    answered at once, so a graceful stop does not wait out the hold.
    """

    settings: Settings
    session_factory: sessionmaker[Session]
    sealer: Sealer
    storage: FilesystemSandboxStorage
    stopping: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        """The runtime of ``settings``; the certificates verified against ``[security] ca_dir`` in
        this process are checked in ``[security] namespace_mode`` from now on."""
        ca_policy.configure(settings.security.ca_dir, settings.security.namespace_mode)
        engine = make_engine(settings.database.url, ping_after_idle=settings.database.ping_after_idle)
        return cls(
            settings=settings,
            session_factory=make_session_factory(engine),
            sealer=Sealer.from_key_file(settings.security.store_key_file),
            storage=FilesystemSandboxStorage(
                Path(settings.sandbox.root), settings.sandbox.dir_name, base_url=sandbox_base_url(settings),
                work_root=settings.execution.work_dir,
            ),
        )

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory)

"""getOutputFileList lists every stored output file, and the sandbox edge serves each one stored
under a name longer than a lowered ``[limits] max_sandbox_name_bytes`` (the limit is checked
where a name is created). A name a collection stored before it refused such names (control
characters, ``\\``, bytes that are not UTF-8) stays listed though the edge refuses it, so
``wmproxy output`` fails on it and keeps the job: left out, the job was purged with the file never
fetched (a review of stop 56)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from werkzeug.test import Client

from tests import support
from tests.conftest import Pki
from wmproxy.domain import JobState, utcnow
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job
from wmproxy.soap.app import WMProxyApplication
from wmproxy.soap.namespaces import WMPROXY

#: Bytes of a name the edge serves in these tests (a site's lowered limit).
LIMIT = 32

SERVED = ["std.out", "x" * LIMIT, "y" * (LIMIT + 12), "r\u00e9sum\u00e9 #1.txt"]  # stored before the limit was lowered
UNSERVED = [b"\xffname.txt", b"bad\nname.txt", b"esc\x1b[31m.txt", b"back\\slash.txt"]

@pytest.fixture
def rt(tmp_path: Path, pki: Pki, template_db: Path) -> Iterator[Runtime]:
    runtime = support.build_runtime(tmp_path / "state", pki, template_db, limits={"max_sandbox_name_bytes": LIMIT})
    yield runtime
    support.close_runtime(runtime)


def test_every_stored_file_is_listed_and_the_longer_names_are_served(rt: Runtime, pki: Pki) -> None:
    alice = support.principal_of(pki, "alice")
    delegation = support.delegate_in_process(rt, alice, pki.users["alice"].proxy, "unit")
    job_id = register_job(rt, alice, support.ECHO_JDL, delegation).job_id
    output = rt.storage.create_area(rt.storage.job_rel_dir(job_id), "output")
    for name in [os.fsencode(n) for n in SERVED] + UNSERVED:  # as a collection before it refused them left them
        (output / os.fsdecode(name)).write_bytes(b"data " + name)
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        uow.jobs.set_state(job, JobState.DONE.value, utcnow(), exit_code=0)
    app = WMProxyApplication(rt, authenticate=support.caller_from_environ)
    soap = support.SoapApp(app, rt)

    reply = soap.call(WMPROXY, "getOutputFileList", alice, jobId=job_id, protocol="https")

    assert reply.status.startswith("200"), reply.body
    uris = [item.findtext("name") or "" for item in reply.element.iter("file")]
    names = [unquote(uri.rsplit("/", 1)[1], errors="surrogateescape") for uri in uris]
    assert sorted(names) == sorted([*SERVED, *(os.fsdecode(n) for n in UNSERVED)])
    for uri, name in zip(uris, names, strict=True):
        fetched = Client(app).get(urlsplit(uri).path, environ_overrides={support.CALLER_KEY: alice})
        if name in SERVED:
            assert (fetched.status_code, fetched.get_data()) == (200, b"data " + name.encode()), uri
        else:  # refused: the CLI's download fails and the job is not purged
            assert 400 <= fetched.status_code < 500, uri
        fetched.close()

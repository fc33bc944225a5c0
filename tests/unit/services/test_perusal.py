"""enableFilePerusal's names and the lists the worker samples (services/perusal.py): a name
holding a control character is refused with a typed fault (the names are stored one a line, so
"f1\\nf2\\n...\\nf10000" was one name for the ``[jobs] max_perusal_files`` check and ten
thousand for the worker), and what the worker reads is cut back to the limit, each name once,
whatever a job's row holds from before. getPerusalFiles' new parts are the owner's: a reader
the ACL admits takes none of them."""

from __future__ import annotations

import dataclasses
import re
from xml.sax.saxutils import escape

import pytest
import sqlalchemy as sa

from tests.support import ECHO_JDL, SoapApp, caller_from_environ
from wmproxy.domain import Principal
from wmproxy.errors import InvalidArgumentError
from wmproxy.sandbox.storage import check_file_name
from wmproxy.services import monitor
from wmproxy.services.acl import add_acl_items
from wmproxy.services.perusal import enable_file_perusal, perusal_files, perusal_lists
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job
from wmproxy.soap.app import WMProxyApplication
from wmproxy.soap.namespaces import SOAP_ENV, WMPROXY
from wmproxy.store.schema import Job

PERUSED_JDL = ECHO_JDL.rstrip().rstrip("]") + "PerusalFileEnable = true;\n]"
MANY = "\n".join(f"f{i}" for i in range(1, 201))


@pytest.fixture
def job_id(rt: Runtime, alice: Principal, delegated: str) -> str:
    return register_job(rt, alice, PERUSED_JDL, delegated).job_id


@pytest.mark.parametrize("name", [MANY, "a\nb", "out\rx", "a\tb", "\x1b[31mred", "x\x7fy", "x\x00y",
                                  # what str.splitlines() also ends a line at: NEL (a C1 control), LS, PS
                                  "a\x85b", "a\u2028b", "a\u2029b", "a\x9bb"])
def test_a_name_with_a_control_character_is_refused(rt: Runtime, alice: Principal, job_id: str, name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="control characters"):
        enable_file_perusal(rt, alice, job_id, ["std.out", name])
    assert perusal_lists(rt, [job_id]) == {}  # nothing stored


def test_blanks_around_a_name_are_still_taken_off(rt: Runtime, alice: Principal, job_id: str) -> None:
    enable_file_perusal(rt, alice, job_id, ["std.out\n", " std.err "])
    assert perusal_lists(rt, [job_id]) == {job_id: ["std.out", "std.err"]}


def test_the_soap_fault_is_an_invalid_argument_fault_with_its_fields(rt: Runtime, alice: Principal,
                                                                    job_id: str) -> None:
    soap = SoapApp(WMProxyApplication(rt, authenticate=caller_from_environ), rt)
    item = escape(MANY, {"\n": "&#10;"})
    body = (f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" xmlns:ns="{WMPROXY}"><SOAP-ENV:Body>'
            f"<ns:enableFilePerusal><jobId>{escape(job_id)}</jobId><fileList><Item>{item}</Item></fileList>"
            "</ns:enableFilePerusal></SOAP-ENV:Body></SOAP-ENV:Envelope>").encode()

    reply = soap.request(body, alice)

    assert reply.status.startswith("500"), reply.status
    detail = reply.fault_detail
    assert detail.tag == f"{{{WMPROXY}}}InvalidArgumentFault", reply.body
    assert [c.tag for c in detail][:4] == ["methodName", "Timestamp", "ErrorCode", "Description"]
    assert detail.findtext("methodName") == "enableFilePerusal"
    assert detail.findtext("ErrorCode") == "1225"
    assert "control characters" in (detail.findtext("Description") or "")
    assert perusal_lists(rt, [job_id]) == {}


def test_a_list_stored_before_is_cut_to_the_limit_each_name_once(rt: Runtime, job_id: str) -> None:
    # what enableFilePerusal stored before names with a newline were refused
    stored = "f2\nf1\n\nf2\n../x\n" + MANY
    with rt.uow() as uow:
        uow.session.execute(sa.update(Job).where(Job.id == job_id).values(perusal_files=stored))

    names = perusal_lists(rt, [job_id])[job_id]

    assert rt.settings.jobs.max_perusal_files == 15
    assert names == ["f2", "f1", *(f"f{i}" for i in range(3, 16))]


@pytest.mark.parametrize("name", ["caf\u00e9.txt", "a\u200db", "a\u00a0b", "\u202eexe.txt"])
def test_format_characters_and_other_spaces_are_kept(rt: Runtime, alice: Principal, job_id: str, name: str) -> None:
    """Cf (zero-width joiner, a bidi mark) and Zs end no line; a job may write a file so named."""
    enable_file_perusal(rt, alice, job_id, [name])
    assert perusal_lists(rt, [job_id]) == {job_id: [name]}


def test_the_monitor_shows_what_the_worker_samples(rt: Runtime, alice: Principal, job_id: str) -> None:
    """The web monitor read the column with str.splitlines(): a row from before showed every
    line (one glob of the peek directory per name per page view), and U+2028 split a name."""
    stored = "f2\nf1\n\nf2\n../x\nsplit\u2028name\n" + MANY
    with rt.uow() as uow:
        uow.session.execute(sa.update(Job).where(Job.id == job_id).values(perusal_files=stored))

    shown = [p.name for p in monitor.job_detail(rt, alice, job_id).perusal_files]

    assert shown == perusal_lists(rt, [job_id])[job_id] == ["f2", "f1", *(f"f{i}" for i in range(3, 16))]


def test_a_reader_takes_none_of_the_owners_new_parts(rt: Runtime, alice: Principal, bob: Principal,
                                                     job_id: str) -> None:
    """A reader's getPerusalFiles(allChunks=false) merged the new chunks and got them: the
    owner's own call then found nothing new (red-team L2). Now only the owner merges; a reader
    gets every part merged so far, whatever allChunks says."""
    enable_file_perusal(rt, alice, job_id, ["out.txt"])
    add_acl_items(rt, alice, job_id, [bob.dn])
    with rt.uow() as uow:
        uow.session.execute(sa.update(Job).where(Job.id == job_id).values(state="Running"))

    def parts(caller: Principal, all_chunks: bool = False) -> list[str]:
        return [uri.rsplit("/", 1)[1] for uri in perusal_files(rt, caller, job_id, "out.txt", all_chunks, "https")]

    rt.storage.write_perusal_chunk(job_id, "out.txt", b"line1\n", 100)
    assert parts(bob) == parts(bob, all_chunks=True) == []
    assert parts(alice) == ["out.txt-100-100"]
    rt.storage.write_perusal_chunk(job_id, "out.txt", b"line2\n", 200)
    assert parts(bob) == parts(bob, all_chunks=True) == ["out.txt-100-100"]
    assert parts(alice) == ["out.txt-200-200"]
    assert parts(alice) == []
    assert parts(bob) == parts(alice, all_chunks=True) == ["out.txt-100-100", "out.txt-200-200"]


@pytest.mark.parametrize("name", ["user.proxy", " user.proxy\n", ".wmproxy"])
def test_the_jobs_proxy_is_never_perused(rt: Runtime, alice: Principal, bob: Principal, job_id: str,
                                         name: str) -> None:
    """The job's proxy copy sits in its work dir: perused, its chunks (private key included) went
    to every reader the job's ACL admits (red-team M1). Refused, as is a list stored before."""
    with pytest.raises(InvalidArgumentError, match=r"proxy|state directory"):
        enable_file_perusal(rt, alice, job_id, ["std.out", name])
    assert perusal_lists(rt, [job_id]) == {}
    with rt.uow() as uow:  # what enableFilePerusal stored before the name was refused
        uow.session.execute(sa.update(Job).where(Job.id == job_id).values(perusal_files="user.proxy\nstd.out"))
    assert perusal_lists(rt, [job_id]) == {job_id: ["std.out"]}
    add_acl_items(rt, alice, job_id, [bob.dn])
    with rt.uow() as uow:
        uow.session.execute(sa.update(Job).where(Job.id == job_id).values(state="Running"))
    with pytest.raises(InvalidArgumentError, match="proxy"):
        perusal_files(rt, bob, job_id, "user.proxy", True, "https")


@pytest.mark.parametrize(("name", "why"), [
    ("out\\err.txt", "'/' and '\\' are not allowed"),
    ("x" * 234, "234 bytes long, at most 233 allowed"),  # <name>-<first>-<last>: 22 bytes more than 255
    ("\u00e9" * 117, "234 bytes long, at most 233 allowed"),
])
def test_a_name_whose_parts_the_edge_cannot_serve_is_refused(rt: Runtime, alice: Principal, job_id: str,
                                                             name: str, why: str) -> None:
    """The chunks ``peek/<name>.<epoch>`` and merged files ``peek/<name>-<first>-<last>`` are
    fetched through the sandbox edge, which refuses a ``\\`` (400) and a name longer than
    ``[limits] max_sandbox_name_bytes``: such a name was perused, its parts never served.
    Refused with the reason, as is a list stored before; getPerusalFiles says why."""
    with pytest.raises(InvalidArgumentError, match=re.escape(why)):
        enable_file_perusal(rt, alice, job_id, ["std.out", name])
    assert perusal_lists(rt, [job_id]) == {}
    with rt.uow() as uow:  # what enableFilePerusal stored before the name was refused
        uow.session.execute(sa.update(Job).where(Job.id == job_id).values(perusal_files=f"{name}\nstd.out"))
        uow.session.execute(sa.update(Job).where(Job.id == job_id).values(state="Running"))
    assert perusal_lists(rt, [job_id]) == {job_id: ["std.out"]}
    assert [p.name for p in monitor.job_detail(rt, alice, job_id).perusal_files] == ["std.out"]
    with pytest.raises(InvalidArgumentError, match=re.escape(why)):
        perusal_files(rt, alice, job_id, name, True, "https")


def test_the_longest_name_taken_has_parts_the_edge_serves(rt: Runtime, alice: Principal, job_id: str) -> None:
    """233 bytes (the site's 255 less 22) are taken, its chunks written (a name over 230 bytes
    was never sampled: its chunk's temporary name ``.<chunk>.wmproxy-part`` was too long) and
    its merged part is a name the edge serves; a site's lower ``[limits]
    max_sandbox_name_bytes`` lowers it."""
    name = "x" * 233
    enable_file_perusal(rt, alice, job_id, [name])
    assert perusal_lists(rt, [job_id]) == {job_id: [name]}
    with rt.uow() as uow:
        uow.session.execute(sa.update(Job).where(Job.id == job_id).values(state="Running"))
    rt.storage.write_perusal_chunk(job_id, name, b"line1\n", 1_800_000_000)
    rt.storage.write_perusal_chunk(job_id, name, b"line2\n", 1_800_000_060)
    [uri] = perusal_files(rt, alice, job_id, name, False, "https")
    part = uri.rsplit("/", 1)[1]
    assert part == f"{name}-1800000000-1800000060"
    assert check_file_name(part, rt.settings.limits.max_sandbox_name_bytes) == part

    rt.settings = dataclasses.replace(rt.settings, limits=dataclasses.replace(rt.settings.limits,
                                                                              max_sandbox_name_bytes=64))
    assert perusal_lists(rt, [job_id]) == {}
    with pytest.raises(InvalidArgumentError, match="233 bytes long, at most 42 allowed"):
        enable_file_perusal(rt, alice, job_id, [name])
    enable_file_perusal(rt, alice, job_id, ["y" * 42])
    assert perusal_lists(rt, [job_id]) == {job_id: ["y" * 42]}

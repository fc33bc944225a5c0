"""Property: whatever method, path, name, Destination and body a client sends to the sandbox
edge, the answer is a success or a typed 4xx with one line of text, never a 500; and a refused
request changes nothing on disk (issue 10)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import Pki
from tests.fuzz.support import FuzzService, fuzz_settings, tree_footprint, tried, wrapped
from tests.support import principal_of
from wmproxy.domain import Principal
from wmproxy.security.chain import chain_pem
from wmproxy.security.proxy import load_credential, make_proxy

METHODS = ["GET", "HEAD", "PUT", "DELETE", "MOVE", "POST", "OPTIONS", "PROPFIND"]
NAME_CHARS = st.characters(blacklist_categories=("Cs",))
names = st.one_of(
    st.text(NAME_CHARS, min_size=1, max_size=12),
    st.sampled_from([".", "..", "", "%2e%2e", "a/b", "new\nline", "cr\rx", "esc\x1b[0m", "del\x7f", "x" * 255,
                     "x" * 256, "\u00e9" * 128, ".hidden", ".x.wmproxy-part", "user.proxy", "\\", "nul\x00"]),
    st.text("abc.", min_size=1, max_size=4),
)


@st.composite
def paths(draw: st.DrawFn, service: FuzzService) -> str:
    """A URL path below the job's area, the sandbox root, or elsewhere, with random names."""
    area_dir = service.input_path.rsplit("/", 1)[0]
    base = draw(st.sampled_from([service.input_path, f"{area_dir}/output", f"{area_dir}/peek", area_dir,
                                 "SandboxDir", "SandboxDir/xx/nojob/input", "elsewhere"]))
    rest = draw(st.lists(names, max_size=3))
    trailing = draw(st.sampled_from(["", "", "/"]))
    return "/" + "/".join([base, *rest]) + trailing


def wsgi(path: str) -> str:
    return path.encode("utf-8", "surrogatepass").decode("latin-1")


@st.composite
def requests(draw: st.DrawFn, service: FuzzService) -> tuple[str, str, str | None, bytes, str]:
    method = draw(st.sampled_from(METHODS))
    destination = draw(st.none() | paths(service)) if method == "MOVE" else None
    body = draw(st.binary(max_size=64)) if method in ("PUT", "POST", "MOVE") else b""
    caller = draw(st.sampled_from(["alice", "alice", "alice", "bob", "mallory", "limited"]))
    return method, draw(paths(service)), destination, body, caller


_limited: dict[Path, Principal] = {}


def caller(pki: Pki, name: str) -> Principal:
    """The test user ``name``, or alice with a limited proxy (``limited``, made once per PKI)."""
    if name != "limited":
        return principal_of(pki, name)
    if pki.root not in _limited:
        limited = make_proxy(load_credential(pki.users["alice"].proxy), lifetime=3600, limited=True)
        _limited[pki.root] = Principal(pki.users["alice"].dn, chain_pem=chain_pem(limited.full_chain))
    return _limited[pki.root]


@fuzz_settings(1.5)
@given(data=st.data())
def test_sandbox_requests(service: FuzzService, pki: Pki, data: st.DataObject) -> None:
    method, path, destination, body, who = data.draw(requests(service))
    root = Path(service.soap.rt.settings.sandbox.root)
    before = tree_footprint(root)
    app = wrapped(service.soap, **({"HTTP_DESTINATION": wsgi(destination)} if destination is not None else {}))
    reply = app.request(body, caller(pki, who), method=method, path=wsgi(path))
    tried("sandbox")
    status = int(reply.status.split(" ", 1)[0])
    assert status < 500, (method, path, destination, reply)
    assert b"Traceback" not in reply.body
    if status >= 400:
        assert reply.headers["Content-Type"].startswith("text/plain"), reply
        assert reply.body.count(b"\n") == (1 if reply.body or method != "HEAD" else 0), reply
        assert tree_footprint(root) == before, (method, path, "a refused request changed the sandbox")

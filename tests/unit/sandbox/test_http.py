from __future__ import annotations

import io
import logging
import os
import re
from email.message import Message
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import pytest
from werkzeug.test import Client, TestResponse

from wmproxy.errors import AuthorizationError, JobNotFoundError, SandboxError
from wmproxy.sandbox.http import SandboxApp
from wmproxy.sandbox.storage import MAX_PATH_DEPTH, FilesystemSandboxStorage

JOB = "https://lb.example.org:9000/AbC-x_1yz"
JOB_DIR = "SandboxDir/Ab/https_3a_2f_2flb.example.org_3a9000_2fAbC-x_5f1yz"
INPUT = f"/{JOB_DIR}/input"
OUTPUT = f"/{JOB_DIR}/output"
MAX_INPUT = 1000


class FakeAuthorizer:
    """Lets the user named by the X-Test-User header touch JOB only; records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.error: Exception | None = None

    def __call__(self, environ: dict[str, Any], job_rel_dir: str, method: str) -> None:
        self.calls.append((job_rel_dir, method))
        if self.error is not None:
            raise self.error
        if environ.get("HTTP_X_TEST_USER") != "owner":
            raise AuthorizationError("You are not the owner of this job")


@pytest.fixture
def storage(tmp_path: Path) -> FilesystemSandboxStorage:
    storage = FilesystemSandboxStorage(tmp_path / "root")
    storage.create_job_area(JOB)
    return storage


@pytest.fixture
def authorizer() -> FakeAuthorizer:
    return FakeAuthorizer()


@pytest.fixture
def client(storage: FilesystemSandboxStorage, authorizer: FakeAuthorizer) -> Client:
    def input_limit(job_rel_dir: str) -> int:
        assert job_rel_dir == JOB_DIR
        return MAX_INPUT - storage.input_size(JOB)

    app = SandboxApp(storage, authorize=authorizer, input_limit=input_limit)
    return Client(app)


OWNER = {"X-Test-User": "owner"}


def _put(client: Client, path: str, data: bytes, **kw: Any) -> TestResponse:
    return client.put(path, data=data, headers={**OWNER, "Expect": "100-continue"}, **kw)


def _job_dir(storage: FilesystemSandboxStorage) -> Path:
    return storage.job_dir(JOB)


def _area(storage: FilesystemSandboxStorage, area: str) -> Path:
    """The job's ``area`` as its first write (upload, collected output) leaves it."""
    return storage.create_area(JOB_DIR, area)


class TestPut:
    def test_upload_creates_file(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        response = _put(client, f"{INPUT}/data.txt", b"hello")
        assert response.status_code == 201
        assert (_job_dir(storage) / "input" / "data.txt").read_bytes() == b"hello"

    def test_replacing_a_file_answers_204_and_counts_its_old_size_as_free(
        self, client: Client, storage: FilesystemSandboxStorage
    ) -> None:
        assert _put(client, f"{INPUT}/f", b"x" * 900).status_code == 201
        response = _put(client, f"{INPUT}/f", b"y" * 950)
        assert response.status_code == 204
        assert (_job_dir(storage) / "input" / "f").read_bytes() == b"y" * 950

    def test_over_limit_with_content_length_is_413(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        assert _put(client, f"{INPUT}/a", b"x" * 600).status_code == 201
        response = _put(client, f"{INPUT}/b", b"x" * 401)
        assert response.status_code == 413
        assert response.mimetype == "text/plain"
        assert "exceeds the maximum input sandbox size of 400 bytes" in response.get_data(as_text=True)
        assert os.listdir(_job_dir(storage) / "input") == ["a"]

    def test_over_limit_without_content_length_is_413(
        self, client: Client, storage: FilesystemSandboxStorage
    ) -> None:
        response = client.put(
            f"{INPUT}/chunked",
            input_stream=io.BytesIO(b"z" * (MAX_INPUT + 1)),
            headers=OWNER,
            environ_overrides={"wsgi.input_terminated": True},
        )
        assert response.status_code == 413
        assert [p for p in _job_dir(storage).rglob("*") if not p.is_dir()] == []

    def test_chunked_upload_within_limit(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        response = client.put(
            f"{INPUT}/chunked",
            input_stream=io.BytesIO(b"z" * MAX_INPUT),
            headers=OWNER,
            environ_overrides={"wsgi.input_terminated": True},
        )
        assert response.status_code == 201
        assert (_job_dir(storage) / "input" / "chunked").stat().st_size == MAX_INPUT

    def test_put_into_output_is_forbidden(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        response = _put(client, f"{OUTPUT}/std.out", b"forged")
        assert response.status_code == 403
        assert not (_job_dir(storage) / "output").exists()  # not even the area is made
        _area(storage, "output")
        assert _put(client, f"{OUTPUT}/std.out", b"forged").status_code == 403
        assert os.listdir(_job_dir(storage) / "output") == []

    def test_trailing_slash_makes_a_directory(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        response = _put(client, f"{INPUT}/sub/", b"")
        assert response.status_code == 201
        assert (_job_dir(storage) / "input" / "sub").is_dir()
        assert _put(client, f"{INPUT}/sub/", b"").status_code == 200
        assert _put(client, f"{INPUT}/sub/f", b"1").status_code == 201

    def test_missing_parent_directory_is_409(self, client: Client) -> None:
        assert _put(client, f"{INPUT}/no/such/f", b"1").status_code == 409
        assert _put(client, f"{INPUT}/no/such/", b"").status_code == 409

    def test_put_onto_a_directory_is_409(self, client: Client) -> None:
        assert _put(client, f"{INPUT}/d/", b"").status_code == 201
        assert _put(client, f"{INPUT}/d", b"1").status_code == 409

    def test_put_on_the_input_directory_itself_is_refused(self, client: Client) -> None:
        assert _put(client, f"{INPUT}/", b"").status_code == 403

    def test_symlink_escape_is_refused(
        self, client: Client, storage: FilesystemSandboxStorage, tmp_path: Path
    ) -> None:
        outside = tmp_path / "outside"
        outside.mkdir()
        (_area(storage, "input") / "esc").symlink_to(outside)
        response = _put(client, f"{INPUT}/esc/pwned", b"x")
        assert response.status_code == 403
        assert list(outside.iterdir()) == []

    def test_dotdot_is_refused(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        environ = {"PATH_INFO": f"{INPUT}/../user.proxy"}
        response = client.put(f"{INPUT}/x", data=b"x", headers=OWNER, environ_overrides=environ)
        assert response.status_code == 403
        assert not (_job_dir(storage) / "user.proxy").exists()


class TestDirectories:
    def test_a_path_deeper_than_the_limit_is_refused_with_403_naming_it(
        self, client: Client, storage: FilesystemSandboxStorage
    ) -> None:
        """1,399 directory PUTs made a tree whose sizing recursed past Python's limit."""
        for depth in range(1, MAX_PATH_DEPTH + 1):
            assert _put(client, INPUT + "/d" * depth + "/", b"").status_code == 201
        deepest = INPUT + "/d" * MAX_PATH_DEPTH
        assert _put(client, INPUT + "/d" * (MAX_PATH_DEPTH - 1) + "/f", b"1").status_code == 201
        for method, path in [("PUT", f"{deepest}/e/"), ("PUT", f"{deepest}/f"), ("GET", f"{deepest}/f"),
                             ("DELETE", f"{deepest}/f"), ("GET", OUTPUT + "/d" * (MAX_PATH_DEPTH + 1))]:
            response = client.open(path, method=method, data=b"1" if method == "PUT" else None, headers=OWNER)
            assert response.status_code == 403, (method, path)
            assert response.get_data(as_text=True) == (
                f"Sandbox paths may have at most {MAX_PATH_DEPTH} components below {path.split('/')[4]}/\n")
        assert os.listdir(_job_dir(storage) / "input" / deepest.split("/input/", 1)[1]) == []

    def test_a_new_directory_counts_against_the_file_limit_and_a_refused_one_makes_nothing(
        self, storage: FilesystemSandboxStorage, authorizer: FakeAuthorizer
    ) -> None:
        full = Client(SandboxApp(storage, authorize=authorizer, input_limit=lambda rel_dir: MAX_INPUT,
                                 check_new_file=lambda rel_dir: _refuse_count()))
        response = _put(full, f"{INPUT}/sub/", b"")
        assert response.status_code == 403
        assert response.get_data(as_text=True).startswith("The maximum number of input sandbox files is reached")
        assert os.listdir(_job_dir(storage)) == []  # not even input/
        (_area(storage, "input") / "sub").mkdir()
        assert _put(full, f"{INPUT}/sub/", b"").status_code == 200  # there already: nothing new


class TestGet:
    def test_file_has_bytes_length_and_date(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        out = _area(storage, "output") / "std.out"
        out.write_bytes(b"result\n")
        os.utime(out, (1_700_000_000, 1_700_000_000))
        response = client.get(f"{OUTPUT}/std.out", headers=OWNER, buffered=True)
        assert response.status_code == 200
        assert response.data == b"result\n"
        raw = dict(response.headers.to_wsgi_list())
        assert raw["Content-Length"] == "7"
        assert parsedate_to_datetime(raw["Last-Modified"]).timestamp() == 1_700_000_000

    def test_head_has_the_same_headers_and_no_body(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        (_area(storage, "output") / "big").write_bytes(b"x" * 12345)
        response = client.head(f"{OUTPUT}/big", headers=OWNER)
        assert response.status_code == 200
        assert response.data == b""
        names = [name for name, _ in response.headers.to_wsgi_list()]
        assert "Content-Length" in names and "Last-Modified" in names
        assert response.headers["Content-Length"] == "12345"

    def test_round_trip_of_an_upload(self, client: Client) -> None:
        data = os.urandom(300)
        _put(client, f"{INPUT}/blob", data)
        assert client.get(f"{INPUT}/blob", headers=OWNER, buffered=True).data == data

    def test_directory_listing_has_hrefs(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        output = _area(storage, "output")
        (output / "a b.txt").write_bytes(b"1")
        (output / "sub").mkdir()
        (output / ".out.x.wmproxy-part").write_bytes(b"in progress")
        response = client.get(f"{OUTPUT}/", headers=OWNER)
        assert response.status_code == 200
        assert response.mimetype == "text/html"
        hrefs = re.findall(r'<a href="([^"]*)"', response.get_data(as_text=True))
        assert hrefs == ["a%20b.txt", "sub/"]

    def test_missing_file_is_404(self, client: Client) -> None:
        assert client.get(f"{OUTPUT}/nothing", headers=OWNER).status_code == 404

    def test_unknown_job_is_404(self, client: Client) -> None:
        path = "/SandboxDir/Zz/https_3a_2f_2flb.example.org_3a9000_2fZzz/output/f"
        assert client.get(path, headers=OWNER).status_code == 404

    def test_symlink_to_outside_is_refused(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        (_area(storage, "output") / "passwd").symlink_to("/etc/passwd")
        response = client.get(f"{OUTPUT}/passwd", headers=OWNER)
        assert response.status_code == 403
        assert b"root:" not in response.data

    def test_job_files_outside_the_areas_are_not_served(
        self, client: Client, storage: FilesystemSandboxStorage
    ) -> None:
        (_job_dir(storage) / "user.proxy").write_bytes(b"SECRET KEY")
        for path in (f"/{JOB_DIR}/user.proxy", f"/{JOB_DIR}/", "/SandboxDir/", "/SandboxDir/Ab/"):
            response = client.get(path, headers=OWNER)
            assert response.status_code == 403, path
            assert b"SECRET" not in response.data


class TestServiceFilesLeftInTheAreas:
    """The job's proxy ``user.proxy`` (the owner's credential) that a collection or a perusal
    before they refused it left in ``output/`` or ``peek/``, placed there as it would have been:
    neither listed nor served, whoever asks; ``input/`` holds the owner's own uploads."""

    LEFT: ClassVar[dict[str, list[str]]] = {"output": ["user.proxy", ".wmproxy/job.marshal"],
                                            "peek": ["user.proxy.1700000000", "user.proxy-1700000000-1700000060",
                                                     ".wmproxy-1-2"]}
    KEPT: ClassVar[dict[str, list[str]]] = {"output": ["std.out", "user.proxy.txt", "User.proxy"],
                                            "peek": ["std.out-1-2", "user.proxy.txt.17", "user-1-2"]}

    @pytest.fixture
    def left(self, storage: FilesystemSandboxStorage) -> None:
        for area in ("output", "peek"):
            for name in self.LEFT[area] + self.KEPT[area]:
                path = _area(storage, area) / name
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(b"-----BEGIN PRIVATE KEY----- SECRET" if name in self.LEFT[area] else b"data")

    @pytest.mark.parametrize("area", ["output", "peek"])
    @pytest.mark.parametrize("method", ["GET", "HEAD"])
    def test_they_are_refused(self, client: Client, left: None, area: str, method: str) -> None:
        for name in self.LEFT[area] + [".wmproxy", ".wmproxy/"] * (area == "output"):
            response = client.open(f"/{JOB_DIR}/{area}/{quote(name)}", method=method, headers=OWNER)
            assert response.status_code == 403, name
            assert b"SECRET" not in response.data and "Content-Disposition" not in response.headers
            if method == "GET":
                assert response.get_data(as_text=True).startswith(f"{name.rstrip('/')} is not served: it is the ")
        for name in self.KEPT[area]:
            with client.open(f"/{JOB_DIR}/{area}/{quote(name)}", method=method, headers=OWNER) as response:
                assert response.status_code == 200, name

    @pytest.mark.parametrize("area", ["output", "peek"])
    def test_their_area_lists_the_others_only(self, client: Client, left: None, area: str) -> None:
        listed = re.findall(r'<a href="([^"]*)">', client.get(f"/{JOB_DIR}/{area}/", headers=OWNER).get_data(True))
        assert listed == sorted(quote(name) for name in self.KEPT[area])

    def test_the_input_area_serves_the_owners_upload_so_named(self, client: Client) -> None:
        assert _put(client, f"{INPUT}/user.proxy", b"mine").status_code == 201
        with client.get(f"{INPUT}/user.proxy", headers=OWNER) as response:
            assert response.data == b"mine"


def _assert_guarded(response: TestResponse) -> None:
    """The headers every sandbox answer carries (it is on the monitor's origin)."""
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cross-Origin-Resource-Policy"] == "same-origin"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    csp = [part.strip() for part in response.headers["Content-Security-Policy"].split(";")]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert not [part for part in csp if part.startswith(("script-src", "style-src")) or "unsafe" in part]


class TestSecurityHeaders:
    @pytest.mark.parametrize("name", ["x.html", "r\u00e9sultat final;.txt", "a\"b%41.html"])
    def test_a_file_is_an_attachment_never_sniffed_framed_or_run(
        self, client: Client, storage: FilesystemSandboxStorage, name: str
    ) -> None:
        (_area(storage, "output") / name).write_bytes(b"<html><script>alert(document.domain)</script>")
        path = f"{OUTPUT}/{quote(name)}"
        answers = [client.get(path, headers=OWNER, buffered=True), client.head(path, headers=OWNER),
                   client.get(path, headers={**OWNER, "Range": "bytes=0-5"}, buffered=True)]
        for response in answers:
            assert response.status_code in (200, 206)  # a range: served whole today
            assert response.headers["Content-Type"] == "application/octet-stream"
            _assert_guarded(response)
            assert "sandbox" in response.headers["Content-Security-Policy"]
            disposition = response.headers["Content-Disposition"]
            assert disposition == "attachment; filename*=UTF-8''" + quote(name, safe="")
            message = Message()
            message["Content-Disposition"] = disposition
            assert message.get_filename() == name  # RFC 2231/5987 read back

    def test_a_listing_has_a_policy_for_links_only(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        (_area(storage, "output") / "std.out").write_bytes(b"1")
        for response in (client.get(f"{OUTPUT}/", headers=OWNER), client.head(f"{OUTPUT}", headers=OWNER),
                         client.get(f"{INPUT}/", headers=OWNER)):  # input/ not made yet: listed empty
            assert response.status_code == 200 and response.mimetype == "text/html"
            _assert_guarded(response)
            assert "Content-Disposition" not in response.headers
            assert "base-uri 'self'" in response.headers["Content-Security-Policy"]  # its <base href>
        page = client.get(f"{OUTPUT}/", headers=OWNER).get_data(as_text=True)
        assert "<base href=" in page and "style" not in page and "<script" not in page

    def test_refusals_and_writes_carry_them_too(self, client: Client) -> None:
        answers = [
            client.get(f"{OUTPUT}/nothing", headers=OWNER),
            client.get(f"{OUTPUT}/std.out", headers={"X-Test-User": "mallory"}),
            client.open(f"{OUTPUT}/", method="PROPFIND", headers=OWNER),
            _put(client, f"{INPUT}/f", b"x"),
            client.delete(f"{INPUT}/f", headers=OWNER),
        ]
        assert [r.status_code for r in answers] == [404, 403, 405, 201, 204]
        for response in answers:
            _assert_guarded(response)
            assert "Content-Disposition" not in response.headers


class TestAuthorization:
    def test_other_user_is_403_before_any_file_access(
        self, client: Client, authorizer: FakeAuthorizer, storage: FilesystemSandboxStorage
    ) -> None:
        (_area(storage, "output") / "std.out").write_bytes(b"private")
        response = client.get(f"{OUTPUT}/std.out", headers={"X-Test-User": "mallory"})
        assert response.status_code == 403
        assert b"private" not in response.data
        assert authorizer.calls == [(JOB_DIR, "GET")]

    def test_upload_by_other_user_is_403(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        response = client.put(f"{INPUT}/f", data=b"x", headers={"X-Test-User": "mallory"})
        assert response.status_code == 403
        assert not (_job_dir(storage) / "input" / "f").exists()

    def test_job_not_found_from_authorize_is_404(self, client: Client, authorizer: FakeAuthorizer) -> None:
        authorizer.error = JobNotFoundError(JOB)
        assert client.get(f"{OUTPUT}/", headers=OWNER).status_code == 404

    def test_other_domain_errors_are_500_with_a_short_text(
        self, client: Client, authorizer: FakeAuthorizer
    ) -> None:
        authorizer.error = SandboxError("Database unavailable")
        response = client.get(f"{OUTPUT}/", headers=OWNER)
        assert response.status_code == 500
        assert response.get_data(as_text=True) == "Database unavailable\n"

    def test_unexpected_errors_do_not_leak_tracebacks(self, client: Client, authorizer: FakeAuthorizer) -> None:
        authorizer.error = RuntimeError("secret internals")
        response = client.get(f"{OUTPUT}/", headers=OWNER)
        assert response.status_code == 500
        text = response.get_data(as_text=True)
        assert "secret" not in text and "Traceback" not in text
        assert text.startswith("Internal server error (error id ")

    def test_the_log_line_of_an_unexpected_error_quotes_the_path_on_one_line(
            self, client: Client, authorizer: FakeAuthorizer, caplog: pytest.LogCaptureFixture) -> None:
        authorizer.error = RuntimeError("secret internals")
        # C0 controls are refused in a name (400) before anything can fail; C1 controls (CSI
        # U+009B, NEL U+0085) and U+2028 are not
        with caplog.at_level(logging.ERROR, logger="wmproxy.sandbox.http"):
            client.get(f"{OUTPUT}/a%C2%9B2Kb%C2%85c%E2%80%A8d", headers=OWNER)
        (line,) = [r.getMessage() for r in caplog.records if r.name == "wmproxy.sandbox.http"]
        assert line.startswith(f"sandbox request GET {OUTPUT}/a\\x9b2Kb\\x85c\\u2028d failed (error id "), line


class TestDeleteMoveAndMethods:
    def test_delete_file_and_empty_directory(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        _put(client, f"{INPUT}/f", b"1")
        _put(client, f"{INPUT}/d/", b"")
        assert client.delete(f"{INPUT}/f", headers=OWNER).status_code == 204
        assert client.delete(f"{INPUT}/d/", headers=OWNER).status_code == 204
        assert os.listdir(_job_dir(storage) / "input") == []
        assert client.delete(f"{INPUT}/f", headers=OWNER).status_code == 404

    def test_delete_non_empty_directory_is_409(self, client: Client) -> None:
        _put(client, f"{INPUT}/d/", b"")
        _put(client, f"{INPUT}/d/f", b"1")
        assert client.delete(f"{INPUT}/d", headers=OWNER).status_code == 409

    def test_delete_in_output_is_forbidden(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        (_area(storage, "output") / "std.out").write_bytes(b"x")
        assert client.delete(f"{OUTPUT}/std.out", headers=OWNER).status_code == 403
        assert (_area(storage, "output") / "std.out").exists()

    def test_move_inside_input(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        _put(client, f"{INPUT}/a", b"1")
        response = client.open(
            f"{INPUT}/a", method="MOVE", headers={**OWNER, "Destination": f"https://wms:7443{INPUT}/b"}
        )
        assert response.status_code == 201
        assert os.listdir(_job_dir(storage) / "input") == ["b"]

    def test_move_of_a_directory_is_refused(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        """A moved directory would take its depth below the destination: chained moves built
        trees past the depth a PUT may reach."""
        _put(client, f"{INPUT}/d/", b"")
        _put(client, f"{INPUT}/e/", b"")
        response = client.open(
            f"{INPUT}/d", method="MOVE", headers={**OWNER, "Destination": f"https://wms:7443{INPUT}/e/d"}
        )
        assert response.status_code == 403
        assert sorted(os.listdir(_job_dir(storage) / "input")) == ["d", "e"]
        assert os.listdir(_job_dir(storage) / "input" / "e") == []

    def test_a_source_made_a_directory_before_the_lock_is_not_moved(
        self, storage: FilesystemSandboxStorage, authorizer: FakeAuthorizer
    ) -> None:
        """The directory check is made again with the counter locked: a DELETE of the file and
        a directory PUT of its name between the first check and the lock had a directory moved
        (past the depth a PUT may reach, as chained)."""

        def record_bytes(_job_rel_dir: str, change: Any, apply: Any) -> None:
            # what another client's DELETE and directory PUTs did before this MOVE took the lock
            source = _job_dir(storage) / "input" / "a"
            source.unlink()
            source.mkdir()
            (source / "s0").mkdir()
            change()
            apply()

        client = Client(SandboxApp(storage, authorize=authorizer, input_limit=lambda _d: MAX_INPUT,
                                   record_bytes=record_bytes))
        _area(storage, "input")
        (_job_dir(storage) / "input" / "a").write_bytes(b"1")
        (_job_dir(storage) / "input" / "e").mkdir()
        response = client.open(
            f"{INPUT}/a", method="MOVE", headers={**OWNER, "Destination": f"https://wms:7443{INPUT}/e/a"}
        )
        assert response.status_code == 403
        assert os.listdir(_job_dir(storage) / "input" / "e") == []

    def test_a_directory_put_is_recorded_as_one_more_file_with_the_counter_locked(
        self, storage: FilesystemSandboxStorage, authorizer: FakeAuthorizer
    ) -> None:
        """Directory PUTs were checked against max_input_sandbox_files only before they were
        made, with no lock: concurrent ones all passed. Now each goes through record_bytes (its
        change counted there, the directory made there), an existing one as no change."""
        recorded: list[tuple[int, int]] = []

        def record_bytes(_job_rel_dir: str, change: Any, apply: Any) -> None:
            recorded.append(tuple(change()))
            apply()

        client = Client(SandboxApp(storage, authorize=authorizer, input_limit=lambda _d: MAX_INPUT,
                                   record_bytes=record_bytes))
        assert _put(client, f"{INPUT}/d/", b"").status_code == 201
        assert _put(client, f"{INPUT}/d/", b"").status_code == 200
        assert recorded == [(0, 1), (0, 0)]
        assert (_job_dir(storage) / "input" / "d").is_dir()

    def test_move_out_of_input_is_refused(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        _put(client, f"{INPUT}/a", b"1")
        response = client.open(
            f"{INPUT}/a", method="MOVE", headers={**OWNER, "Destination": f"https://wms:7443{OUTPUT}/a"}
        )
        assert response.status_code == 403
        assert os.listdir(_job_dir(storage) / "input") == ["a"]

    @pytest.mark.parametrize("destination", ["https://[wms:7443{INPUT}/b", "https://[wms]:7443{INPUT}/b"])
    def test_a_destination_with_a_malformed_host_is_refused(
        self, client: Client, storage: FilesystemSandboxStorage, destination: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """urlsplit raised ValueError for an unclosed or non-address ``[`` host: a 500 with a
        logged traceback. It is a bad destination like the others."""
        _put(client, f"{INPUT}/a", b"1")
        with caplog.at_level(logging.ERROR):
            response = client.open(
                f"{INPUT}/a", method="MOVE", headers={**OWNER, "Destination": destination.format(INPUT=INPUT)}
            )
        assert response.status_code == 403, response.get_data(as_text=True)
        assert "Bad MOVE destination" in response.get_data(as_text=True)
        assert os.listdir(_job_dir(storage) / "input") == ["a"]
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text

    def test_names_of_uploads_in_progress_are_refused(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        """A temporary file's name is left out of the usage counter: a client file of that name
        would hold bytes the owner's removal of the area never gave back, or pass for one."""
        temporary = ".big.bin.k2j4l5m6.wmproxy-part"
        _put(client, f"{INPUT}/a", b"1")
        for response in (
            _put(client, f"{INPUT}/{temporary}", b"x" * 100),
            _put(client, f"{INPUT}/{temporary}/", b""),
            client.open(f"{INPUT}/a", method="MOVE", headers={**OWNER, "Destination": f"{INPUT}/{temporary}"}),
        ):
            assert response.status_code == 400
            assert "kept for uploads in progress" in response.get_data(as_text=True)
        assert os.listdir(_job_dir(storage) / "input") == ["a"]
        assert _put(client, f"{INPUT}/.hidden.wmproxy-part.txt", b"x").status_code == 201  # other names stay

    def test_unknown_method_is_405(self, client: Client) -> None:
        response = client.post(f"{INPUT}/a", data=b"x", headers=OWNER)
        assert response.status_code == 405
        assert "PUT" in response.headers["Allow"]


class TestAreasMadeByTheirFirstWrite:
    """Registration makes only the job directory; an area not written to yet answers exactly
    as an empty one did when registration made all three."""

    @pytest.mark.parametrize("area", ["input", "output", "peek"])
    @pytest.mark.parametrize("method", ["GET", "HEAD"])
    @pytest.mark.parametrize("slash", ["", "/"])
    def test_a_missing_area_lists_as_an_empty_one(
        self, client: Client, storage: FilesystemSandboxStorage, area: str, method: str, slash: str
    ) -> None:
        path = f"/{JOB_DIR}/{area}{slash}"
        before = client.open(path, method=method, headers=OWNER)
        assert not (_job_dir(storage) / area).exists()
        _area(storage, area)
        after = client.open(path, method=method, headers=OWNER)
        assert before.status_code == after.status_code == 200
        assert before.get_data() == after.get_data()
        assert before.headers.to_wsgi_list() == after.headers.to_wsgi_list()

    @pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
    def test_a_file_of_a_missing_area_is_404_as_in_an_empty_one(
        self, client: Client, storage: FilesystemSandboxStorage, method: str
    ) -> None:
        before = client.open(f"{INPUT}/f", method=method, headers=OWNER)
        _area(storage, "input")
        after = client.open(f"{INPUT}/f", method=method, headers=OWNER)
        assert before.status_code == after.status_code == 404
        assert before.get_data() == after.get_data()

    def test_a_move_in_a_missing_area_is_404_and_makes_nothing(
        self, client: Client, storage: FilesystemSandboxStorage
    ) -> None:
        response = client.open(f"{INPUT}/a", method="MOVE",
                               headers={**OWNER, "Destination": f"https://wms:7443{INPUT}/b"})
        assert response.status_code == 404
        assert os.listdir(_job_dir(storage)) == []

    @pytest.mark.parametrize("area", ["input", "output", "peek"])
    @pytest.mark.parametrize("method", ["GET", "HEAD"])
    def test_a_job_without_a_directory_lists_as_one_with_empty_areas(
        self, client: Client, storage: FilesystemSandboxStorage, area: str, method: str
    ) -> None:
        # A job sent with jobSubmit: found by the authorizer (the store), no directory until it runs.
        empty = client.open(f"/{JOB_DIR}/{area}/", method=method, headers=OWNER)
        storage.remove_job_area(JOB)
        response = client.open(f"/{JOB_DIR}/{area}/", method=method, headers=OWNER)
        assert response.status_code == empty.status_code == 200
        assert response.get_data() == empty.get_data()
        assert response.headers.to_wsgi_list() == empty.headers.to_wsgi_list()
        assert client.open(f"/{JOB_DIR}/{area}/f", method=method, headers=OWNER).status_code == 404
        assert not storage.job_dir(JOB).parent.exists()  # reading made nothing, not even the fan-out

    def test_an_upload_never_makes_the_job_directory(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        storage.remove_job_area(JOB)  # removed (purged), or never made (jobSubmit: uploads are refused first)
        assert _put(client, f"{INPUT}/data.txt", b"hello").status_code == 404
        assert _put(client, f"{INPUT}/sub/", b"").status_code == 404
        assert not storage.job_dir(JOB).parent.exists()

    def test_the_first_upload_makes_a_private_input_then_lists_and_serves_it(
        self, client: Client, storage: FilesystemSandboxStorage
    ) -> None:
        assert os.listdir(_job_dir(storage)) == []
        assert _put(client, f"{INPUT}/data.txt", b"hello").status_code == 201
        assert os.listdir(_job_dir(storage)) == ["input"]
        assert (_job_dir(storage) / "input").stat().st_mode & 0o777 == 0o700
        hrefs = re.findall(r'<a href="([^"]*)"', client.get(f"{INPUT}/", headers=OWNER).get_data(as_text=True))
        assert hrefs == ["data.txt"]
        assert client.get(f"{INPUT}/data.txt", headers=OWNER, buffered=True).data == b"hello"

    def test_the_first_directory_upload_makes_input(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        assert _put(client, f"{INPUT}/sub/", b"").status_code == 201
        assert (_job_dir(storage) / "input" / "sub").is_dir()
        assert _put(client, f"{INPUT}/sub/f", b"1").status_code == 201

    def test_a_first_upload_refused_before_writing_makes_nothing(
        self, client: Client, storage: FilesystemSandboxStorage, authorizer: FakeAuthorizer
    ) -> None:
        assert _put(client, f"{INPUT}/big", b"x" * (MAX_INPUT + 1)).status_code == 413  # announced size
        assert client.put(f"{INPUT}/f", data=b"x", headers={"X-Test-User": "mallory"}).status_code == 403
        full = Client(SandboxApp(storage, authorize=authorizer, input_limit=lambda rel_dir: MAX_INPUT,
                                 check_new_file=lambda rel_dir: _refuse_count()))
        assert _put(full, f"{INPUT}/f", b"x").status_code == 403  # over the file count
        assert os.listdir(_job_dir(storage)) == []

    def test_a_nested_path_needs_its_parent_and_makes_nothing(
        self, client: Client, storage: FilesystemSandboxStorage
    ) -> None:
        assert _put(client, f"{INPUT}/no/f", b"1").status_code == 409
        assert _put(client, f"{INPUT}/no/such/", b"").status_code == 409
        assert os.listdir(_job_dir(storage)) == []

    def test_concurrent_first_uploads_both_land(self, client: Client, storage: FilesystemSandboxStorage) -> None:
        import threading

        barrier = threading.Barrier(8)
        statuses: list[int] = []

        def upload(i: int) -> None:
            barrier.wait()
            statuses.append(_put(Client(client.application), f"{INPUT}/f{i}", b"x").status_code)

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == [201] * 8
        assert sorted(os.listdir(_job_dir(storage) / "input")) == sorted(f"f{i}" for i in range(8))

    def test_an_upload_after_the_area_was_removed_does_not_bring_it_back(
        self, client: Client, storage: FilesystemSandboxStorage
    ) -> None:
        # The job is purged before the upload (the authorizer still says yes)...
        storage.remove_job_area(JOB)
        for path in (f"{INPUT}/f", f"{INPUT}/d/"):
            assert _put(client, path, b"x").status_code == 404
        assert not _job_dir(storage).exists() and not _job_dir(storage).parent.exists()

    def test_an_upload_racing_the_removal_does_not_bring_the_area_back(
        self, storage: FilesystemSandboxStorage, authorizer: FakeAuthorizer
    ) -> None:
        def purged_meanwhile(job_rel_dir: str) -> int:  # after the path was resolved, before input/ is made
            storage.remove_job_area(JOB)
            return MAX_INPUT

        client = Client(SandboxApp(storage, authorize=authorizer, input_limit=purged_meanwhile))
        response = _put(client, f"{INPUT}/f", b"x")
        assert response.status_code == 404
        assert "No such job sandbox" in response.get_data(as_text=True)
        assert not _job_dir(storage).exists() and not _job_dir(storage).parent.exists()

    def test_an_area_removed_while_an_upload_streams_answers_404(
        self, client: Client, storage: FilesystemSandboxStorage
    ) -> None:
        # the job is purged or cancelled while its file arrives: a 404 that says so, not a 500
        _area(storage, "input")

        class PurgedMidway(io.BytesIO):
            def read(self, n: int | None = -1) -> bytes:
                if self.tell():
                    storage.remove_job_area(JOB)
                return super().read(min(n or 1, 1))

        response = client.put(f"{INPUT}/f", input_stream=PurgedMidway(b"xyz"), content_length=3, headers=OWNER)
        assert response.status_code == 404
        assert "No such job sandbox" in response.get_data(as_text=True)
        assert not _job_dir(storage).exists()


def _refuse_count() -> None:
    from wmproxy.errors import SandboxFileCountError

    raise SandboxFileCountError("The maximum number of input sandbox files is reached")


class TestCallersTheSiteRefuses:
    """``admit`` runs before the path is parsed: a caller the site does not admit is refused
    (403) whatever the path, and its body is not read (docs/load.md)."""

    @pytest.mark.parametrize("path", [f"{INPUT}/bad%01name", "/SandboxDir/zz", f"{INPUT}/ok"])
    @pytest.mark.parametrize("method", ["PUT", "GET", "DELETE"])
    def test_refused_before_the_path_and_the_body(self, storage: FilesystemSandboxStorage,
                                                  authorizer: FakeAuthorizer, path: str, method: str) -> None:
        from wmproxy.services.authz import NotAdmittedError

        admitted: list[str] = []

        def admit(environ: dict[str, Any], method: str) -> None:
            admitted.append(method)
            raise NotAdmittedError("user not authorized")

        body = io.BytesIO(b"x" * 1000)
        client = Client(SandboxApp(storage, authorize=authorizer, input_limit=lambda _d: MAX_INPUT, admit=admit))
        response = client.open(path, method=method, input_stream=body, content_length=1000, headers=OWNER)
        assert response.status_code == 403, response.get_data(as_text=True)
        assert admitted == [method]
        assert body.tell() == 0  # not drained


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_whose_read_fails_is_a_400(client: Client, storage: FilesystemSandboxStorage, chunked: bool) -> None:
    """The server's read of a cut or malformed body raises (gunicorn's NoMoreData, InvalidChunkSize):
    the request's fault, 400, not a 500 with a traceback; nothing stored."""
    from gunicorn.http.errors import InvalidChunkSize  # type: ignore[import-untyped]

    class Malformed(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise InvalidChunkSize(b"zz")

    headers = {**OWNER, "Transfer-Encoding": "chunked"} if chunked else OWNER
    kw: dict[str, Any] = {"environ_overrides": {"wsgi.input_terminated": True}} if chunked else {"content_length": 3}
    response = client.put(f"{INPUT}/f", input_stream=Malformed(b"xyz"), headers=headers, **kw)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert "truncated or malformed request body" in response.get_data(as_text=True)
    assert not (_area(storage, "input") / "f").exists()


@pytest.mark.parametrize("method", ["MOVE", "PUT"])
def test_a_path_longer_than_path_max_is_a_400(client: Client, storage: FilesystemSandboxStorage, method: str) -> None:
    """16 names of 255 bytes below input/: more than PATH_MAX on disk (os.lstat's ENAMETOOLONG was
    a 500 with a traceback)."""
    names = [f"{i:02d}" + "n" * 253 for i in range(16)]
    made = _area(storage, "input")
    for name in names[:-1]:  # every directory there, as far as the file system lets it be made
        try:
            (made / name).mkdir()
        except OSError:
            break
        made = made / name
    _put(client, f"{INPUT}/a", b"1")
    long_path = f"{INPUT}/" + "/".join(names)
    if method == "MOVE":
        response = client.open(f"{INPUT}/a", method="MOVE",
                               headers={**OWNER, "Destination": f"https://wms:7443{long_path}"})
    else:
        response = _put(client, long_path, b"2")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert "too long" in response.get_data(as_text=True)
    assert (_area(storage, "input") / "a").read_bytes() == b"1"


def test_a_listing_leaves_out_names_it_cannot_serve(client: Client, storage: FilesystemSandboxStorage) -> None:
    """Names a collection stored before it refused them: not UTF-8 (``quote`` raised, a 500 for
    the whole listing), a control character (its GET is a 400)."""
    output = _area(storage, "output")
    os.close(os.open(os.fsencode(output) + b"/\xffname.txt", os.O_CREAT | os.O_WRONLY, 0o600))
    (output / "bad\nname.txt").write_bytes(b"x")
    (output / "good.txt").write_bytes(b"x")
    response = client.get(f"{OUTPUT}/", headers=OWNER)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert re.findall(r'<a href="([^"]*)"', response.get_data(as_text=True)) == ["good.txt"]


def test_a_lowered_name_limit_refuses_new_names_and_still_serves_the_stored_ones(
        storage: FilesystemSandboxStorage, authorizer: FakeAuthorizer) -> None:
    """A site that lowers ``[limits] max_sandbox_name_bytes``: a PUT of a longer name is refused
    (400), a file stored under one before is listed and served (its GET was a 400, and
    getOutputFileList listed it: ``wmproxy output`` failed on every such job)."""
    app = SandboxApp(storage, authorize=authorizer, input_limit=lambda rel_dir: MAX_INPUT, max_name_bytes=16)
    client = Client(app)
    output = _area(storage, "output")
    for name in ("x" * 16, "y" * 17, "z.txt"):
        (output / name).write_bytes(b"x")
    response = client.get(f"{OUTPUT}/", headers=OWNER)
    assert response.status_code == 200, response.get_data(as_text=True)
    listed = re.findall(r'<a href="([^"]*)"', response.get_data(as_text=True))
    assert listed == ["x" * 16, "y" * 17, "z.txt"]
    for name in listed:
        fetched = client.get(f"{OUTPUT}/{name}", headers=OWNER)
        assert (fetched.status_code, fetched.get_data()) == (200, b"x")
        fetched.close()
    assert client.put(f"{INPUT}/{'w' * 17}", data=b"x", headers=OWNER).status_code == 400
    assert client.put(f"{INPUT}/{'w' * 16}", data=b"x", headers=OWNER).status_code in (200, 201, 204)

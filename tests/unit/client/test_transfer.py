"""HTTPS sandbox PUT/GET over an injected session (no sockets)."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path
from typing import Any

import pytest
import requests

from wmproxy.client import WMProxyClientError
from wmproxy.client.transfer import Directory, download_file, upload_file


class TransferSession(requests.Session):
    """Keeps PUT bodies in ``store`` and serves GETs from it."""

    def __init__(self, status: int = 201) -> None:
        super().__init__()
        self.store: dict[str, bytes] = {}
        self.status = status
        self.headers_seen: dict[str, str] = {}

    def put(self, url: str, data: Any = None, headers: Any = None, **kw: Any) -> requests.Response:  # type: ignore[override]
        chunks = []
        self.headers_seen = {"Content-Length": str(len(data)), **(headers or {})}
        while chunk := data.read(4):
            chunks.append(chunk)
        self.store[url] = b"".join(chunks)
        r = requests.Response()
        r.status_code = self.status
        return r

    def get(self, url: str, stream: bool = False, **kw: Any) -> requests.Response:  # type: ignore[override]
        r = requests.Response()
        if url in self.store:
            r.status_code, r.raw = 200, io.BytesIO(self.store[url])
        else:
            r.status_code, r.reason, r.raw = 404, "Not Found", io.BytesIO(b"")
        return r


DEST = "https://wms.example.org:7443/SandboxDir/Ab/job/input"


class TestUpload:
    def test_puts_to_dest_slash_basename_and_reports_progress(self, tmp_path: Path) -> None:
        src = tmp_path / "my script.sh"
        src.write_bytes(b"0123456789")
        session, progress = TransferSession(), []
        uri = upload_file(session, DEST + "/", src, progress=progress.append)
        assert uri == f"{DEST}/my%20script.sh"
        assert session.store[uri] == b"0123456789"
        assert sum(progress) == 10 and len(progress) > 1
        assert session.headers_seen["Content-Length"] == "10"

    def test_http_error(self, tmp_path: Path) -> None:
        (tmp_path / "f").write_bytes(b"x")
        with pytest.raises(WMProxyClientError) as err:
            upload_file(TransferSession(status=403), DEST, tmp_path / "f")
        assert err.value.fault_type == "TransferError"
        assert "403" in err.value.description

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(WMProxyClientError) as err:
            upload_file(TransferSession(), DEST, tmp_path / "absent")
        assert err.value.fault_type == "TransferError"


class TestDownload:
    def test_gets_into_directory_by_last_segment(self, tmp_path: Path) -> None:
        session = TransferSession()
        session.store["https://h/out/std%20out.txt"] = b"hello" * 1000
        progress: list[int] = []
        path = download_file(session, "https://h/out/std%20out.txt", tmp_path / "new", progress=progress.append)
        assert path == tmp_path / "new" / "std out.txt"
        assert path.read_bytes() == b"hello" * 1000
        assert sum(progress) == 5000
        assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["std out.txt"]  # no .part left

    def test_http_error_leaves_nothing(self, tmp_path: Path) -> None:
        with pytest.raises(WMProxyClientError) as err:
            download_file(TransferSession(), "https://h/out/missing", tmp_path)
        assert err.value.fault_type == "TransferError"
        assert "404" in err.value.description
        assert list(tmp_path.iterdir()) == []

    def test_uri_without_file_name(self, tmp_path: Path) -> None:
        with pytest.raises(WMProxyClientError):
            download_file(TransferSession(), "https://h/out/", tmp_path)


class TestDirectory:
    def test_a_child_that_is_the_users_own_link_is_not_followed_and_said_so(self, tmp_path: Path) -> None:
        (tmp_path / "top").mkdir()
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "top" / "alice_1").symlink_to(tmp_path / "elsewhere")
        with Directory(tmp_path / "top") as top:
            child = top.child("alice_1")
            with pytest.raises(OSError, match="symbolic link") as err:
                child.fileno()
        assert err.value.errno == errno.ELOOP
        assert err.value.strerror == f"{tmp_path / 'top' / 'alice_1'} is a symbolic link, not followed"

    def test_close_forgets_an_error_of_opening(self, tmp_path: Path) -> None:
        """As its docstring says: a later use opens the directory again."""
        (tmp_path / "out").write_text("a file where the directory goes")
        folder = Directory(tmp_path / "out")
        with pytest.raises(FileExistsError):
            folder.fileno()
        (tmp_path / "out").unlink()
        folder.close()
        assert os.path.samestat(os.fstat(folder.fileno()), os.stat(tmp_path / "out"))
        folder.close()

    def test_a_name_that_cannot_be_looked_up_is_not_said_to_exist(self, tmp_path: Path) -> None:
        """Writing it fails with its own error (here ENAMETOOLONG; EACCES in a directory without
        search permission), not 'already exists'."""
        with Directory(tmp_path) as folder:
            assert not folder.exists("x" * 300)
            (tmp_path / "there").write_text("")
            assert folder.exists("there") and not folder.exists("absent")

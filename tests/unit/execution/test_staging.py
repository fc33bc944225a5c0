"""wmproxy.execution.staging: reads from the job's area, writes into it only through the storage."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.conftest import Pki
from wmproxy.errors import ProxyError, SandboxError
from wmproxy.execution.staging import stage_in, stage_out, write_job_proxy
from wmproxy.sandbox.storage import FilesystemSandboxStorage

PARENT = "https://lb.example.org:9000/PaRentAAAAAAAAAAAAAAAA"
NODE = "https://lb.example.org:9000/NoDeBBBBBBBBBBBBBBBBBB"


@pytest.fixture
def storage(tmp_path: Path) -> FilesystemSandboxStorage:
    storage = FilesystemSandboxStorage(tmp_path / "root", base_url="https://wms.example.org:7443")
    storage.create_job_area(PARENT)
    storage.create_job_area(NODE)
    return storage


class TestStageIn:
    def test_a_node_gets_its_files_from_the_parent_input_area(
        self, storage: FilesystemSandboxStorage, tmp_path: Path
    ) -> None:
        (storage.job_area(PARENT).input_dir / "common.sh").write_bytes(b"echo hi\n")
        work = tmp_path / "work"

        stage_in(storage.job_area(NODE, PARENT), work, ("common.sh",))

        assert (work / "common.sh").read_bytes() == b"echo hi\n"

    def test_a_file_never_uploaded_is_a_sandbox_error(self, storage: FilesystemSandboxStorage, tmp_path: Path) -> None:
        (storage.job_area(NODE).input_dir / "common.sh").write_bytes(b"in the node's own input")
        with pytest.raises(SandboxError, match=r"common\.sh"):
            stage_in(storage.job_area(NODE, PARENT), tmp_path / "work", ("common.sh",))


class TestStageOut:
    def test_a_node_outputs_go_to_its_own_output_area(self, storage: FilesystemSandboxStorage, tmp_path: Path) -> None:
        work = tmp_path / "work"
        work.mkdir()
        (work / "res.txt").write_bytes(b"42")

        missing = stage_out(storage, storage.job_area(NODE, PARENT), work, ("res.txt", "none.txt"))

        assert missing == ["none.txt"]
        assert storage.output_files(NODE) == [("res.txt", 2)]
        assert storage.output_files(PARENT) == []


class TestWriteJobProxy:
    def test_the_proxy_lands_in_the_area_proxy_file_with_mode_0600(self, storage: FilesystemSandboxStorage,
                                                                   pki: Pki) -> None:
        pem = pki.users["alice"].proxy.read_bytes()
        area = storage.job_area(NODE, PARENT)

        path = write_job_proxy(storage, area, pem)

        assert path == area.proxy_file
        assert path.read_bytes() == pem
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_a_broken_credential_is_refused_and_nothing_is_written(self, storage: FilesystemSandboxStorage) -> None:
        area = storage.job_area(NODE)
        with pytest.raises(ProxyError):
            write_job_proxy(storage, area, b"not a proxy")
        assert not area.proxy_file.exists()

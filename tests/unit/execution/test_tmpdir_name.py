"""The job's TMPDIR never collides with a sandbox file: an ``InputSandbox`` file named ``tmp``
(the wrapper's TMPDIR was ``<work_dir>/tmp``) aborted every job staging it with "the job's tmp
entry is not a directory of the job", and every shallow retry the same way."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.execution.wrapper_support import HOST, launch, run
from wmproxy.domain import JobState
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.identity import Account
from wmproxy.execution.jobwrapper import TMP_DIR
from wmproxy.sandbox.storage import SandboxNameError, check_file_name


@pytest.fixture(params=[False, True], ids=["fresh", "recycled"])
def backend(work_root: Path, request: pytest.FixtureRequest) -> Iterator[LocalExecutionBackend]:
    root = work_root / "jobs"
    root.mkdir(mode=0o755)
    backend = LocalExecutionBackend(root, HOST, kill_grace=2.0, reuse_work_dirs=request.param)
    yield backend
    backend.close()


def test_no_sandbox_file_can_take_the_tmpdir_name() -> None:
    with pytest.raises(SandboxNameError):
        check_file_name(TMP_DIR)


def test_an_input_sandbox_file_named_tmp_is_staged_and_read(
    backend: LocalExecutionBackend, input_dir: Path, account: Account | None
) -> None:
    (input_dir / "tmp").write_bytes(b"data\n")
    script = 'cat tmp; echo "$TMPDIR"; test -d "$TMPDIR" && test -w "$TMPDIR" && mktemp >/dev/null'
    for _ in range(2):  # the second job of a recycling backend starts in the first's spare
        handle, outcome = run(backend, launch(input_dir, account, script, isb=("tmp",)))
        assert (outcome.state, outcome.exit_code) == (JobState.DONE, 0), outcome
        assert (handle.work_dir / "out").read_text().splitlines() == ["data", str(handle.work_dir / TMP_DIR)]
        assert (handle.work_dir / "tmp").read_bytes() == b"data\n"
        assert os.path.isdir(handle.work_dir / TMP_DIR)
        backend.release(handle)

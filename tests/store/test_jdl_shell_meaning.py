"""JDL ``Environment`` and ``Arguments`` keep the original job wrapper's shell meaning (gLite's
template.sh: ``eval export $env`` for each entry, then ``eval "\"$executable\" $__arguments"``):
``$VAR`` expanded from the job's environment on the worker node, quotes removed, a ``PATH``
extended. Real worker in process (local backend), real wrapper as the mapped account, both
databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.store.worker_support import job_row, run_to_end, running_runtime
from tests.support import principal_of
from wmproxy.domain import JobState
from wmproxy.execution.identity import Account
from wmproxy.execution.jobwrapper import BASE_PATH
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job


@pytest.fixture
def rt(tmp_path: Path, pki: Pki, database_url: str, work_root: Path, job_account: Account,
       store_key_dir: Path) -> Iterator[Runtime]:
    with running_runtime(tmp_path, pki, database_url, work_root, job_account, store_key_dir) as runtime:
        yield runtime


def run(rt: Runtime, pki: Pki, work_root: Path, jdl: str) -> tuple[str, dict[str, str]]:
    """Submit ``jdl`` (StdOutput/StdError ``out``/``err`` in its OutputSandbox added), run it to
    its end; the job id and its collected outputs by name."""
    text = f'[ StdOutput = "out"; StdError = "err"; OutputSandbox = {{"out", "err"}}; {jdl} ]'
    job_id = submit_job(rt, principal_of(pki, "alice"), text, "exec").job_id
    run_to_end(rt, job_id, work_root)
    area = rt.storage.job_area(job_id).output_dir
    return job_id, {path.name: path.read_text() for path in area.iterdir()} if area.is_dir() else {}


def test_environment_values_are_expanded_and_unquoted_on_the_worker_node(rt: Runtime, pki: Pki,
                                                                       work_root: Path) -> None:
    """They were passed literally: PATH became the string ``$PATH:/opt/tool/bin``, the quotes stayed."""
    job_id, out = run(rt, pki, work_root, 'Executable = "/usr/bin/env"; Environment = {'
                      '"MYPATH_PARAM_=$PATH:/bin:/usr/bin:$HOME", "PATH=$PATH:/opt/tool/bin",'
                      ' "GREETING=\'hello world\'", "JOB=${GLITE_WMS_JOBID}", "LITERAL=\'$HOME\'"};')
    assert job_row(rt, job_id).state == JobState.DONE.value and job_row(rt, job_id).exit_code == 0, out
    env = dict(line.split("=", 1) for line in out["out"].splitlines() if "=" in line)
    home = env["HOME"]
    assert home.startswith(str(work_root) + "/")
    assert env["MYPATH_PARAM_"] == f"{BASE_PATH}:/bin:/usr/bin:{home}"  # the reference's regression JDL 27797
    assert env["PATH"] == f"{BASE_PATH}:/opt/tool/bin"
    assert env["GREETING"] == "hello world" and env["JOB"] == job_id and env["LITERAL"] == "$HOME"


def test_arguments_are_expanded_and_unquoted_as_the_shell_reads_them(rt: Runtime, pki: Pki, work_root: Path) -> None:
    """They were split by shlex: quotes removed but ``$HOME`` and ``${GLITE_WMS_JOBID}`` passed literally."""
    job_id, out = run(rt, pki, work_root, 'Executable = "/usr/bin/printf";'
                      ' Arguments = "\'<%s>\\\\n\' $HOME/data.in ${GLITE_WMS_JOBID} \'a  b\' \\\\$KEPT \\"$V\\"";'
                      ' Environment = {"V=v w"};')
    assert job_row(rt, job_id).state == JobState.DONE.value and job_row(rt, job_id).exit_code == 0, out
    words = out["out"].splitlines()
    assert words[0].startswith(f"<{work_root}/") and words[0].endswith("/data.in>") and "$" not in words[0]
    assert words[1:] == [f"<{job_id}>", "<a  b>", "<$KEPT>", "<v>"]  # V=v w: the shell's split, as eval export


def test_a_syntax_error_in_the_arguments_ends_the_job_done_with_the_shells_exit_code(
        rt: Runtime, pki: Pki, work_root: Path) -> None:
    job_id, out = run(rt, pki, work_root, 'Executable = "/bin/echo"; Arguments = "\\"unterminated";')
    row = job_row(rt, job_id)
    assert (row.state, row.exit_code) == (JobState.DONE.value, 2)
    assert "Syntax error" in out["err"] and out["out"] == ""


def test_an_environment_entry_the_shell_refuses_aborts_the_job_naming_it(rt: Runtime, pki: Pki,
                                                                        work_root: Path) -> None:
    job_id, _ = run(rt, pki, work_root, 'Executable = "/bin/true"; ShallowRetryCount = 0;'
                    ' Environment = {"A=1", "B=\\"x"};')
    row = job_row(rt, job_id)
    assert row.state == JobState.ABORTED.value
    assert "the JDL Environment entry 'B=\"x' could not be evaluated by /bin/sh" in (row.reason or ""), row.reason
    assert "Syntax error" in (row.reason or "")

"""wmproxy.cli.output: the declared output files a job must have produced."""

from __future__ import annotations

import pytest

from wmproxy.cli import output


class TestDeclaredOutputs:
    """``wmproxy output`` names the declared files missing under the names the service stores them
    with: every destination it accepts is the job's own output area."""

    class _Client:
        def __init__(self, jdl: str) -> None:
            self.jdl = jdl

        def get_jdl(self, job_id: str, kind: str) -> str:
            return self.jdl

    @pytest.mark.parametrize(("sandbox", "declared"), [
        ('OutputSandbox = {"x/a.out", "b.out"};', ["a.out", "b.out"]),
        ('OutputSandbox = {"a.out", "b.out"}; OutputSandboxDestURI = {"renamed.out"};', ["renamed.out", "b.out"]),
        ('OutputSandbox = {"a.out", "b.out"}; OutputSandboxBaseDestURI = "https://w/SandboxDir/Ab/j/output";',
         ["a.out", "b.out"]),
        ('OutputSandbox = {"a.out", "*.log"}; OutputSandboxDestURI = {"gsiftp://se/a.out"};', []),
    ])
    def test_destinations_name_the_declared_files(self, sandbox: str, declared: list[str]) -> None:
        client = self._Client(f'[ Executable = "x"; {sandbox} ]')
        assert output._declared_outputs(client, "https://lb:9000/j") == declared  # type: ignore[arg-type]

"""Client-side helpers for collections, DAGs and parametric jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from wmproxy.cli.common import CliError
from wmproxy.cli.compound import child_job_id, collection_jdl, is_compound, node_names, sanitise, upload_plan
from wmproxy.cli.render import time_left

PARENT = "https://wms.example.org:9000/AbCdEfGhIjKlMnOpQrStUv"
DEST = "https://wms:7443/SandboxDir/Ab/x/input"


class TestIsCompound:
    @pytest.mark.parametrize("jdl", [
        '[Type = "collection"; Nodes = {}]', '[Type = "DAG"]', '[JobType = "Parametric"]',
    ])
    def test_compound(self, jdl: str) -> None:
        assert is_compound(jdl)

    @pytest.mark.parametrize("jdl", ['[Executable = "x"]', '[Type = "job"; JobType = "normal"]', "not a jdl ["])
    def test_simple(self, jdl: str) -> None:
        assert not is_compound(jdl)


class TestUploadPlan:
    def test_maps_registered_names_to_local_files(self, tmp_path: Path) -> None:
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin" / "run.sh").write_text("x")
        (tmp_path / "in7.dat").write_text("7")
        jdl = ('[Type = "collection"; InputSandbox = {"bin/run.sh"};'
               ' Nodes = { [Executable = "a"; InputSandbox = {"in_PARAM_.dat", "gsiftp://se/r"}] }]')
        registered = f'[InputSandbox = {{"{DEST}/run.sh", "{DEST}/in7.dat", "gsiftp://se/r", "{DEST}/run.sh"}}]'
        assert upload_plan(registered, DEST + "/", jdl, tmp_path) == [tmp_path / "bin" / "run.sh", tmp_path / "in7.dat"]

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(CliError) as err:
            upload_plan(f'[InputSandbox = {{"{DEST}/gone.txt"}}]', DEST, '[Type = "dag"; InputSandbox = {"gone.txt"}]',
                        tmp_path)
        assert err.value.kind == "InputSandbox" and "file not found" in err.value.description

    @pytest.mark.parametrize("entry", ["%2Fetc%2Fpasswd", "..%2F..%2Fetc%2Fhostname", "other.txt", "%2E%2E"])
    def test_a_file_the_jdl_does_not_name_is_never_read(self, tmp_path: Path, entry: str) -> None:
        """A hostile service's registered JDL naming a local file (``/etc/passwd``, a path out of
        the JDL's directory, a file beside the JDL) gets nothing uploaded: the CLI PUT it before."""
        (tmp_path / "other.txt").write_text("private")
        (tmp_path / "in1.dat").write_text("1")
        jdl = '[Type = "collection"; Nodes = { [Executable = "a"; InputSandbox = {"in_PARAM_.dat"}] }]'
        with pytest.raises(CliError) as err:
            upload_plan(f'[InputSandbox = {{"{DEST}/in1.dat", "{DEST}/{entry}"}}]', DEST, jdl, tmp_path)
        assert err.value.kind == "InputSandbox" and "the JDL submitted does not" in err.value.description


class TestNodeNames:
    def test_collection_names_and_defaults(self) -> None:
        jdl = '[Type = "collection"; Nodes = { [Executable = "a"; NodeName = "first.one"], [Executable = "b"] }]'
        ids = [child_job_id(PARENT, 1), child_job_id(PARENT, 0)]
        assert node_names(PARENT, jdl, ids) == {ids[0]: "Node_1", ids[1]: "first_one"}

    def test_parametric_values(self) -> None:
        jdl = '[JobType = "parametric"; Executable = "x"; Parameters = 30; ParameterStart = 10; ParameterStep = 10]'
        ids = [child_job_id(PARENT, 0), child_job_id(PARENT, 1)]
        assert list(node_names(PARENT, jdl, ids).values()) == ["Node_10", "Node_20"]

    def test_a_job_registered_under_other_checks_keeps_its_names(self) -> None:
        """The names come from the node list alone: a DAG the service registered before its
        registration checks grew (a perusal flag as a string, two outputs of one name) still
        has its nodes' names, which name the folders its output goes to."""
        jdl = ('[Type = "dag"; PerusalFileEnable = "true"; nodes = [ '
               'alpha = [ description = [ Executable = "/bin/a"; OutputSandbox = {"x/out", "y/out"}; ] ]; '
               'beta = [ description = [ Executable = "/bin/b"; ] ]; ] ]')
        ids = [child_job_id(PARENT, 0), child_job_id(PARENT, 1)]
        assert node_names(PARENT, jdl, ids) == {ids[0]: "alpha", ids[1]: "beta"}

    def test_unparsable_original_falls_back_to_positions(self) -> None:
        ids = [child_job_id(PARENT, 0), "https://wms.example.org:9000/Other"]
        assert node_names(PARENT, "nonsense [", ids) == {ids[0]: "Node_0", ids[1]: "Other"}


class TestCollectionJdl:
    def test_inlines_every_jdl_file_in_order(self, tmp_path: Path) -> None:
        (tmp_path / "b.jdl").write_text('Executable = "/bin/b";')
        (tmp_path / "a.jdl").write_text('[ Executable = "/bin/a"; ]')
        (tmp_path / "readme").write_text("no")
        text = collection_jdl(tmp_path)
        assert text.index('"/bin/a"') < text.index('"/bin/b"')
        assert 'NodeName = "Node_a_jdl"' in text and 'Type = "collection"' in text
        assert is_compound(text)

    def test_bad_node(self, tmp_path: Path) -> None:
        (tmp_path / "bad.jdl").write_text("[ oops")
        with pytest.raises(CliError, match="not a valid JDL"):
            collection_jdl(tmp_path)


def test_sanitise() -> None:
    assert sanitise("a.b/c*d$e f") == "a_bIc-d_S_e_f"


@pytest.mark.parametrize(("seconds", "text"), [
    (93784, "1 days 02 hours 03 min 04 sec "), (600, "10 min "), (3600, "01 hours "), (-5, ""),
])
def test_time_left(seconds: int, text: str) -> None:
    assert time_left(seconds) == text

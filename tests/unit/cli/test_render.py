"""gLite output formats (peers.md §9.1) with the verb names of this CLI."""

from __future__ import annotations

import json

from wmproxy.cli import render
from wmproxy.client import JobIds, JobStatus

JOB = "https://lb.example.org:9000/AbCdEf123456"


class TestStripe:
    def test_is_74_wide_like_glite_submit(self) -> None:
        line = render.stripe("glite-wms-job-submit Success")
        assert line == "=" * 22 + " glite-wms-job-submit Success " + "=" * 22
        assert len(line) == 74

    def test_uses_the_verb_name(self) -> None:
        line = render.stripe("wmproxy submit Success")
        assert line.strip("=") == " wmproxy submit Success "
        assert len(line) == 74

    def test_cancel_stripe_is_88_wide(self) -> None:
        assert len(render.stripe("wmproxy cancel Success", 88)) == 88


class TestSubmitText:
    def test_has_the_glite_sentences_and_the_id_on_its_own_line(self) -> None:
        text = render.submit_text(JobIds(JOB))
        lines = text.splitlines()
        assert lines[1] == render.stripe("wmproxy submit Success")
        i = lines.index("The job has been successfully submitted to the WMProxy")
        assert lines[i + 1 : i + 5] == ["Your job identifier is:", "", JOB, ""]
        assert lines[-1] == "=" * 74
        assert "saved in the following file" not in text

    def test_mentions_the_jobid_file(self) -> None:
        text = render.submit_text(JobIds(JOB), "/abs/ids.txt")
        assert "The job identifier has been saved in the following file:\n/abs/ids.txt\n" in text

    def test_json_for_a_simple_job(self) -> None:
        data = json.loads(render.submit_json(JobIds(JOB), "https://wms:7443/x"))
        assert data == {"result": "success", "jobid": JOB, "endpoint": "https://wms:7443/x"}

    def test_json_for_a_compound_job_names_parent_and_children(self) -> None:
        job = JobIds(JOB, children=(JobIds(JOB + "1", name="nodeA"), JobIds(JOB + "2", name="nodeB")))
        data = json.loads(render.submit_json(job, "e"))
        assert data == {
            "result": "success",
            "parent": JOB,
            "endpoint": "e",
            "children": {"nodeA": JOB + "1", "nodeB": JOB + "2"},
        }


class TestStatusText:
    def test_prints_the_glite_done_text_with_the_exit_code_line(self) -> None:
        text = render.status_text([JobStatus(JOB, "Done (Exit Code 3)", exit_code=3)])
        lines = text.splitlines()
        assert lines[0] == ""
        assert lines[1] == render.stripe("wmproxy status Success")
        assert lines[2:4] == ["BOOKKEEPING INFORMATION:", ""]
        assert f"Status info for the Job : {JOB}" in lines
        assert "Current Status:     Done (Exit Code !=0)" in lines
        assert "Exit code:          3" in lines
        assert lines[-1] == "=" * 74

    def test_aborted_shows_state_and_reason_separately(self) -> None:
        text = render.status_text([JobStatus(JOB, "Aborted (input sandbox file x has not been uploaded)",
                                             reason="input sandbox file x has not been uploaded")])
        assert "Current Status:     Aborted" in text.splitlines()
        assert "Status Reason:      input sandbox file x has not been uploaded" in text.splitlines()

    def test_prints_exit_code_and_reason_when_known(self) -> None:
        text = render.status_text([JobStatus(JOB, "Done (Success)", exit_code=0, reason="Job terminated successfully")])
        assert "Exit code:          0\n" in text
        assert "Status Reason:      Job terminated successfully\n" in text

    def test_lists_nodes_under_the_parent(self) -> None:
        status = JobStatus(JOB, "Running", children=(JobStatus(JOB + "1", "Done (Success)"),))
        text = render.status_text([status])
        assert f"- Nodes information for: {JOB}" in text
        assert f"    Status info for the Job : {JOB}1" in text

    def test_json_has_one_entry_per_job_with_its_nodes(self) -> None:
        status = JobStatus(JOB, "Running", children=(JobStatus(JOB + "1", "Waiting"),))
        data = json.loads(render.status_json([status]))
        assert data["result"] == "success" and data["errors"] == []
        assert data["jobs"][0]["current_status"] == "Running"
        assert data["jobs"][0]["nodes"] == [{"jobid": JOB + "1", "current_status": "Waiting", "state": "Waiting",
                                              "exit_code": None, "status_reason": None}]


class TestOtherTexts:
    def test_delegate(self) -> None:
        text = render.delegate_text("https://wms:7443/x", "mydeleg")
        assert (
            "Your proxy has been successfully delegated to the WMProxy(s):\n"
            "https://wms:7443/x\nwith the delegation identifier: mydeleg\n"
        ) in text

    def test_cancel(self) -> None:
        text = render.cancel_text([JOB, JOB + "2"])
        assert (
            "The cancellation request has been successfully submitted for the following job(s):\n\n"
            f"- {JOB}\n- {JOB}2\n"
        ) in text
        assert render.stripe("wmproxy cancel Success", 88) in text

    def test_output_retrieved_and_empty(self) -> None:
        text = render.output_text(JOB, "/tmp/out", True)
        assert "\t\t\tJOB GET OUTPUT OUTCOME\n\n" in text
        assert (
            f"Output sandbox files for the job:\n{JOB}\n"
            "have been successfully retrieved and stored in the directory:\n/tmp/out\n"
        ) in text
        assert "=" * 80 in text
        assert f"No output files to be retrieved for the job:\n{JOB}\n" in render.output_text(JOB, "/d", False)


class TestPrintable:
    def test_control_characters_but_tab_and_newline_are_escaped(self) -> None:
        from wmproxy.cli.common import printable

        controls = "".join(chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)])
        assert printable(controls) == "".join(
            c if c in "\t\n" else f"\\x{ord(c):02x}" for c in controls)
        assert printable("\x9b2J") == "\\x9b2J"
        kept = "plain é \u00a0 \u202e ✓ \\x41"  # not Cc: left as they are
        assert printable(kept) == kept

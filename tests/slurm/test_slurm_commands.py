"""The Slurm driver's parsers and the backend's batch script and references, on recorded
command output (no cluster needed), and the driver's typed errors on a real one."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.peers.slurm import SlurmCluster
from wmproxy.execution.backends import BackendError, JobLaunch
from wmproxy.execution.backends.slurm import (
    WRAPPER_BOOT,
    SlurmExecutionBackend,
    array_script,
    batch_script,
    job_name,
    parse_ref,
)
from wmproxy.execution.jobwrapper import JobSpec
from wmproxy.execution.slurm import (
    UNREACHABLE_RESPONSE_TIME,
    JobEnd,
    QueuedJob,
    SlurmCommands,
    SlurmError,
    cannot_run,
    parse_queue,
    parse_sacct,
    parse_scontrol,
    parse_time_limit,
    partition_attributes,
    time_limit,
)

JOB = "https://lb.example.org:9000/AbC-x_1yz"
WORK = Path("/shared/work/https_3a_2f_2flb.example.org_3a9000_2fAbC-x_5f1yz")


class TestParsers:
    def test_scontrol_values_may_hold_spaces(self) -> None:
        shown = parse_scontrol("NodeName=vm Arch=x86_64 State=DOWN Reason=test [root@2026-12-02T10:00:00] Weight=1")
        assert shown["Reason"] == "test [root@2026-12-02T10:00:00]" and shown["Weight"] == "1"
        assert parse_scontrol("AllocNode:Sid=localhost:7616 CPUs/Task=1")["CPUs/Task"] == "1"

    def test_squeue_lines_with_times_in_unix_seconds(self) -> None:
        out = ("12|PENDING|1796205663|ReqNodeNotAvail, UnavailableNodes:vm\n"
               "13|COMPLETED|N/A|None\n14_2|RUNNING|1796205663|None\n")
        assert parse_queue(out).jobs == {
            "12": QueuedJob("12", "PENDING", 1796205663.0, "ReqNodeNotAvail, UnavailableNodes:vm"),
            "13": QueuedJob("13", "COMPLETED", None, "None"),
            "14_2": QueuedJob("14_2", "RUNNING", 1796205663.0, "None"),
        }
        assert parse_queue("12|PENDING\n").skipped == ("12|PENDING",)
        # an unexpanded array (squeue without -r)
        assert parse_queue("14_[0-3]|PENDING|N/A|None\n").jobs == {}

    def test_pending_reasons_that_mean_the_job_cannot_run_there(self) -> None:
        for reason in ("ReqNodeNotAvail, UnavailableNodes:vm", "PartitionDown", "PartitionInactive", "NodeDown",
                       "BadConstraints", "JobHeldAdmin", "PartitionTimeLimit", "DependencyNeverSatisfied",
                       "Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions"):
            assert cannot_run(reason), reason
        for reason in ("Resources", "Priority", "Dependency", "BeginTime", "None", "QOSMaxJobsPerUserLimit",
                       "AssocGrpCpuLimit", "Licenses", ""):
            assert not cannot_run(reason), reason

    def test_an_answer_lost_on_the_way_back_may_have_been_done(self) -> None:
        lost = "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"
        assert SlurmError("sbatch failed", command="sbatch", returncode=1, stderr=lost).maybe_done
        assert SlurmError("sbatch failed", command="sbatch", returncode=1,
                          stderr="Zero Bytes were transmitted or received").maybe_done
        assert SlurmError("sbatch did not answer", command="sbatch", timed_out=True).maybe_done
        refused = "sbatch: error: Batch job submission failed: Invalid partition name specified"
        assert not SlurmError("sbatch failed", command="sbatch", returncode=1, stderr=refused).maybe_done
        unreachable = "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)"
        assert not SlurmError("sbatch failed", command="sbatch", returncode=1, stderr=unreachable).maybe_done

    def test_sacct_gives_the_first_word_of_the_state(self) -> None:
        assert parse_sacct("7|CANCELLED by 0|0:15\n") == JobEnd("CANCELLED", exit_code="0:15")
        assert parse_sacct("") is None
        assert JobEnd("NODE_FAIL", "NodeDown", "0:9").describe() == "NODE_FAIL (reason NodeDown, exit code 0:9)"
        assert JobEnd("FAILED", "None").describe() == "FAILED"

    @pytest.mark.parametrize(("text", "minutes"), [
        ("UNLIMITED", None), ("INFINITE", None), ("90", 90), ("1:30", 2), ("02:00:00", 120), ("1-0", 1440),
        ("1-01:30", 1530), ("1-01:30:01", 1531), ("0:59", 1),
    ])
    def test_time_limits_are_minutes_rounded_up(self, text: str, minutes: int | None) -> None:
        assert parse_time_limit(text) == minutes

    @pytest.mark.parametrize("text", ["", "soon", "1:2:3:4", "1-2:3:4:5"])
    def test_a_bad_time_limit_is_refused(self, text: str) -> None:
        with pytest.raises(ValueError, match="time limit"):
            parse_time_limit(text)

    def test_wall_time_goes_to_sbatch_in_whole_minutes(self) -> None:
        assert [time_limit(s) for s in (1, 60, 61, 3600)] == ["1", "1", "2", "60"]

    def test_partition_attributes_count_nodes_once_and_skip_unusable_ones(self) -> None:
        sinfo = ("wn1|debug*|1/3/0/4|mixed\nwn1|long|1/3/0/4|mixed\nwn2|debug*|0/0/8/8|drained\n"
                 "wn3|long|0/4/0/4|idle*\n")
        squeue = "debug|RUNNING\ndebug|PENDING\ndebug,long|PENDING\nlong|COMPLETING\n"
        scontrol = ("PartitionName=debug State=UP MaxTime=2-00:00:00 Nodes=wn[1-2]\n"
                    "PartitionName=long State=DRAIN MaxTime=UNLIMITED Nodes=wn1,wn3\n")
        states = partition_attributes(sinfo, squeue, scontrol, ["debug", "long", "gone"], mean_job_seconds=600)
        assert states["debug"] == {
            "GlueCEInfoTotalCPUs": 12, "GlueCEStateFreeCPUs": 3, "GlueCEStateFreeJobSlots": 3,
            "GlueCEStateRunningJobs": 1, "GlueCEStateWaitingJobs": 2, "GlueCEStateTotalJobs": 3,
            "GlueCEStateStatus": "Production", "GlueCEStateEstimatedResponseTime": 0,
            "GlueCEPolicyMaxWallClockTime": 2880,
        }
        long = states["long"]
        assert (long["GlueCEInfoTotalCPUs"], long["GlueCEStateFreeCPUs"]) == (8, 3)
        assert long["GlueCEStateStatus"] == "Draining"
        assert (long["GlueCEStateRunningJobs"], long["GlueCEStateWaitingJobs"]) == (1, 1)
        assert "GlueCEPolicyMaxWallClockTime" not in long and "gone" not in states

    def test_a_full_partition_estimates_its_queue_over_its_usable_cpus(self) -> None:
        sinfo = "wn1|p|4/0/0/4|allocated\nwn2|p|0/0/4/4|down*\n"
        squeue = "p|RUNNING\np|PENDING\np|PENDING\np|PENDING\n"
        state = partition_attributes(sinfo, squeue, "PartitionName=p State=UP MaxTime=60\n", ["p"], 100)["p"]
        assert state["GlueCEStateEstimatedResponseTime"] == (3 + 1) * 100 // 4
        assert state["GlueCEStateStatus"] == "Production"
        down = partition_attributes("wn2|p|0/0/4/4|down*\n", "", "PartitionName=p State=UP\n", ["p"])["p"]
        assert (down["GlueCEStateStatus"], down["GlueCEStateEstimatedResponseTime"]) == (
            "Queueing", UNREACHABLE_RESPONSE_TIME)

    def test_unexpected_sinfo_output_is_refused(self) -> None:
        with pytest.raises(ValueError, match="sinfo line"):
            partition_attributes("wn1 1/3/0/4\n", "", "PartitionName=p State=UP\n", ["p"])


class TestBatchScript:
    def launch(self, **fields: object) -> JobLaunch:
        values: dict[str, object] = {"job_id": JOB, "account": None, "input_dir": Path("/nonexistent"),
                                     "spec": JobSpec(job_id=JOB, executable="/bin/true"), "queue": "debug"}
        values.update(fields)
        return JobLaunch(**values)  # type: ignore[arg-type]

    def test_every_option_is_an_sbatch_line_and_the_wrapper_is_execed(self) -> None:
        wrapper = WORK.with_name(".wmproxy-wrapper-0123")
        script = batch_script(self.launch(wall_time=3601, memory_mb=512), WORK, wrapper, "/usr/bin/python3")
        lines = script.splitlines()
        assert lines[0] == "#!/bin/sh"
        assert [line for line in lines if line.startswith("#SBATCH")] == [
            "#SBATCH --partition=debug", "#SBATCH --job-name=wmp_AbC-x_1yz", f"#SBATCH --chdir={WORK}",
            f"#SBATCH --output={WORK}/.wmproxy/wrapper.log", f"#SBATCH --error={WORK}/.wmproxy/wrapper.log",
            "#SBATCH --no-requeue", "#SBATCH --export=ALL", "#SBATCH --nodes=1", "#SBATCH --ntasks=1",
            f"#SBATCH --comment={JOB}", "#SBATCH --time=61", "#SBATCH --mem=512M",
        ]
        assert lines[-1] == f"exec /usr/bin/python3 -I -S -c {shlex.quote(WRAPPER_BOOT)} {wrapper}/jobwrapper.py {WORK}"

    def test_a_job_array_picks_the_work_dir_of_its_task(self) -> None:
        other = WORK.with_name("second")
        wrapper = WORK.with_name(".wmproxy-wrapper-0123")
        script = array_script([(WORK, JOB), (other, "https://wms.example.org:9000/second")], name="wmp_AbC-x_1yz",
                              work_root=WORK.parent, wrapper_dir=wrapper, python="/usr/bin/python3", queue="debug",
                              wall_time=60)
        lines = script.splitlines()
        assert [line for line in lines if line.startswith("#SBATCH")] == [
            "#SBATCH --partition=debug", "#SBATCH --job-name=wmp_AbC-x_1yz", "#SBATCH --array=0-1",
            f"#SBATCH --chdir={WORK.parent}", "#SBATCH --output=/dev/null", "#SBATCH --error=/dev/null",
            "#SBATCH --no-requeue", "#SBATCH --export=ALL", "#SBATCH --nodes=1", "#SBATCH --ntasks=1",
            "#SBATCH --time=1", f"#SBATCH --comment={JOB},https://wms.example.org:9000/second",
        ]
        assert f"0) d={WORK} ;;" in lines and f"1) d={other} ;;" in lines
        boot = shlex.quote(WRAPPER_BOOT)
        assert lines[-2:] == ['exec >"$d"/.wmproxy/wrapper.log 2>&1',
                              f'exec /usr/bin/python3 -I -S -c {boot} {wrapper}/jobwrapper.py "$d"']
        with pytest.raises(BackendError, match="cannot go into"):
            array_script([(WORK.with_name("a b"), JOB)], name="n", work_root=WORK.parent, wrapper_dir=wrapper,
                         python="/usr/bin/python3", queue="debug")

    def test_no_limits_no_options(self) -> None:
        script = batch_script(self.launch(), WORK, WORK / "w.py", "/usr/bin/python3")
        assert "--time" not in script and "--mem" not in script

    @pytest.mark.parametrize(("fields", "message"), [
        ({"queue": "de bug"}, "partition"), ({"queue": None}, "partition"), ({"wall_time": 0}, "wall-clock"),
        ({"memory_mb": -1}, "memory"),
    ])
    def test_bad_options_are_refused(self, fields: dict[str, object], message: str) -> None:
        with pytest.raises(BackendError, match=message):
            batch_script(self.launch(**fields), WORK, WORK / "w.py", "/usr/bin/python3")

    def test_a_work_root_slurm_would_misread_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="whitespace"):
            SlurmExecutionBackend(tmp_path / "a %j dir")
        with pytest.raises(ValueError, match="cluster"):
            SlurmExecutionBackend(tmp_path, cluster="a:b")

    def test_references_and_job_names(self) -> None:
        assert parse_ref(f"slurm:c1:42:{WORK.name}") == ("c1", "42", WORK.name)
        assert parse_ref(f"slurm:c1:42_7:{WORK.name}") == ("c1", "42_7", WORK.name)
        assert parse_ref(f"slurm::-:{WORK.name}") == ("", None, WORK.name)
        assert parse_ref("local:h:42:x") is None and parse_ref("slurm:c:4x:x") is None
        assert parse_ref("slurm:c:4_:x") is None
        assert job_name(WORK.name) == "wmp_AbC-x_1yz"
        assert job_name(WORK.name, 0) == "wmp_AbC-x_1yz" and job_name(WORK.name, 3) == "wmp_AbC-x_1yz.3"
        assert len(job_name("x" * 100, 12)) == 64 and job_name("x" * 100, 12).endswith("x.12")


class TestCommands:
    def test_a_missing_program_is_a_typed_error(self, tmp_path: Path) -> None:
        with pytest.raises(SlurmError, match="not an executable Slurm command") as raised:
            SlurmCommands(bin_dir=tmp_path).run("squeue")
        assert raised.value.command == "squeue"

    def test_a_failing_command_carries_slurms_message(self, slurm_cluster: SlurmCluster) -> None:
        with pytest.raises(SlurmError, match="Partition nosuch not found") as raised:
            SlurmCommands(slurm_cluster.conf).run("scontrol", "show", "partition", "nosuch")
        assert raised.value.returncode == 1 and "nosuch" in raised.value.stderr

    def test_a_job_slurm_no_longer_knows_has_no_end(self, slurm_cluster: SlurmCluster) -> None:
        commands = SlurmCommands(slurm_cluster.conf)
        assert commands.job_end("999999") is None  # no accounting on the throwaway cluster
        assert commands.queue(["999999"]).jobs == {}
        assert commands.queue(["999998", "999999_3"]).jobs == {}

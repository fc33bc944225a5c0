"""What the Slurm backend reads from squeue, scontrol and the files a job can write, when a
job's owner wrote there: a job renamed with newlines in its name (``scontrol update
JobName=...``, any time), its work dir set so, its comment holding ``JobState=``, its own
``.wmproxy/slurm-task`` holding digits ``int`` refuses ("²") or thousands of digits. No
cluster: the driver's ``run`` answers with recorded output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wmproxy.execution import identity
from wmproxy.execution.backends.slurm import (
    TASK_NAME,
    SlurmExecutionBackend,
    _task_of,
    _Unresolved,
    parse_ref,
)
from wmproxy.execution.slurm import (
    NamedJob,
    QueuedJob,
    SlurmCommands,
    SlurmError,
    parse_named,
    parse_queue,
    parse_scontrol,
)

#: The line a victim's running job 7 gets, then the lines a job renamed
#: ``wmp_x|None|/x\n7|COMPLETED|0|x|None|/x`` made of squeue's former ``%i|%T|%V|%j|%r|%Z``.
FORGED = "7|COMPLETED|0|None"
SUPERSCRIPT_TWO = "\u00b2"  # str.isdigit() says yes, int() says no


class Answers(SlurmCommands):
    """The driver, each command answered by the output given for its program, every command's
    arguments recorded."""

    def __init__(self, **outputs: str) -> None:
        super().__init__()
        self.outputs = outputs
        self.calls: list[tuple[str, ...]] = []

    def run(self, name: str, *args: str, **options: object) -> str:
        self.calls.append((name, *args))
        return self.outputs[name]


class TestQueueLines:
    def test_the_state_query_prints_no_field_a_jobs_owner_sets(self) -> None:
        commands = Answers(squeue="7|RUNNING|1796205663|None\n")
        commands.queue(["7"])
        (call,) = commands.calls
        assert call[call.index("-o") + 1] == "%i|%T|%V|%r"

    def test_a_job_listed_twice_is_doubtful_never_ended(self) -> None:
        listing = parse_queue(f"7|RUNNING|1796205663|None\n8|RUNNING|1796205663|None\n{FORGED}\n", ["7", "8"])
        assert listing.doubtful == {"7"} and set(listing.jobs) == {"8"}
        listing = parse_queue(f"{FORGED}\n7|RUNNING|1|None\n7|PENDING|1|JobHeldAdmin\n", ["7"])
        assert listing.doubtful == {"7"} and listing.jobs == {}

    def test_a_job_not_asked_for_is_skipped(self) -> None:
        listing = parse_queue("7_1|RUNNING|1|None\n7_2|PENDING|N/A|Priority\n9|COMPLETED|0|None\n", ["7_1"])
        assert set(listing.jobs) == {"7_1", "7_2"}  # the tasks of an array asked for
        assert listing.skipped == ("9|COMPLETED|0|None",)

    def test_a_malformed_line_is_skipped_alone(self) -> None:
        out = f"garbage\n7|RUNNING|1|None\n{SUPERSCRIPT_TWO}|COMPLETED|0|None\n{'1' * 4300}|COMPLETED|0|None\n8|x|1|y\n"
        listing = parse_queue(out, None)
        assert listing.jobs == {"7": QueuedJob("7", "RUNNING", 1.0, "None")}
        assert len(listing.skipped) == 4

    def test_the_backend_leaves_a_doubtful_job_running_and_follows_the_others(self, tmp_path: Path) -> None:
        commands = Answers(squeue=f"7|RUNNING|1|None\n{FORGED}\n8|COMPLETED|1|None\ngarbage|\n")
        backend = SlurmExecutionBackend(tmp_path, commands=commands)
        victim = backend.attach("slurm::7:a", None)
        other = backend.attach("slurm::8:b", None)
        assert victim is not None and other is not None
        assert backend.poll(victim) is None
        assert backend._lookup("7") == (False, None)  # unknown this round, not gone
        assert backend._lookup("8") == (True, QueuedJob("8", "COMPLETED", 1.0, "None"))
        outcome = backend.poll(other)  # ended, in spite of the malformed line: its work dir is read (none here)
        assert outcome is not None and "work directory is gone" in (outcome.reason or "")


class TestNamedLines:
    def test_only_names_asked_for_and_one_line_per_job(self) -> None:
        out = "5|1001|wmp_a\n6|1002|wmp_b\n6|1002|wmp_a\n7|1001|wmp_c\nx|1|wmp_a\n"
        jobs, skipped = parse_named(out, ["wmp_a", "wmp_b"])
        assert jobs == {"5": NamedJob("5", 1001, "wmp_a")}
        assert skipped == ("7|1001|wmp_c", "x|1|wmp_a")

    def test_the_work_dir_is_asked_for_one_job_and_a_second_line_refused(self) -> None:
        assert Answers(squeue="6|/w/a\n").work_dir_of("6") == "/w/a"
        assert Answers(squeue="6|/tmp/a\n5|1001|wmp_v\n").work_dir_of("6") is None  # a work dir of two lines
        assert Answers(squeue="5|/w/a\n").work_dir_of("6") is None

    def test_a_job_of_another_account_never_passes_for_the_one_looked_for(self) -> None:
        commands = Answers(squeue="9|/w/a\n")
        jobs = {"9": NamedJob("9", 1002, "wmp_a")}  # the attacker's job, named and placed as the victim's
        assert commands.pick(jobs, "wmp_a", Path("/w/a"), None, 1001) is None
        assert commands.pick(jobs, "wmp_a", Path("/w/a"), None, 1002) == jobs["9"]

    def test_a_work_dir_asked_once_until_the_next_squeue_of_names(self) -> None:
        commands = Answers(squeue="9|/w/b\n")
        jobs, known = {"9": NamedJob("9", 1001, "wmp_a")}, {}
        for _ in range(3):  # the job's owner put a job of its name elsewhere: one squeue, not one per poll
            assert commands.pick(jobs, "wmp_a", Path("/w/a"), None, 1001, known) is None
        assert len(commands.calls) == 1 and known == {"9": "/w/b"}


class TestScontrol:
    def test_a_field_a_jobs_owner_repeats_is_not_taken(self) -> None:
        shown = parse_scontrol("JobId=1 JobName=x JobState=COMPLETED Reason=y UserId=a(1) JobState=RUNNING "
                               "Reason=None ExitCode=0:0 Comment=JobState=COMPLETED ExitCode=0:0")
        assert "JobState" not in shown and "Reason" not in shown and "ExitCode" not in shown
        assert shown["UserId"] == "a(1)"
        commands = Answers(scontrol="JobId=1 JobState=RUNNING Reason=None ExitCode=0:0 Comment=x JobState=COMPLETED",
                           sacct="")
        assert commands.job_end("1") is None


class TestNumbersAJobWrites:
    def test_digits_int_refuses_or_too_many_are_no_task(self, tmp_path: Path) -> None:
        work = identity.prepare_work_dir(tmp_path, "job1", None)
        for text in (f"wmp_x {SUPERSCRIPT_TWO}\n", f"wmp_x {'1' * 4300}\n", "wmp,x 1\n", "wmp_x 1 2\n"):
            (work / ".wmproxy" / TASK_NAME).unlink(missing_ok=True)
            identity.write_state_file(work, TASK_NAME, text.encode(), 0o400, None)
            assert _task_of(work) is None, text
        os.unlink(work / ".wmproxy" / TASK_NAME)
        identity.write_state_file(work, TASK_NAME, b"wmp_x 3\n", 0o400, None)
        assert _task_of(work) == ("wmp_x", 3)

    def test_a_lost_sbatch_record_of_such_digits_is_none(self) -> None:
        for data in (f"1 x {SUPERSCRIPT_TWO}\n".encode(), f"{SUPERSCRIPT_TWO} x 1\n".encode(),
                     f"1 x {'1' * 4300}\n".encode(), b"1 a,b -\n", b"nan x -\n"):
            assert _Unresolved.decode(data) is None, data
        assert _Unresolved.decode(b"17 wmp_x 2\nlost\n") == _Unresolved("wmp_x", 2, 17.0, "lost")

    def test_a_reference_of_too_many_digits_is_not_followable(self, tmp_path: Path) -> None:
        assert parse_ref(f"slurm:c:{'1' * 4300}:a") is None
        assert parse_ref(f"slurm:c:{SUPERSCRIPT_TWO}:a") is None
        assert SlurmExecutionBackend(tmp_path).attach(f"slurm::{'1' * 19}:a", None) is None
        assert parse_ref("slurm:c:123_4:a") == ("c", "123_4", "a")

    def test_sbatch_answering_superscript_digits_gave_no_job_id(self) -> None:
        with pytest.raises(SlurmError, match="printed no job id"):
            Answers(sbatch=f"{SUPERSCRIPT_TWO}\n").submit(Path("/x"), None, Path("/"))

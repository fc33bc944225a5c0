"""Fixtures of the renewal tests: the execution tests' throwaway account, work root and input
directory (for the pushes into work dirs of jobs run by the local backend), and the renewal
cycle's runtime on SQLite (``rt``)."""

from tests.unit.execution.wrapper_support import input_dir, job_account, work_root
from tests.unit.renewal.cycle_support import rt

__all__ = ["input_dir", "job_account", "rt", "work_root"]

"""Fixtures of the renewal tests: the execution tests' throwaway account, work root and input
directory (for the pushes into work dirs of jobs run by the local backend)."""

from tests.unit.execution.wrapper_support import input_dir, job_account, work_root

__all__ = ["input_dir", "job_account", "work_root"]

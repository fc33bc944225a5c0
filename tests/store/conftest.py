"""Fixtures of the store tests that run jobs (adoption): the execution tests' throwaway account and work root."""

from tests.unit.execution.wrapper_support import job_account, work_root

__all__ = ["job_account", "work_root"]

"""Fixtures of the execution tests: a throwaway local account and a work root every account can traverse
(defined in :mod:`tests.unit.execution.wrapper_support`, shared with the store's adoption tests)."""

from tests.unit.execution.wrapper_support import account, input_dir, job_account, work_root

__all__ = ["account", "input_dir", "job_account", "work_root"]

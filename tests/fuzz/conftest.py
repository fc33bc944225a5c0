"""Fixtures of the property-based hostile-input tests: one in-process service per module with
alice's delegation ``fuzz`` and one registered job whose sandbox the fuzzers hit. The input
sandbox takes at most :data:`FUZZ_INPUT_FILES` files, so random uploads reach that limit too."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.fuzz.support import FUZZ_INPUT_FILES, FuzzService
from tests.support import (
    ECHO_JDL,
    SoapApp,
    build_runtime,
    caller_from_environ,
    close_runtime,
    delegate_in_process,
    principal_of,
)
from wmproxy.config import LimitsSettings
from wmproxy.services.submission import register_job
from wmproxy.soap.app import WMProxyApplication


@pytest.fixture(scope="module")
def service(pki: Pki, template_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzService]:
    rt = build_runtime(tmp_path_factory.mktemp("fuzz"), pki, template_db)
    rt.settings = dataclasses.replace(rt.settings, limits=LimitsSettings(max_input_sandbox_files=FUZZ_INPUT_FILES))
    alice = principal_of(pki, "alice")
    delegate_in_process(rt, alice, pki.users["alice"].proxy, "fuzz")
    job = register_job(rt, alice, ECHO_JDL, "fuzz")
    yield FuzzService(SoapApp(WMProxyApplication(rt, authenticate=caller_from_environ), rt), "fuzz", job.job_id,
                      job.path)
    close_runtime(rt)

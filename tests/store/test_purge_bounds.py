"""``[purge]`` ages and batch, and every other duration setting, are bounded: a value that made
every purge pass fail (``now - age`` past the year 1, a batch SQLite cannot take) is refused at
load, naming the key and the bound; the largest accepted values purge."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.admin.support import initialised_runtime, run, write_ini
from tests.conftest import Pki
from wmproxy.config import (
    DURATIONS,
    MAX_DURATION,
    MAX_ROW_COUNT,
    ConfigError,
    PurgeSettings,
    areas,
    keys,
    load_settings,
)
from wmproxy.services.purge import purge
from wmproxy.services.runtime import Runtime

AGES = ("final_age", "forced_age", "registered_age", "request_age", "delegation_grace", "tombstone_age")


@pytest.fixture
def rt(tmp_path: Path, pki: Pki) -> Iterator[Runtime]:
    yield from initialised_runtime("sqlite", tmp_path, pki)


@pytest.mark.parametrize("name", [*AGES, "interval", "pass_time"])
def test_an_age_over_a_hundred_years_is_refused_naming_key_and_bound(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"\[purge\] {name} = 1e\+11: at most {MAX_DURATION} seconds"):
        load_settings(None, environ={f"WMPROXY_PURGE_{name.upper()}": "100000000000"})


@pytest.mark.parametrize("value", ["99999999999999999999", str(MAX_ROW_COUNT + 1)])
def test_a_batch_too_large_for_the_database_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="WMPROXY_PURGE_BATCH") as caught:
        load_settings(None, environ={"WMPROXY_PURGE_BATCH": value})
    assert "at most" in str(caught.value)


def test_every_duration_setting_is_bounded() -> None:
    sections = areas()
    for section, names in DURATIONS.items():
        assert set(names) <= set(keys(sections[section])), section
        for name in names:
            with pytest.raises(ConfigError, match=rf"\[{section}\] {name} = .*at most {MAX_DURATION}"):
                load_settings(None, environ={f"WMPROXY_{section.upper()}_{name.upper()}": str(MAX_DURATION * 10)})


def test_the_largest_accepted_values_purge(rt: Runtime) -> None:
    policy = PurgeSettings(batch=MAX_ROW_COUNT, pass_time=MAX_DURATION, **dict.fromkeys(AGES, MAX_DURATION))
    rt.settings = dataclasses.replace(rt.settings, purge=policy)
    report = purge(rt, dry_run=True)
    assert report.jobs == []
    purge(rt)


def test_admin_purge_with_an_age_out_of_range_says_so_without_a_traceback(rt: Runtime, tmp_path: Path) -> None:
    config = write_ini(rt.settings, tmp_path / "wmproxy.conf")
    config.write_text(config.read_text() + "[purge]\nfinal_age = 100000000000\n")
    done = run("wmproxy-admin", "purge", "--dry-run", config=config)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert f"[purge] final_age = 1e+11: at most {MAX_DURATION} seconds" in done.stderr, done.stderr

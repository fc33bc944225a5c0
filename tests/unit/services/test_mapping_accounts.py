"""Which accounts the current mapping policy can give at all (:func:`unmappable_account`): the
execution worker runs a job only as one of them, whatever ``jobs.local_account`` says."""

from __future__ import annotations

import os
from pathlib import Path

from wmproxy.config import MappingSettings
from wmproxy.services.mapping import unmappable_account


def _settings(tmp_path: Path, gridmap: str, voms: str = "") -> MappingSettings:
    (tmp_path / "grid-mapfile").write_text(gridmap)
    (tmp_path / "voms-mapfile").write_text(voms)
    return MappingSettings(mode="gridmap", gridmap_file=str(tmp_path / "grid-mapfile"),
                           voms_rules_file=str(tmp_path / "voms-mapfile"))


class TestUnmappableAccount:
    def test_static_accounts_and_pool_members_of_either_file_are_mappable(self, tmp_path: Path) -> None:
        settings = _settings(tmp_path, '"/C=XX/CN=Alice" alice\n"/C=XX/*" .guest\n',
                             '"/atlas/Role=production" .atlprd\n"/atlas/*" atlasuser\n')
        for name in ("alice", "guest1", "guest0042", "atlprd001", "atlasuser"):
            assert unmappable_account(settings, name) is None, name

    def test_any_other_account_is_not(self, tmp_path: Path) -> None:
        settings = _settings(tmp_path, '"/C=XX/CN=Alice" alice\n"/C=XX/*" .guest\n')
        for name in ("root", "wmproxy", "guest", "guestx1", "alice2", "nobody"):
            assert unmappable_account(settings, name) == ("no account or pool of the grid-mapfile or the VOMS rules "
                                                          "is this account"), name

    def test_an_edit_of_the_policy_applies_at_once(self, tmp_path: Path) -> None:
        settings = _settings(tmp_path, '"/C=XX/CN=Alice" alice\n')
        assert unmappable_account(settings, "bob") is not None
        gridmap = tmp_path / "grid-mapfile"
        gridmap.write_text('"/C=XX/CN=Alice" alice\n"/C=XX/CN=Bob" bob\n')
        assert unmappable_account(settings, "bob") is None
        gridmap.write_text('"/C=XX/CN=Bob" bob\n')  # same size, another content
        os.utime(gridmap, ns=(1, 1))
        assert unmappable_account(settings, "alice") is not None

    def test_without_mapping_or_policy_no_account_is_mappable(self, tmp_path: Path) -> None:
        assert unmappable_account(MappingSettings(mode="none"), "alice") == \
            "the mapping is off ([mapping] mode = none)"
        missing = MappingSettings(mode="gridmap", gridmap_file=str(tmp_path / "missing"))
        why = unmappable_account(missing, "alice")
        assert why is not None and "cannot read the grid-mapfile" in why

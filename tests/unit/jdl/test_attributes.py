"""wmproxy.jdl.attributes: AdView reads an ad as the ad itself answers."""

from __future__ import annotations

import classad2
import pytest

from wmproxy.errors import InvalidJdlAttributeError, JdlError
from wmproxy.jdl import parse_jdl
from wmproxy.jdl.attributes import AdView, integer, job_kind, job_type, string_list, string_value, text
from wmproxy.jdl.description import describe_simple


def _odd_names() -> classad2.ClassAd:
    ad = classad2.ClassAd()
    ad["\u212aey"] = 1  # KELVIN SIGN: str.lower() makes it "key", classad2 does not
    ad["\u00c9xe"] = 2  # É: classad2 compares it as written, the ASCII letters without case
    ad["Abc"] = 3
    ad["Req"] = classad2.ExprTree("other.X == 1")
    return ad


class TestAdView:
    @pytest.mark.parametrize("name", ["key", "\u212aey", "\u212aEY", "\u00e9xe", "\u00c9XE", "\u00c9xe", "aBC", "abd",
                                      "req", "REQ"])
    def test_a_name_is_there_exactly_when_the_ad_has_it(self, name: str) -> None:
        ad = _odd_names()
        view = AdView(ad)

        assert (name in view) is (name in ad)
        assert view.get(name, "absent") == ad.get(name, "absent")

    def test_values_are_the_ads_and_an_absent_name_is_its_key_error(self) -> None:
        ad = parse_jdl('[ Executable = "a"; Arguments = { "x", "y" }; Requirements = other.X == "P"; N = 3 ]')
        view = AdView(ad)

        assert view["EXECUTABLE"] == "a"
        assert view["arguments"] == ["x", "y"]
        assert str(view["requirements"]) == str(ad.lookup("Requirements"))
        assert list(view) == list(ad)
        assert len(view) == len(ad)
        with pytest.raises(KeyError):
            view["StdInput"]
        assert "StdInput" not in view

    @pytest.mark.parametrize("jdl", [
        '[ Executable = "a"; Arguments = 1 ]',
        '[ Executable = "a"; InputSandbox = { "a", 1 } ]',
        '[ Executable = "a"; RetryCount = "3" ]',
        '[ Executable = "a"; Type = "Jobs" ]',
        '[ Executable = "a"; JobType = { "normal", "mpich" } ]',
        '[ Executable = "a"; JobType = { } ]',
        '[ Executable = "a"; JobType = 3 ]',
    ])
    def test_the_readers_fault_alike_on_a_view(self, jdl: str) -> None:
        ad = parse_jdl(jdl)
        faults = []
        for source in (ad, AdView(ad)):
            try:
                string_value(source, "Arguments")
                string_list(source, "InputSandbox")
                integer(source, "RetryCount", 0)
                job_kind(source)
                job_type(source)
            except (JdlError, InvalidJdlAttributeError) as fault:
                faults.append((type(fault), str(fault)))
        assert len(faults) == 2
        assert faults[0] == faults[1]

    def test_text_reads_the_ads_spelling(self) -> None:
        ad = parse_jdl('[ executable = "a"; cpuNumber = 1 + 1 ]')

        assert text(AdView(ad), "CpuNumber") == text(ad, "CpuNumber") == "1 + 1"

    def test_describe_simple_of_a_view_is_that_of_its_ad(self) -> None:
        ad = parse_jdl('[ Executable = "a.sh"; StdOutput = "o"; OutputSandbox = "o"; InputSandbox = {"a.sh"}; '
                       'Environment = "A=1"; VirtualOrganisation = "atlas"; RetryCount = 2 ]')

        assert describe_simple(AdView(ad)) == describe_simple(ad)

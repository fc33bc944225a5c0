"""Spyne 2.14.0 on Python 3.12/3.13 through wmproxy.soap._spyne_compat.

Each import check runs in a fresh interpreter: Spyne and six are imported once per process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wmproxy.soap._spyne_compat import parse_header

#: The one warning pyproject.toml lets through: Spyne imports cgi on Python 3.11/3.12.
CGI_DEPRECATION = "ignore:'cgi' is deprecated:DeprecationWarning"


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter of this virtualenv; warnings are errors, as in the suite."""
    return subprocess.run([sys.executable, "-W", "error", "-W", CGI_DEPRECATION, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120, check=False)


class TestParseHeader:
    @pytest.mark.parametrize(("line", "expected"), [
        ("text/xml", ("text/xml", {})),
        ("text/xml; charset=utf-8", ("text/xml", {"charset": "utf-8"})),
        ('application/soap+xml; Charset="UTF-8"; action="urn:a;b"',
         ("application/soap+xml", {"charset": "UTF-8", "action": "urn:a;b"})),
        ('multipart/related; boundary="a\\"b"; start=<x>', ("multipart/related", {"boundary": 'a"b', "start": "<x>"})),
        ("text/xml; novalue; q = 1 ", ("text/xml", {"q": "1"})),
        ("", ("", {})),
    ])
    def test_splits_like_cgi(self, line: str, expected: tuple[str, dict[str, str]]) -> None:
        assert parse_header(line) == expected

    @pytest.mark.skipif(sys.version_info >= (3, 13), reason="Python 3.13 has no cgi module to compare with")
    @given(st.text(alphabet='abc=; "\\\t/', max_size=40))
    def test_agrees_with_the_removed_cgi_parse_header(self, line: str) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import cgi
        assert parse_header(line) == cgi.parse_header(line)


class TestInstall:
    def test_spyne_imports_with_warnings_as_errors(self) -> None:
        result = run_python("""
            import wmproxy.soap  # installs the compatibility layer
            import spyne
            import spyne.util.six as six
            from spyne.util.six.moves.urllib.parse import quote
            from spyne.protocol.soap import Soap11
            from spyne.server.wsgi import WsgiApplication
            assert 'find_spec' in vars(six._SixMetaPathImporter)
            assert quote('a b') == 'a%20b'
        """)
        assert result.returncode == 0, result.stderr

    def test_patches_six_when_it_was_imported_first(self) -> None:
        # spyne.util.six itself imports on every version; only its importer is incomplete.
        result = run_python("""
            import importlib.machinery, importlib.util, os, sys
            package = importlib.machinery.PathFinder.find_spec('spyne').submodule_search_locations[0]
            spec = importlib.util.spec_from_file_location('spyne.util.six', os.path.join(package, 'util', 'six.py'))
            six = importlib.util.module_from_spec(spec)
            sys.modules['spyne.util.six'] = six
            spec.loader.exec_module(six)
            assert 'find_spec' not in vars(six._SixMetaPathImporter)
            from wmproxy.soap import _spyne_compat
            _spyne_compat.install()
            assert 'find_spec' in vars(six._SixMetaPathImporter)
            from spyne.util.six.moves.urllib.parse import quote
        """)
        assert result.returncode == 0, result.stderr

    def test_stands_in_for_a_missing_cgi(self) -> None:
        # Python 3.13 behaviour on any version: the cgi import is blocked.
        result = run_python("""
            import sys
            sys.modules['cgi'] = None
            from wmproxy.soap import _spyne_compat
            from spyne.protocol.soap import soap11
            from spyne.server import wsgi
            assert soap11.cgi.parse_header is _spyne_compat.parse_header
            assert wsgi.cgi.parse_header('text/xml; charset=utf-8') == ('text/xml', {'charset': 'utf-8'})
        """)
        assert result.returncode == 0, result.stderr

    def test_leaves_an_existing_cgi_alone(self) -> None:
        result = run_python("""
            import sys, types
            real = types.ModuleType('cgi')
            sys.modules['cgi'] = real
            from wmproxy.soap import _spyne_compat
            assert sys.modules['cgi'] is real
        """)
        assert result.returncode == 0, result.stderr

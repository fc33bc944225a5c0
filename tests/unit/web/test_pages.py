"""The monitor's pages in-process: who sees what, filters, paging, escaping, the DAG picture."""

from __future__ import annotations

import logging
import os
import re
from urllib.parse import quote, unquote

import pytest
from lxml import etree, html

from tests.support import ECHO_JDL
from tests.unit.web.conftest import request
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.services import monitor
from wmproxy.services.monitor import JobRow
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job
from wmproxy.soap.app import WMProxyApplication
from wmproxy.store import monitoring as queries
from wmproxy.web import app as web_app
from wmproxy.web.dag import depths, layout

#: A diamond: prepare → (left, right) → merge.
DAG = """[ Type = "dag";
nodes = [
  prepare = [ Description = [ Executable = "/bin/true"; ]; ];
  left = [ Description = [ Executable = "/bin/true"; ]; ];
  right = [ Description = [ Executable = "/bin/true"; ]; ];
  merge = [ Description = [ Executable = "/bin/true"; ]; ];
  dependencies = { { prepare, left }, { prepare, right }, { {left, right}, merge } };
];
]"""
HOSTILE_JDL = ECHO_JDL.replace('"hello grid"', '"<script>alert(1)</script>"')


def set_state(rt: Runtime, job_id: str, state: JobState, **kwargs: object) -> None:
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        uow.jobs.set_state(job, state.value, utcnow(), **kwargs)  # type: ignore[arg-type]


def perused_job(rt: Runtime, owner: Principal, delegation: str, files: str) -> str:
    """A registered job whose files under perusal are ``files`` (one a line)."""
    job_id = register_job(rt, owner, ECHO_JDL, delegation).job_id
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        job.perusal_files = files
    return job_id


def page(app: WMProxyApplication, who: Principal, path: str, query: str = "") -> tuple[str, html.HtmlElement]:
    status, headers, body = request(app, who, path, query)
    assert headers["Content-Type"].startswith("text/html")
    assert headers["Cache-Control"] == "no-store"
    assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none': no script at all
    return status, html.fromstring(body)


class TestJobList:
    def test_lists_only_the_callers_jobs_with_totals(self, app: WMProxyApplication, rt: Runtime, alice: Principal,
                                                     bob: Principal, delegated: str) -> None:
        mine = [register_job(rt, alice, ECHO_JDL, delegated).job_id for _ in range(3)]
        set_state(rt, mine[0], JobState.WAITING)
        status, doc = page(app, alice, "/monitor/")
        assert status == "200 OK"
        listed = [a.text for a in doc.xpath('//table[@id="jobs"]//a')]
        assert sorted(listed) == sorted(mine)
        totals = dict(zip([t.text_content() for t in doc.xpath('//table[@id="totals"]//th')],
                          [t.text_content() for t in doc.xpath('//table[@id="totals"]//td')], strict=True))
        assert (totals["Submitted"], totals["Waiting"], totals["Running"]) == ("2", "1", "0")
        status, doc = page(app, bob, "/monitor/")
        assert status == "200 OK" and doc.xpath('//table[@id="jobs"]') == []
        assert "0 jobs" in doc.text_content()

    def test_filters_by_state_and_time_and_pages(self, app: WMProxyApplication, rt: Runtime, alice: Principal,
                                                 delegated: str) -> None:
        ids = [register_job(rt, alice, ECHO_JDL, delegated).job_id for _ in range(5)]
        set_state(rt, ids[1], JobState.RUNNING)
        _, doc = page(app, alice, "/monitor/", "state=Running")
        assert [a.text for a in doc.xpath('//table[@id="jobs"]//a')] == [ids[1]]
        _, doc = page(app, alice, "/monitor/", "since=2999-01-01")
        assert doc.xpath('//table[@id="jobs"]') == []
        with rt.uow() as uow:
            days = [job.created_at.strftime("%Y-%m-%d") for job in (uow.jobs.get(i) for i in ids) if job]
        today = days[0]
        _, doc = page(app, alice, "/monitor/", f"since={today}&until={today}")  # a date alone: the whole day
        assert len(doc.xpath('//table[@id="jobs"]//a')) == days.count(today)
        _, doc = page(app, alice, "/monitor/", f"until={today}T00:00")
        assert doc.xpath('//table[@id="jobs"]') == []
        _, doc = page(app, alice, "/monitor/", "until=2999-01-01T00:00&per_page=2")
        first = [a.text for a in doc.xpath('//table[@id="jobs"]//a')]
        assert len(first) == 2 and "page 1 of 3" in doc.text_content()
        next_link = doc.xpath('//a[@rel="next"]/@href')[0]
        assert "per_page=2" in next_link and "page=2" in next_link
        _, doc = page(app, alice, "/monitor/", next_link.lstrip("?"))
        second = [a.text for a in doc.xpath('//table[@id="jobs"]//a')]
        assert len(second) == 2 and not set(first) & set(second)

    @pytest.mark.parametrize("query", ["state=Bogus", "since=yesterday", "page=0", "per_page=5000", "page=-1"])
    def test_a_bad_filter_is_a_400_page(self, app: WMProxyApplication, alice: Principal, query: str) -> None:
        status, doc = page(app, alice, "/monitor/", query)
        assert status == "400 Bad Request"
        assert doc.xpath('//p[@class="error"]')

    @pytest.mark.parametrize("query", [
        "until=9999-12-31",  # a date alone includes its day: the next one is past datetime's last
        "since=0001-01-01T00:00%2B14:00", "until=9999-12-31T23:59-10:00",  # offsets: UTC only
        "since=2024-W01", "since=20240101", "since=2024-01-01T00:00:00.123456", "since=2024-01-01 10:00",
        "since=%D9%A2024-01-01", "until=2024-02-30",
    ])
    def test_a_date_the_filter_cannot_take_is_a_400_page(self, app: WMProxyApplication, alice: Principal,
                                                         query: str) -> None:
        status, doc = page(app, alice, "/monitor/", query)
        assert status == "400 Bad Request"
        message = doc.xpath('string(//p[@class="error"])')
        assert message.startswith(query.split("=")[0] + ": ")
        assert "YYYY-MM-DD" in message or "last date" in message

    @pytest.mark.parametrize("query", ["since=0001-01-01", "until=9999-12-30", "until=9999-12-31T23:59",
                                       "since=0001-01-01T00:00&until=9999-12-31T23:59"])
    def test_the_first_and_last_dates_a_filter_takes(self, app: WMProxyApplication, rt: Runtime, alice: Principal,
                                                     delegated: str, query: str) -> None:
        job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
        status, doc = page(app, alice, "/monitor/", query)
        assert status == "200 OK"
        assert [a.text for a in doc.xpath('//table[@id="jobs"]//a')] == [job_id]

    def test_more_than_twenty_query_fields_is_a_400_page(self, app: WMProxyApplication, alice: Principal) -> None:
        twenty = "&".join(f"f{n}=x" for n in range(20))
        assert page(app, alice, "/monitor/", twenty)[0] == "200 OK"
        status, doc = page(app, alice, "/monitor/", twenty + "&state=Running")
        assert status == "400 Bad Request"
        assert "too many query fields" in doc.xpath('string(//p[@class="error"])')

    def test_a_store_error_is_a_500_page_with_an_error_id(self, app: WMProxyApplication, rt: Runtime,
                                                          alice: Principal, caplog: pytest.LogCaptureFixture) -> None:
        import sqlalchemy as sa

        with rt.uow() as uow:
            uow.session.execute(sa.text("ALTER TABLE jobs RENAME TO jobs_away"))
        try:
            status, doc = page(app, alice, "/monitor/")
        finally:
            with rt.uow() as uow:
                uow.session.execute(sa.text("ALTER TABLE jobs_away RENAME TO jobs"))
        assert status == "500 Internal Server Error"
        message = doc.xpath('string(//p[@class="error"])')
        error_id = re.search(r"error id ([0-9a-f]{12})", message)
        assert error_id, message
        assert any(error_id.group(1) in r.getMessage() and r.exc_info for r in caplog.records)
        assert page(app, alice, "/monitor/")[0] == "200 OK"


class TestJobPage:
    def test_owner_sees_status_events_jdl_escaped(self, app: WMProxyApplication, rt: Runtime, alice: Principal,
                                                  delegated: str) -> None:
        job_id = register_job(rt, alice, HOSTILE_JDL, delegated).job_id
        set_state(rt, job_id, JobState.WAITING)
        status, _, body = request(app, alice, "/monitor/job", "id=" + quote(job_id, safe=""))
        assert status == "200 OK"
        assert b"<script>" not in body and b"&lt;script&gt;alert(1)&lt;/script&gt;" in body
        doc = html.fromstring(body)
        assert [row.xpath("td")[1].text_content() for row in doc.xpath('//table[@id="events"]/tr[td]')] == [
            "Submitted", "Waiting"]
        assert "Waiting" in doc.xpath('//td[@id="status"]')[0].text_content()

    def test_another_users_job_is_refused(self, app: WMProxyApplication, rt: Runtime, alice: Principal,
                                          bob: Principal, delegated: str) -> None:
        job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
        for path in ("/monitor/job", "/monitor/dag.svg"):
            status, _, body = request(app, bob, path, "id=" + quote(job_id, safe=""))
            assert status == "403 Forbidden"
            assert job_id.encode() not in body and b"/bin/echo" not in body

    def test_acl_reader_sees_the_job(self, app: WMProxyApplication, rt: Runtime, alice: Principal,
                                     bob: Principal, delegated: str) -> None:
        job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
        with rt.uow() as uow:
            uow.jobs.add_acl_item(job_id, bob.dn)
        status, _ = page(app, bob, "/monitor/job", "id=" + quote(job_id, safe=""))
        assert status == "200 OK"
        _, doc = page(app, bob, "/monitor/")  # the list stays bob's own
        assert doc.xpath('//table[@id="jobs"]') == []

    @pytest.mark.parametrize(("query", "code"), [("", "400"), ("id=not-a-job", "400"),
                                                 ("id=https%3A%2F%2Flocalhost%3A7443%2FAAAAAAAAAAAAAAAAAAAAAA", "404")])
    def test_unknown_or_malformed_ids(self, app: WMProxyApplication, alice: Principal, query: str, code: str) -> None:
        status, _ = page(app, alice, "/monitor/job", query)
        assert status.startswith(code)

    def test_output_files_link_to_the_sandbox(self, app: WMProxyApplication, rt: Runtime, alice: Principal,
                                              delegated: str) -> None:
        job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
        output = rt.storage.job_dir(job_id) / "output"
        output.mkdir(exist_ok=True)
        (output / "std.out").write_text("hello grid\n")
        set_state(rt, job_id, JobState.DONE, exit_code=0)
        _, doc = page(app, alice, "/monitor/job", "id=" + quote(job_id, safe=""))
        (link,) = doc.xpath('//table[@id="outputs"]//a')
        assert link.text == "std.out"
        assert link.get("href") == f"{rt.storage.job_area(job_id).output_uri}/std.out"
        status, _, body = request(app, alice, re.sub(r"^https://[^/]+", "", link.get("href")))
        assert (status, body) == ("200 OK", b"hello grid\n")

    def test_links_of_names_with_hash_or_percent_are_quoted(self, app: WMProxyApplication, rt: Runtime,
                                                            alice: Principal, delegated: str) -> None:
        """The sandbox edge serves a request path decoded: a link's path, decoded as an HTTP
        server does, is the file."""
        job_id = perused_job(rt, alice, delegated, "res#1.txt")
        output = rt.storage.job_dir(job_id) / "output"
        output.mkdir(exist_ok=True)
        (output / "res#1.txt").write_text("hash\n")
        (output / "50%.txt").write_text("percent\n")
        (rt.storage.job_dir(job_id) / "peek").mkdir()
        (rt.storage.job_dir(job_id) / "peek" / "res#1.txt-100-160").write_text("part\n")
        set_state(rt, job_id, JobState.DONE, exit_code=0)
        _, doc = page(app, alice, "/monitor/job", "id=" + quote(job_id, safe=""))
        links = doc.xpath('//table[@id="outputs"]//a') + doc.xpath('//ul[@id="perusal"]//a')
        area = rt.storage.job_area(job_id)
        assert [(a.text, a.get("href")) for a in links] == [
            ("50%.txt", f"{area.output_uri}/50%25.txt"), ("res#1.txt", f"{area.output_uri}/res%231.txt"),
            ("res#1.txt-100-160", f"{area.peek_uri}/res%231.txt-100-160")]
        served = [request(app, alice, unquote(re.sub(r"^https://[^/]+", "", a.get("href")))) for a in links]
        assert [(status, body) for status, _, body in served] == [
            ("200 OK", b"percent\n"), ("200 OK", b"hash\n"), ("200 OK", b"part\n")]

    def test_perusal_files_link_their_merged_parts(self, app: WMProxyApplication, rt: Runtime, alice: Principal,
                                                  delegated: str) -> None:
        job_id = perused_job(rt, alice, delegated, "std.out\nstd.err")
        peek = rt.storage.job_dir(job_id) / "peek"
        peek.mkdir(exist_ok=True)
        (peek / "std.out-100-160").write_bytes(b"first lines\n")
        (peek / "std.out.170").write_bytes(b"not merged yet\n")  # a chunk: the monitor merges nothing
        _, doc = page(app, alice, "/monitor/job", "id=" + quote(job_id, safe=""))
        items = doc.xpath('//ul[@id="perusal"]/li')
        assert [li.text_content().split()[0] for li in items] == ["std.out", "std.err"]
        (link,) = items[0].xpath("a")
        peek_uri = rt.storage.job_area(job_id).peek_uri
        assert (link.text, link.get("href")) == ("std.out-100-160", f"{peek_uri}/std.out-100-160")
        assert "no part retrieved yet" in items[1].text_content()
        assert (peek / "std.out.170").exists()


class TestDag:
    def test_picture_places_nodes_by_dependency(self, app: WMProxyApplication, rt: Runtime, alice: Principal,
                                                delegated: str) -> None:
        job_id = register_job(rt, alice, DAG, delegated).job_id
        status, headers, body = request(app, alice, "/monitor/dag.svg", "id=" + quote(job_id, safe=""))
        assert (status, headers["Content-Type"]) == ("200 OK", "image/svg+xml")
        svg = etree.fromstring(body)
        ns = {"s": "http://www.w3.org/2000/svg"}
        nodes = {g.xpath("s:text", namespaces=ns)[0].text: int(g.xpath("s:rect/@x", namespaces=ns)[0])
                 for g in svg.xpath("//s:g[@class='node']", namespaces=ns)}
        assert nodes["prepare"] < nodes["left"] == nodes["right"] < nodes["merge"]
        assert len(svg.xpath("//s:line", namespaces=ns)) == 4
        _, doc = page(app, alice, "/monitor/job", "id=" + quote(job_id, safe=""))
        assert doc.xpath('//div[@id="dag"]/*[local-name()="svg"]')
        assert len(doc.xpath('//table[@id="nodes"]/tr[td]')) == 4

    def test_a_simple_job_has_no_picture(self, app: WMProxyApplication, rt: Runtime, alice: Principal,
                                         delegated: str) -> None:
        job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
        status, _, _ = request(app, alice, "/monitor/dag.svg", "id=" + quote(job_id, safe=""))
        assert status == "404 Not Found"


def test_the_monitor_is_read_only(app: WMProxyApplication, alice: Principal) -> None:
    status, _, _ = request(app, alice, "/monitor/", method="POST")
    assert status == "405 Method Not Allowed"


def chain_jdl(length: int) -> str:
    """A chain DAG whose first node by name is the deepest: n0000 depends on n0001, ... ."""
    nodes = "\n".join(f'  n{i:04d} = [ Description = [ Executable = "/bin/true"; ]; ];' for i in range(length))
    deps = ", ".join(f"{{ n{i + 1:04d}, n{i:04d} }}" for i in range(length - 1))
    return f'[ Type = "dag";\nnodes = [\n{nodes}\n  dependencies = {{ {deps} }};\n];\n]'


def crossed_jdl(half: int) -> str:
    """``half`` parents each before ``half`` children, in one pair of node lists: ``half``² dependencies."""
    names = [f"p{i:03d}" for i in range(half)] + [f"c{i:03d}" for i in range(half)]
    nodes = "\n".join(f'  {n} = [ Description = [ Executable = "/bin/true"; ]; ];' for n in names)
    deps = "{ { {" + ", ".join(names[:half]) + "}, {" + ", ".join(names[half:]) + "} } }"
    return f'[ Type = "dag";\nnodes = [\n{nodes}\n  dependencies = {deps};\n];\n]'


SVG = {"s": "http://www.w3.org/2000/svg"}


class TestLongChain:
    """M1: a chain DAG deeper than Python's recursion limit (``[jobs] max_nodes`` is 10,000)."""

    def test_layout_of_a_chain_as_long_as_max_nodes(self) -> None:
        now = utcnow()
        ids = [f"https://localhost:7443/n{i:05d}" for i in range(10_000)]
        nodes = [JobRow(job_id, job_id.rsplit("/", 1)[-1], "Submitted", "Submitted", None, now, now)
                 for job_id in ids]
        column = depths(ids, [(ids[i], ids[i + 1]) for i in range(len(ids) - 1)])
        assert (column[ids[0]], column[ids[-1]]) == (9_999, 0)
        picture = layout(nodes[:3], [(ids[0], ids[1]), (ids[1], ids[2]), (ids[2], ids[0])])  # a cycle is cut
        assert sorted(n.x for n in picture.nodes) == [12, 252, 492]

    def test_a_chain_of_the_most_nodes_drawn_is_drawn(self, app: WMProxyApplication, rt: Runtime, alice: Principal,
                                                      delegated: str, caplog: pytest.LogCaptureFixture) -> None:
        length = 500  # two frames a node recursed: past Python's limit of 1,000
        job_id = register_job(rt, alice, chain_jdl(length), delegated).job_id
        status, _, body = request(app, alice, "/monitor/dag.svg", "id=" + quote(job_id, safe=""))
        assert status == "200 OK"
        svg = etree.fromstring(body)
        x = {g.xpath("s:text", namespaces=SVG)[0].text: int(g.xpath("s:rect/@x", namespaces=SVG)[0])
             for g in svg.xpath("//s:g[@class='node']", namespaces=SVG)}
        assert len(x) == length == monitor.MAX_DRAWN_NODES
        assert x["n0000"] > x["n0001"] > x[f"n{length - 1:04d}"]
        status, doc = page(app, alice, "/monitor/job", "id=" + quote(job_id, safe=""))
        assert status == "200 OK" and doc.xpath('//div[@id="dag"]/*[local-name()="svg"]')
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    def test_a_recursion_error_logs_one_line_not_its_traceback(self, app: WMProxyApplication, rt: Runtime,
                                                               alice: Principal, delegated: str,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
        job_id = register_job(rt, alice, DAG, delegated).job_id

        def deep(n: int) -> int:
            return deep(n + 1) + 1

        monkeypatch.setattr(web_app, "layout", lambda nodes, edges: deep(0))
        status, doc = page(app, alice, "/monitor/job", "id=" + quote(job_id, safe=""))
        assert status == "500 Internal Server Error"
        error_id = re.search(r"error id ([0-9a-f]{12})", doc.xpath('string(//p[@class="error"])'))
        assert error_id
        (record,) = [r for r in caplog.records if error_id.group(1) in r.getMessage()]
        assert record.exc_info is None and "RecursionError" in record.getMessage()
        assert len(logging.Formatter().format(record)) < 1000


class TestBigDag:
    """L2: what a view of a DAG costs is bounded, whatever the DAG's size."""

    def test_a_dag_with_more_dependencies_than_drawn_is_a_notice(self, app: WMProxyApplication, rt: Runtime,
                                                                 alice: Principal, delegated: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
        half = 46  # 92 nodes, 2,116 dependencies out of a 4 KB JDL
        job_id = register_job(rt, alice, crossed_jdl(half), delegated).job_id

        def loaded(*args: object) -> None:
            raise AssertionError("the edges of a DAG not drawn were loaded")

        monkeypatch.setattr(queries, "node_edges", loaded)
        status, _, body = request(app, alice, "/monitor/job", "id=" + quote(job_id, safe=""))
        assert status == "200 OK"
        doc = html.fromstring(body)
        assert not doc.xpath('//div[@id="dag"]') and not doc.xpath('//*[local-name()="line"]')
        assert "92 nodes and 2116 dependencies" in doc.xpath('string(//p[@id="dag-notice"])')
        assert len(doc.xpath('//table[@id="nodes"]/tr[td]')) == 92
        status, headers, body = request(app, alice, "/monitor/dag.svg", "id=" + quote(job_id, safe=""))
        assert (status, headers["Content-Type"]) == ("200 OK", "image/svg+xml")
        svg = etree.fromstring(body)
        assert not svg.xpath("//s:line", namespaces=SVG) and not svg.xpath("//s:g[@class='node']", namespaces=SVG)
        assert "2116 dependencies" in "".join(svg.itertext())
        assert half * half > monitor.MAX_DRAWN_EDGES and 2 * half <= monitor.MAX_DRAWN_NODES

    def test_nodes_beyond_the_drawn_are_listed_by_page(self, app: WMProxyApplication, rt: Runtime,
                                                       alice: Principal, delegated: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
        job_id = register_job(rt, alice, DAG, delegated).job_id
        monkeypatch.setattr(monitor, "MAX_DRAWN_NODES", 3, raising=False)
        monkeypatch.setattr(monitor, "NODES_PER_PAGE", 3, raising=False)
        _, doc = page(app, alice, "/monitor/job", "id=" + quote(job_id, safe=""))
        assert "4 nodes and 4 dependencies" in doc.xpath('string(//p[@id="dag-notice"])')
        names = [a.text for a in doc.xpath('//table[@id="nodes"]//a')]
        assert names == ["left", "merge", "prepare"] and "page 1 of 2" in doc.text_content()
        next_link = doc.xpath('//p[@id="nodes-pager"]/a[@rel="next"]/@href')[0]
        _, doc = page(app, alice, "/monitor/job", next_link.split("?", 1)[1])
        assert [a.text for a in doc.xpath('//table[@id="nodes"]//a')] == ["right"]
        assert doc.xpath('//p[@id="nodes-pager"]/a[@rel="prev"]') and not doc.xpath('//a[@rel="next"]')
        status, _ = page(app, alice, "/monitor/job", f"id={quote(job_id, safe='')}&nodes_page=3")
        assert status == "400 Bad Request"
        monkeypatch.setattr(monitor, "MAX_DRAWN_NODES", 4)  # drawn: the table is still a page
        _, doc = page(app, alice, "/monitor/job", next_link.split("?", 1)[1])
        assert doc.xpath('//div[@id="dag"]') and [a.text for a in doc.xpath('//table[@id="nodes"]//a')] == ["right"]
        assert not doc.xpath('//p[@id="jdl-cut"]')
        monkeypatch.setattr(web_app, "MAX_REGISTERED_JDL_SHOWN", 100)  # a DAG's holds its nodes' JDLs
        _, doc = page(app, alice, "/monitor/job", next_link.split("?", 1)[1])
        assert len(doc.xpath('string(//details[@id="registered"]/pre)')) == 100
        assert "first 100 characters of" in doc.xpath('string(//p[@id="jdl-cut"])')


def test_an_output_file_name_not_utf8_is_shown_escaped(app: WMProxyApplication, rt: Runtime, alice: Principal,
                                                      delegated: str) -> None:
    """L1: the job chooses its output files' names (a wildcard of its OutputSandbox): shown as
    :func:`wmproxy.sandbox.storage.shown_name` writes them; linked as stored only when the edge
    serves the name (one a collection before stop 55 stored, bytes that are not UTF-8 or a
    control character, was linked and its link answered 400)."""
    job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
    output = rt.storage.job_dir(job_id) / "output"
    output.mkdir(exist_ok=True)
    for name in (b"\xff\xfe.dat", b"esc\x1b[31m.dat", "r\u00e9sum\u00e9 #1.dat".encode()):
        (output / os.fsdecode(name)).write_bytes(b"x")
    set_state(rt, job_id, JobState.DONE, exit_code=0)
    status, _, body = request(app, alice, "/monitor/job", "id=" + quote(job_id, safe=""))
    assert status == "200 OK"
    table = html.fromstring(body).xpath('//table[@id="outputs"]')[0]
    area = rt.storage.job_area(job_id)
    assert [(a.text, a.get("href")) for a in table.xpath(".//a")] == [
        ("r\u00e9sum\u00e9 #1.dat", f"{area.output_uri}/r%C3%A9sum%C3%A9%20%231.dat")]
    cells = [td.text_content() for td in table.xpath(".//tr/td[1]")]
    assert cells == ["esc\\x1b[31m.dat (not served: a name the sandbox edge refuses)", "r\u00e9sum\u00e9 #1.dat",
                     "\\udcff\\udcfe.dat (not served: a name the sandbox edge refuses)"]


class TestOtherSites:
    """L3: another site's page learns nothing of a job from the monitor's answers."""

    def test_every_answer_is_for_this_origin_only(self, app: WMProxyApplication, rt: Runtime, alice: Principal,
                                                  delegated: str) -> None:
        job_id = register_job(rt, alice, DAG, delegated).job_id
        for path, query in (("/monitor/", ""), ("/monitor/job", "id=" + quote(job_id, safe="")),
                            ("/monitor/dag.svg", "id=" + quote(job_id, safe="")), ("/monitor/nope", "")):
            _, headers, _ = request(app, alice, path, query)
            assert headers["Cross-Origin-Resource-Policy"] == "same-origin", path

    @pytest.mark.parametrize(("fetch", "status"), [
        ({"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}, "403 Forbidden"),
        ({"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}, "403 Forbidden"),
        ({"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}, "403 Forbidden"),
        ({"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, "200 OK"),
        ({"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}, "200 OK"),
        ({"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, "200 OK"),
        ({}, "200 OK"),
    ])
    def test_a_request_of_another_sites_page_is_refused(self, app: WMProxyApplication, rt: Runtime,
                                                        alice: Principal, delegated: str, fetch: dict[str, str],
                                                        status: str) -> None:
        job_id = register_job(rt, alice, DAG, delegated).job_id
        for path in ("/monitor/dag.svg", "/monitor/job"):
            answer, _, body = request(app, alice, path, "id=" + quote(job_id, safe=""), headers=fetch)
            assert answer == status, path
            if status != "200 OK":
                assert job_id.encode() not in body and b"prepare" not in body


@pytest.mark.parametrize("query", ["per_page=%C2%B2", "page=%E2%91%A0", "per_page=%D9%A1%D9%A0", "page=1234567",
                                   "page=+1", "per_page=%EF%BC%91"])
def test_a_page_number_is_ascii_digits(app: WMProxyApplication, alice: Principal, query: str,
                                       caplog: pytest.LogCaptureFixture) -> None:
    """L5: ``str.isdigit`` took ``²`` and ``①``, which ``int`` refuses: a 500 and a traceback."""
    status, doc = page(app, alice, "/monitor/", query)
    assert status == "400 Bad Request"
    assert doc.xpath('string(//p[@class="error"])').endswith("not a positive number")
    assert not [r for r in caplog.records if r.exc_info]

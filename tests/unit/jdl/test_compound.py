"""wmproxy.jdl.compound: collection, DAG and parametric expansion (§9.4, §9.5)."""

from __future__ import annotations

from pathlib import Path

import classad2
import pytest

from wmproxy.errors import InvalidArgumentError, InvalidJdlAttributeError, JdlError, JdlExpressionError
from wmproxy.jdl import CompoundJob, check_expressions, compound, dag_order, describe, expand, parametric, parse_jdl
from wmproxy.jdl.compound import node_name

DATA = Path(__file__).parent / "data"
VO = "dteam"
REQ = "other.GlueCEStateFreeCPUs >=1"
RANK = "other.GlueCEStateFreeCPUs"


def _sample(name: str) -> str:
    text = (DATA / name).read_text()
    return text.replace("<VO>", VO).replace("<REQ>", REQ).replace("<RANK>", RANK)


def _expand(text: str, **kwargs: int) -> CompoundJob:
    job = expand(parse_jdl(text), **kwargs)
    assert job is not None
    return job


def _expr(ad: classad2.ClassAd, name: str) -> str:
    return " ".join(str(ad.lookup(name)).split())


class TestSimpleJob:
    def test_a_simple_job_is_not_expanded(self) -> None:
        assert expand(parse_jdl(_sample("test_job.jdl"))) is None


class TestCollection:
    def test_appendix_a2_has_two_nodes_named_by_index(self) -> None:
        job = _expand(_sample("collection.jdl"))

        assert job.kind == "collection"
        assert [(node.name, node.index) for node in job.nodes] == [("Node_0", 0), ("Node_1", 1)]
        assert job.dependencies == ()

    def test_appendix_a2_nodes_inherit_vo_requirements_and_rank(self) -> None:
        job = _expand(_sample("collection.jdl"))

        for node, out in zip(job.nodes, ("job1.out", "job2.out"), strict=True):
            assert node.ad["VirtualOrganisation"] == VO
            assert _expr(node.ad, "Requirements") == "other.GlueCEStateFreeCPUs >= 1"
            assert _expr(node.ad, "Rank") == RANK
            assert node.ad["StdOutput"] == out
            assert node.ad["Arguments"] == "-f"
            assert node.description.executable == "/bin/hostname"

    def test_appendix_a2_parent_is_a_dag_without_nodes(self) -> None:
        job = _expand(_sample("collection.jdl"))

        assert job.parent_ad["Type"] == "dag"
        assert "Nodes" not in job.parent_ad
        assert job.parent_ad["VirtualOrganisation"] == VO

    def test_node_names_come_from_nodename_which_is_removed(self) -> None:
        job = _expand(_sample("collection_31669.jdl"))

        assert [node.name for node in job.nodes] == ["first", "second", "third"]
        assert all("NodeName" not in node.ad for node in job.nodes)

    def test_regression_31669_default_node_retry_counts(self) -> None:
        job = _expand(_sample("collection_31669.jdl"))

        for node in job.nodes:
            assert node.ad["RetryCount"] == 17
            assert node.ad["ShallowRetryCount"] == 13

    def test_a_node_keeps_its_own_values(self) -> None:
        job = _expand(
            'Type = "collection"; Requirements = true; RetryCount = 1; DefaultNodeRetryCount = 5;'
            'Nodes = { [ Executable = "a"; Requirements = false; RetryCount = 2 ], [ Executable = "b" ] };'
        )

        first, second = job.nodes
        assert (first.ad["Requirements"], first.ad["RetryCount"]) == (False, 2)
        assert (second.ad["Requirements"], second.ad["RetryCount"]) == (True, 5)

    def test_an_inherited_retry_count_that_is_not_an_integer_is_refused_naming_the_node(self) -> None:
        with pytest.raises(JdlError, match=r'^Node Node_1: Attribute ShallowRetryCount must be an integer, not "3"$'):
            _expand('Type = "collection"; DefaultNodeShallowRetryCount = "3";'
                    'Nodes = { [ Executable = "a"; ShallowRetryCount = -1 ], [ Executable = "b" ] };')

    @pytest.mark.parametrize("kind", ["collection", "dag"])
    def test_nodes_inherit_the_compound_jobs_expiry_time_their_own_wins(self, kind: str) -> None:
        nodes = ('{ [ NodeName = "a" ], [ NodeName = "b"; ExpiryTime = 2000000000 ] }' if kind == "collection"
                 else '[ a = [ description = [] ]; b = [ description = [ ExpiryTime = 2000000000 ] ] ]')
        job = _expand(f'Type = "{kind}"; Executable = "e"; ExpiryTime = 1700000000; Nodes = {nodes};')

        assert [node.ad["ExpiryTime"] for node in job.nodes] == [1700000000, 2000000000]
        assert job.parent_ad["ExpiryTime"] == 1700000000

    def test_node_ads_share_nothing_with_the_parent(self) -> None:
        job = _expand(_sample("collection.jdl"))

        job.nodes[0].ad["Rank"] = 99
        job.nodes[0].ad["StdOutput"] = "changed"

        assert _expr(job.parent_ad, "Rank") == RANK
        assert _expr(job.nodes[1].ad, "Rank") == RANK
        assert job.nodes[1].ad["StdOutput"] == "job2.out"

    def test_nodename_is_sanitised(self) -> None:
        job = _expand('Type = "collection"; Executable = "a"; Nodes = { [ NodeName = "a.b/c*d$e f" ] };')

        assert job.nodes[0].name == "a_bIc-d_S_e_f"

    def test_a_thousand_nodes_expand(self) -> None:
        nodes = ", ".join(f'[ NodeName = "n{i}"; Arguments = "{i}" ]' for i in range(1000))
        job = _expand(f'Type = "collection"; Executable = "/bin/echo"; Nodes = {{ {nodes} }};')

        assert len(job.nodes) == 1000
        assert job.nodes[999].name == "n999"
        assert job.nodes[999].index == 999
        assert job.nodes[999].ad["Arguments"] == "999"
        assert job.nodes[999].ad["Executable"] == "/bin/echo"

    def test_describe_validates_and_lists_the_nodes(self) -> None:
        description = describe(parse_jdl(_sample("collection_31669.jdl")))

        assert description.type == "collection"
        assert description.nodes == ("first", "second", "third")


class TestDag:
    def test_appendix_a3_nodes_and_dependency(self) -> None:
        job = _expand(_sample("dag.jdl"))

        assert job.kind == "dag"
        assert [node.name for node in job.nodes] == ["nodeA", "nodeB"]
        assert job.dependencies == (("nodeA", "nodeB"),)
        assert dag_order(job) == ["nodeA", "nodeB"]

    def test_appendix_a3_nodes_inherit_from_the_dag(self) -> None:
        job = _expand(_sample("dag.jdl"))

        node_b = job.node("nodeB")
        assert node_b.ad["VirtualOrganisation"] == VO
        assert _expr(node_b.ad, "Requirements") == "other.GlueCEStateFreeCPUs >= 1"
        assert _expr(node_b.ad, "Rank") == RANK
        assert node_b.ad["FuzzyRank"] is True
        assert job.node("nodeA").ad["StdOutput"] == "jobA.out"

    def test_list_form_with_top_level_dependencies_and_string_names(self) -> None:
        job = _expand(
            'Type = "dag"; Executable = "x";'
            'Nodes = { [ NodeName = "c" ], [ NodeName = "a" ], [ name = "b"; description = [ Arguments = "1" ] ] };'
            'Dependencies = { { "a", { b, c } } };'
        )

        assert [node.name for node in job.nodes] == ["c", "a", "b"]
        assert job.dependencies == (("a", "b"), ("a", "c"))
        assert job.node("b").ad["Arguments"] == "1"
        assert dag_order(job) == ["a", "b", "c"]

    def test_lists_on_both_sides_mean_all_pairs(self) -> None:
        job = _expand(
            'Type = "dag"; Executable = "x"; nodes = [ a = [ description = [] ]; b = [ description = [] ];'
            ' c = [ description = [] ]; d = [ description = [] ]; dependencies = { { {a, b}, {c, D} } } ];'
        )

        assert job.dependencies == (("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"))

    @pytest.mark.parametrize("child", ["b", "a"], ids=["no-cycle", "cycle"])
    def test_more_dependency_pairs_than_the_cap_are_refused_before_they_are_made(self, child: str) -> None:
        """317 x 317 = 100,489 pairs, counted as written (repeats too) from a 1.3 kB list, are
        refused before any pair is made or a cycle looked for (a list on each side of a pair
        cost O(pairs²) before the cycle was found). The cap follows ``max_nodes``."""
        parents, children = ", ".join(["a"] * 317), ", ".join([child] * 317)
        text = (
            'Type = "dag"; Executable = "x"; nodes = [ a = [ description = [] ]; b = [ description = [] ];'
            f" dependencies = {{ {{ {{ {parents} }}, {{ {children} }} }} }} ];"
        )

        with pytest.raises(InvalidArgumentError) as info:
            _expand(text)

        assert info.value.message == "The DAG job has 100489 dependency pairs, more than the allowed 100000"
        assert info.value.code == 1225
        if child == "b":  # 10 pairs a node: 200,000 for 20,000 nodes; each pair kept once
            assert _expand(text, max_nodes=20_000).dependencies == (("a", "b"),)

    def test_order_is_topological_and_stable_by_name(self) -> None:
        job = _expand(
            'Type = "dag"; Executable = "x"; nodes = [ z = [ description = [] ]; m = [ description = [] ];'
            ' b = [ description = [] ]; a = [ description = [] ]; dependencies = { { z, a }, { m, a } } ];'
        )

        assert dag_order(job) == ["b", "m", "z", "a"]

    def test_nodes_of_a_nodes_ad_are_indexed_alphabetically(self) -> None:
        names = [f"n{i}" for i in range(30)] + ["zz", "Aa", "b"]
        entries = "; ".join(f"{name} = [ description = [] ]" for name in names)
        job = _expand(f'Type = "dag"; Executable = "x"; nodes = [ {entries} ];')

        assert [node.name for node in job.nodes] == sorted(names, key=str.lower)
        assert [node.index for node in job.nodes] == list(range(33))

    def test_a_cycle_is_named(self) -> None:
        text = (
            'Type = "dag"; Executable = "x"; nodes = [ a = [ description = [] ]; b = [ description = [] ];'
            ' c = [ description = [] ]; dependencies = { { a, b }, { b, c }, { c, a } } ];'
        )

        with pytest.raises(JdlError, match=r"^Dependency cycle between DAG nodes: a -> b -> c -> a$"):
            _expand(text)

    def test_a_self_dependency_is_a_cycle(self) -> None:
        text = 'Type = "dag"; Executable = "x"; nodes = [ a = [ description = [] ]; dependencies = { { a, a } } ];'

        with pytest.raises(JdlError, match=r"^Dependency cycle between DAG nodes: a -> a$"):
            _expand(text)

    def test_an_unknown_node_is_refused(self) -> None:
        text = 'Type = "dag"; Executable = "x"; nodes = [ a = [ description = [] ]; dependencies = { { a, nodeX } } ];'

        with pytest.raises(JdlError, match=r"^Attribute dependencies names an unknown node: nodeX$"):
            _expand(text)

    def test_a_nested_dag_is_refused(self) -> None:
        text = (
            'Type = "dag"; Executable = "x"; nodes = [ a = [ description = [ Type = "dag";'
            ' nodes = [ b = [ description = [] ] ] ] ] ];'
        )

        with pytest.raises(InvalidArgumentError, match="nested DAGs are not supported"):
            _expand(text)

    def test_a_node_given_by_file_must_be_inlined(self) -> None:
        text = 'Type = "dag"; nodes = [ nodeA = [ node_type = "edg-jdl"; file = "data/example.jdl" ] ];'

        with pytest.raises(InvalidArgumentError, match="must be inlined by the client"):
            _expand(text)

    def test_an_invalid_node_is_reported_with_its_name(self) -> None:
        text = 'Type = "dag"; nodes = [ nodeA = [ description = [ Arguments = "1" ] ] ];'

        with pytest.raises(JdlError, match=r"^Node nodeA: Mandatory attribute Executable not set$"):
            _expand(text)


class TestReservedInputFiles:
    """An ``InputSandbox`` entry staged into a node's work dir as ``user.proxy`` or ``.wmproxy``
    is refused for every kind of compound job, as a simple job's (naming the node)."""

    RESERVED = "is reserved: it would be staged into the job's work directory as 'user.proxy'"

    @pytest.mark.parametrize("text", [
        # a collection node's own entry; one the node inherits from the collection
        'Type = "collection"; nodes = { [ Executable = "a"; InputSandbox = { "d/user.proxy" } ] };',
        'Type = "collection"; InputSandbox = { "d/user.proxy" }; nodes = { [ Executable = "a" ] };',
        # a DAG node's own entry, and one naming the DAG's entry (root.InputSandbox[0])
        'Type = "dag"; nodes = [ n1 = [ description = [ Executable = "a"; InputSandbox = { "d/user.proxy" } ] ] ];',
        ('Type = "dag"; InputSandbox = { "d/user.proxy" }; '
        'nodes = [ n1 = [ description = [ Executable = "a"; InputSandbox = { root.InputSandbox[0] } ] ] ];'),
        # a parametric job's entry, with and without _PARAM_
        'JobType = "Parametric"; Executable = "a"; Parameters = { "user" }; InputSandbox = { "d/_PARAM_.proxy" };',
        'JobType = "Parametric"; Executable = "a"; Parameters = 2; InputSandbox = { "d/user.proxy" };',
    ])
    def test_a_nodes_entry_is_refused(self, text: str) -> None:
        pattern = f"^(Node [^:]+: )?Attribute InputSandbox: '[^']*' {self.RESERVED}"
        with pytest.raises(InvalidArgumentError, match=pattern):
            _expand(text)

    def test_a_dags_own_entry_no_node_names_is_refused(self) -> None:
        text = ('Type = "dag"; InputSandbox = { "d/user.proxy", "a.sh" }; '
                'nodes = [ n1 = [ description = [ Executable = "a"; InputSandbox = { "a.sh" } ] ] ];')
        with pytest.raises(InvalidArgumentError, match=f"^Attribute InputSandbox: 'd/user.proxy' {self.RESERVED}"):
            _expand(text)


class TestParametric:
    def test_appendix_a4_values_start_100_step_10_below_130(self) -> None:
        job = _expand(_sample("parametric.jdl"))

        assert job.kind == "parametric"
        assert [node.name for node in job.nodes] == ["Node_100", "Node_110", "Node_120"]

    def test_appendix_a4_param_is_substituted(self) -> None:
        job = _expand(_sample("parametric.jdl"))

        for node, value in zip(job.nodes, ("100", "110", "120"), strict=True):
            assert node.ad["Arguments"] == f"input{value}.txt"
            assert node.ad["StdInput"] == f"input{value}.txt"
            assert node.ad["StdOutput"] == f"myoutput{value}.txt"
            assert node.ad["InputSandbox"] == ["test.sh", f"input{value}.txt"]
            assert node.ad["OutputSandbox"] == [f"myoutput{value}.txt", f"myerror{value}.txt"]
            assert node.ad["Environment"] == [f"ParameterValue={value}"]
            assert node.isb_files == ("test.sh", f"input{value}.txt")
            for name in ("JobType", "Parameters", "ParameterStart", "ParameterStep"):
                assert name not in node.ad

    def test_appendix_a4_sandbox_is_uploaded_once_to_the_parent(self) -> None:
        job = _expand(_sample("parametric.jdl"))

        expected = ["test.sh", "input100.txt", "input110.txt", "input120.txt"]
        assert job.parent_isb_files == tuple(expected)
        assert job.parent_ad["InputSandbox"] == expected

    def test_appendix_a4_parent_gets_vo_and_the_first_nodes_rank(self) -> None:
        job = _expand(_sample("parametric.jdl"))

        assert job.parent_ad["Type"] == "dag"
        assert job.parent_ad["VirtualOrganisation"] == VO
        assert _expr(job.parent_ad, "Rank") == RANK
        assert "Executable" not in job.parent_ad

    def test_dag_level_attributes_are_not_parametric_every_node_gets_the_dags_value(self) -> None:
        job = _expand(
            'JobType = "parametric"; Executable = "e"; Arguments = "a_PARAM_"; VirtualOrganisation = "vo_PARAM_";'
            ' MyProxyServer = "myproxy_PARAM_.example.org"; ZippedISB = { "isb_PARAM_.tar.gz" };'
            ' NodesCollocation = false; Parameters = 2;'
        )

        dag_level = {"VirtualOrganisation": "vo_PARAM_", "MyProxyServer": "myproxy_PARAM_.example.org",
                     "ZippedISB": ["isb_PARAM_.tar.gz"], "NodesCollocation": False}
        for name, value in dag_level.items():
            assert job.parent_ad[name] == value
            assert [node.ad[name] for node in job.nodes] == [value, value]
        assert [node.ad["Arguments"] for node in job.nodes] == ["a0", "a1"]
        assert job.description.virtual_organisation == "vo_PARAM_"

    def test_a_list_of_names_strings_and_numbers(self) -> None:
        job = _expand(_sample("parametric_list.jdl"))

        assert [node.name for node in job.nodes] == ["Node_Alfa", "Node_beta", "Node_42", "Node_delta_3"]
        node = job.node("Node_beta")
        assert node.ad["Arguments"] == "beta"
        assert node.ad["OutputSandbox"] == ["Std-beta.out", "std-beta.err"]
        assert _expr(node.ad, "Requirements") == 'regexp("beta",other.GlueCEUniqueID)'
        assert node.ad["InputSandbox"] == ["param.jdl", "/tmp/In-beta.txt"]
        assert job.parent_isb_files == (
            "param.jdl", "In-Alfa.txt", "In-beta.txt", "In-42.txt", "In-delta_3.txt",
        )

    def test_a_list_of_strings_with_start_and_step_indexes_the_list(self) -> None:
        job = _expand(
            'JobType = "parametric"; Executable = "e"; Arguments = "_PARAM_";'
            ' Parameters = { "one", "two", "three", "fo.ur/x" }; ParameterStart = 1; ParameterStep = 2;'
        )

        assert [node.name for node in job.nodes] == ["Node_two", "Node_fo_urIx"]
        assert job.nodes[1].ad["Arguments"] == "fo.ur/x"

    def test_a_quote_in_a_value_stays_inside_the_string(self) -> None:
        job = _expand('JobType = "parametric"; Executable = "e"; Arguments = "-v _PARAM_"; Parameters = { "a\\"b" };')

        assert job.nodes[0].ad["Arguments"] == '-v a"b'
        assert job.nodes[0].name == "Node_a_b"

    def test_a_value_that_would_add_attributes_is_refused(self) -> None:
        with pytest.raises(JdlError, match="breaks the JDL"):
            _expand('JobType = "parametric"; Executable = "e"; Foo = _PARAM_; Parameters = { "1; Evil = 2" };')

    @pytest.mark.parametrize("requirements", ["_PARAM_", "other.X == 1 && _PARAM_", "member(_PARAM_, {1})"])
    def test_a_value_substituted_outside_a_string_is_checked_as_the_jdl_is(self, requirements: str) -> None:
        with pytest.raises(JdlExpressionError, match=r"^Node Node_eval_E_: Attribute Requirements calls eval\(\)"):
            _expand(f'JobType = "parametric"; Executable = "e"; E = "true"; Requirements = {requirements};'
                    ' Parameters = { "true", "eval(E)" };')

    def test_a_value_substituted_in_a_string_stays_a_string(self) -> None:
        job = _expand('JobType = "parametric"; Executable = "e"; E = "true"; Arguments = "_PARAM_";'
                      ' Requirements = regexp("_PARAM_", other.X); Parameters = { "eval(E)", "a\\"b" };')

        assert [node.ad["Arguments"] for node in job.nodes] == ["eval(E)", 'a"b']

    def test_a_name_made_by_substitution_is_checked(self) -> None:
        jdl = 'JobType = "parametric"; Executable = "e"; Requirements = A_PARAM_; AX = Requirements;'
        check_expressions(parse_jdl(jdl))  # A_PARAM_ names nothing: no cycle before the substitution
        with pytest.raises(JdlExpressionError, match=r"^Node Node_X: Attribute \w+ depends on itself"):
            _expand(jdl + ' Parameters = { "X" };')

    def test_integer_parameters_default_to_start_0_step_1(self) -> None:
        job = _expand('JobType = "parametric"; Executable = "e"; Parameters = 3;')

        assert [node.name for node in job.nodes] == ["Node_0", "Node_1", "Node_2"]

    def test_step_zero_is_refused(self) -> None:
        with pytest.raises(InvalidJdlAttributeError, match="ParameterStep must be different from zero"):
            _expand('JobType = "parametric"; Executable = "e"; Parameters = 3; ParameterStep = 0;')

    @pytest.mark.parametrize("attribute", ["ParameterStep", "ParameterStart"])
    @pytest.mark.parametrize("value", ["undefined", "error"])
    def test_undefined_or_error_start_or_step_is_refused(self, attribute: str, value: str) -> None:
        # classad2 gives undefined and error as the ints 2 and 1: never a start or a step
        with pytest.raises(JdlError, match=f"^Attribute {attribute} must be an integer, not {value}$"):
            _expand(f'JobType = "parametric"; Executable = "e"; Parameters = 5; {attribute} = {value};')

    def test_too_many_nodes_are_refused_before_expansion(self) -> None:
        with pytest.raises(InvalidArgumentError, match="has 1000000000 nodes, more than the allowed 10000"):
            _expand('JobType = "parametric"; Executable = "e"; Parameters = 1000000000;')

    def test_max_nodes_is_configurable(self) -> None:
        with pytest.raises(InvalidArgumentError, match="more than the allowed 2"):
            _expand('JobType = "parametric"; Executable = "e"; Parameters = 3;', max_nodes=2)

    def test_values_that_sanitise_to_the_same_name_are_refused(self) -> None:
        with pytest.raises(JdlError, match=r"^Duplicated NodeName\(Node_a_b\)$"):
            _expand('JobType = "parametric"; Executable = "e"; Parameters = { "a.b", "a_b" };')

    def test_no_nodes_is_refused(self) -> None:
        with pytest.raises(InvalidArgumentError, match="has no nodes"):
            _expand('JobType = "parametric"; Executable = "e"; Parameters = 3; ParameterStart = 3;')

    @pytest.mark.parametrize(
        ("attributes", "message"),
        [
            ("Parameters = undefined;", "Attribute Parameters must be an integer or a list, not undefined"),
            ("Parameters = error;", "Attribute Parameters must be an integer or a list, not error"),
            ("Parameters = 4; ParameterStart = undefined;",
             "Attribute ParameterStart must be an integer, not undefined"),
            ("Parameters = 4; ParameterStep = error;", "Attribute ParameterStep must be an integer, not error"),
            ('Parameters = { "x", error };', "Attribute Parameters: error is not a string, number or name"),
            ('Parameters = { "x", { undefined } };', "Attribute Parameters: undefined is not a string, number or name"),
        ],
        ids=["parameters-undefined", "parameters-error", "start-undefined", "step-error", "item-error",
             "nested-item-undefined"],
    )
    def test_undefined_and_error_are_not_the_integers_classad2_makes_them(self, attributes: str, message: str) -> None:
        # classad2 gives undefined/error as members of an int enum (2 and 1)
        with pytest.raises(JdlError, match=f"^{message}$"):
            _expand(f'JobType = "parametric"; Executable = "e"; {attributes}')


class TestSharedInputSandbox:
    TEXT = (
        'Type = "collection"; Executable = "run.sh"; InputSandbox = { "run.sh", "data/common.db" };'
        'Nodes = { [ NodeName = "a"; InputSandbox = { root.InputSandbox[0], "a.txt" } ],'
        ' [ NodeName = "b"; InputSandbox = { root.inputsandbox[1], "gsiftp://se.example.org/b.dat" } ],'
        ' [ NodeName = "c" ] };'
    )

    def test_references_resolve_to_the_parents_entries(self) -> None:
        job = _expand(self.TEXT)

        assert job.node("a").ad["InputSandbox"] == ["run.sh", "a.txt"]
        assert job.node("b").ad["InputSandbox"] == ["data/common.db", "gsiftp://se.example.org/b.dat"]
        assert job.node("c").ad["InputSandbox"] == ["run.sh", "data/common.db"]

    def test_each_node_lists_the_files_it_needs(self) -> None:
        job = _expand(self.TEXT)

        assert job.node("a").isb_files == ("run.sh", "a.txt")
        assert job.node("b").isb_files == ("common.db",)
        assert job.node("c").isb_files == ("run.sh", "common.db")

    def test_the_parent_uploads_the_union_once(self) -> None:
        job = _expand(self.TEXT)

        assert job.parent_isb_files == ("run.sh", "common.db", "a.txt")
        assert job.parent_ad["InputSandbox"] == [
            "run.sh", "data/common.db", "a.txt", "gsiftp://se.example.org/b.dat",
        ]

    def test_a_reference_past_the_end_is_refused(self) -> None:
        text = ('Type = "collection"; Executable = "e"; InputSandbox = { "x" }; '
                "Nodes = { [ InputSandbox = { root.InputSandbox[3] } ] };")

        with pytest.raises(JdlError, match=r"^Node Node_0: InputSandbox"):
            _expand(text)

    def test_two_files_with_the_same_name_are_refused(self) -> None:
        text = (
            'Type = "collection"; Executable = "e";'
            ' Nodes = { [ InputSandbox = { "a/x.txt" } ], [ InputSandbox = { "b/x.txt" } ] };'
        )

        with pytest.raises(JdlError, match=r"a/x\.txt and b/x\.txt have the same file name x\.txt"):
            _expand(text)


class TestNodeName:
    @pytest.mark.parametrize(
        ("value", "name"),
        [("1.5", "1_5"), ("a/b", "aIb"), ("*", "-"), ("$HOME", "_S_HOME"), ("é x", "__x")],
    )
    def test_sanitising(self, value: str, name: str) -> None:
        assert node_name(value) == name


class TestExpandedSize:
    """A node carries what it inherits, a parametric node the whole JDL: the nodes' JDL
    together is bounded (16 MiB by default) before any node is made."""

    PAD = "x" * 90_000  # 200 nodes of it: 18 MB

    @pytest.fixture
    def made(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """The nodes substituted (parametric) or inherited into (collections, DAGs)."""
        made: list[str] = []
        parse, inherit = parametric.parse_jdl, compound._inherit

        def substituted(text: str) -> classad2.ClassAd:
            made.append("substituted")
            return parse(text)

        def inherited(node: classad2.ClassAd, parent: classad2.ClassAd) -> None:
            made.append("inherited")
            inherit(node, parent)

        monkeypatch.setattr(parametric, "parse_jdl", substituted)
        monkeypatch.setattr(compound, "_inherit", inherited)
        return made

    def test_a_parametric_job_of_a_big_jdl_is_refused_before_any_value_is_substituted(
            self, made: list[str]) -> None:
        ad = parse_jdl(f'[ JobType = "parametric"; Executable = "/bin/echo"; Arguments = "_PARAM_";'
                       f' Parameters = 200; Pad = "{self.PAD}" ]')

        with pytest.raises(InvalidArgumentError) as info:
            expand(ad)

        assert info.value.code == 1225
        assert info.value.message.startswith("The parametric job's nodes would hold 180")
        assert info.value.message.endswith(" bytes of JDL, more than the allowed 16777216")
        assert made == []

    @pytest.mark.parametrize("kind", ["collection", "dag"])
    def test_nodes_inheriting_a_big_attribute_are_refused_before_any_inherits(
            self, made: list[str], kind: str) -> None:
        nodes = ", ".join(f'[ NodeName = "n{index}" ]' for index in range(200))
        ad = parse_jdl(f'[ Type = "{kind}"; Executable = "/bin/echo"; Arguments = "{self.PAD}";'
                       f" Nodes = {{ {nodes} }} ]")

        with pytest.raises(InvalidArgumentError) as info:
            expand(ad)

        what = "DAG" if kind == "dag" else kind
        assert info.value.message.startswith(f"The {what} job's nodes would hold 180")
        assert info.value.message.endswith(" bytes of JDL, more than the allowed 16777216")
        assert made == []

    def test_references_to_the_parent_input_sandbox_count_what_they_resolve_to(self, made: list[str]) -> None:
        references = ", ".join(["root.InputSandbox[0]"] * 200)
        ad = parse_jdl(f'[ Type = "collection"; InputSandbox = {{ "{self.PAD}" }};'
                       f' Nodes = {{ [ Executable = "/bin/echo"; InputSandbox = {{ {references} }} ] }} ]')

        with pytest.raises(InvalidArgumentError, match=r"^The collection job's nodes would hold 180"):
            expand(ad)
        assert made == []

    def test_the_limit_is_the_callers(self) -> None:
        """10 nodes of 65 characters: 650."""
        ad = parse_jdl('[ JobType = "parametric"; Executable = "/bin/echo"; Parameters = 10 ]')

        job = expand(ad, max_bytes=650)
        assert job is not None and len(job.nodes) == 10
        with pytest.raises(InvalidArgumentError) as info:
            expand(ad, max_bytes=649)
        assert info.value.message == "The parametric job's nodes would hold 650 bytes of JDL, more than the allowed 649"


class TestNodeNames:
    @pytest.mark.parametrize("sample", ["collection.jdl", "collection_31669.jdl", "dag.jdl", "parametric.jdl",
                                        "parametric_list.jdl"])
    def test_the_names_expand_gives_in_node_order(self, sample: str) -> None:
        ad = parse_jdl(_sample(sample))
        assert compound.node_names(ad) == tuple(node.name for node in _expand(_sample(sample)).nodes)
        assert [node.index for node in _expand(_sample(sample)).nodes] == list(range(len(compound.node_names(ad))))

    def test_none_for_a_simple_job(self) -> None:
        assert compound.node_names(parse_jdl(_sample("test_job.jdl"))) is None

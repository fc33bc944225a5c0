"""``wmproxy templates``: JDL templates from the service (getJobTemplate, getDAGTemplate,
getCollectionTemplate, getIntParametricJobTemplate, getStringParametricJobTemplate)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from wmproxy.cli import common
from wmproxy.client import GraphNode
from wmproxy.jdl.graph import CycleError, topological_order

F = TypeVar("F", bound=Callable[..., Any])
JOB_TYPES = ("NORMAL", "PARAMETRIC", "INTERACTIVE", "MPI")


def _expressions(func: F) -> F:
    func = click.option("--rank", default="-other.GlueCEStateEstimatedResponseTime", show_default=True,
                        help="Rank expression.")(func)
    return click.option("--requirements", default="true", show_default=True, help="Requirements expression.")(func)


def _print(template: str, endpoint: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"result": "success", "endpoint": endpoint, "jdl": template}))
    else:
        common.echo(template.rstrip("\n"))


@click.group("templates")
def templates() -> None:
    """Print a JDL template made by the service."""


@templates.command("job")
@click.option("-t", "--type", "job_types", multiple=True, type=click.Choice(JOB_TYPES, case_sensitive=False),
              help="Job type (repeatable; default NORMAL).")
@click.option("--executable", required=True, help="Executable of the template.")
@click.option("--arguments", default="", help="Arguments of the template.")
@_expressions
@common.common_options
@common.reports_errors
def job(job_types: tuple[str, ...], executable: str, arguments: str, requirements: str, rank: str,
        endpoint: str | None, as_json: bool) -> None:
    """A normal, parametric, interactive or MPI job (getJobTemplate)."""
    env = common.Environment.load(endpoint)
    client = common.make_client(env)
    template = client.get_job_template(job_types or ("NORMAL",), executable, arguments, requirements, rank)
    _print(template, client.endpoint, as_json)


def dependency_graph(nodes: tuple[str, ...], dependencies: tuple[tuple[str, str], ...]) -> GraphNode:
    """The ``GraphStructType`` tree of getDAGTemplate: an unnamed root over the nodes without
    parents, each node over the nodes that depend on it.

    Raises:
        click.UsageError: no node at all, or a dependency cycle.
    """
    names = list(dict.fromkeys([*nodes, *(n for pair in dependencies for n in pair)]))
    if not names:
        raise click.UsageError("give at least one --node or --dependency")
    children: dict[str, list[str]] = {n: [] for n in names}
    has_parent: set[str] = set()
    for parent, child in dependencies:
        if child not in children[parent]:
            children[parent].append(child)
        has_parent.add(child)

    try:
        topological_order(names, dependencies)
    except CycleError as exc:
        raise click.UsageError(f"dependency cycle: {exc}") from None

    def build(name: str) -> GraphNode:
        return GraphNode(name, tuple(build(c) for c in children[name]))

    return GraphNode(None, tuple(build(n) for n in names if n not in has_parent))


@templates.command("dag")
@click.option("--node", "nodes", metavar="NAME", multiple=True, help="A node (repeatable).")
@click.option("--dependency", "dependencies", metavar="PARENT CHILD", nargs=2, multiple=True,
              help="CHILD runs after PARENT (repeatable).")
@_expressions
@common.common_options
@common.reports_errors
def dag(nodes: tuple[str, ...], dependencies: tuple[tuple[str, str], ...], requirements: str, rank: str,
        endpoint: str | None, as_json: bool) -> None:
    """A DAG of the given nodes and dependencies (getDAGTemplate)."""
    graph = dependency_graph(nodes, dependencies)
    env = common.Environment.load(endpoint)
    client = common.make_client(env)
    _print(client.get_dag_template(graph, requirements, rank), client.endpoint, as_json)


@templates.command("collection")
@click.option("-n", "--nodes", "number", type=click.IntRange(min=1), required=True, help="Number of nodes.")
@_expressions
@common.common_options
@common.reports_errors
def collection(number: int, requirements: str, rank: str, endpoint: str | None, as_json: bool) -> None:
    """A collection of N nodes (getCollectionTemplate)."""
    env = common.Environment.load(endpoint)
    client = common.make_client(env)
    _print(client.get_collection_template(number, requirements, rank), client.endpoint, as_json)


@templates.command("parametric")
@click.option("--attribute", "attributes", metavar="NAME", multiple=True, required=True,
              help='An attribute set to "_PARAM_" (repeatable).')
@click.option("--param", type=int, help="Integer parameters: Parameters = N.")
@click.option("--start", type=int, default=0, show_default=True, help="ParameterStart (with --param).")
@click.option("--step", type=int, default=1, show_default=True, help="ParameterStep (with --param).")
@click.option("--value", "values", metavar="V", multiple=True, help="String parameters: one value (repeatable).")
@_expressions
@common.common_options
@common.reports_errors
def parametric(attributes: tuple[str, ...], param: int | None, start: int, step: int, values: tuple[str, ...],
               requirements: str, rank: str, endpoint: str | None, as_json: bool) -> None:
    """A parametric job over integers (--param) or strings (--value) (get*ParametricJobTemplate)."""
    if (param is None) == (not values):
        raise click.UsageError("give exactly one of --param N and --value V...")
    env = common.Environment.load(endpoint)
    client = common.make_client(env)
    if param is not None:
        template = client.get_int_parametric_job_template(attributes, param, start, step, requirements, rank)
    else:
        template = client.get_string_parametric_job_template(attributes, values, requirements, rank)
    _print(template, client.endpoint, as_json)

"""The JDL layer: gLite Job Description Language on top of classad2 (no own parser).

It owns:

* parsing JDL text strictly into a ClassAd (:func:`parse_jdl`);
* the bound on what evaluating its expressions may cost, checked before the service
  evaluates any (``expressions``: :func:`check_expressions`), and gLite's ``anyMatch``/``allMatch``,
  which classad2 lacks, evaluated under a budget (``glite_functions``);
* typed attribute access (``attributes``) and sandbox entries (``sandbox``);
* the registration checks of the reference service and the typed
  :class:`JobDescription` (``description``; :func:`describe` for any JDL);
* DAG graphs (``graph``: the one topological sort), parametric expansion
  (``parametric``) and collection/DAG expansion into validated node ads
  (``compound``: :func:`expand`, :func:`dag_order`; ``wmproxy-behaviour.md`` §9.4, §9.5);
* the registered JDL with the server-set attributes, built in one pass from the job's
  area (``registered``: :func:`registered_ad`) and the one-attribute-per-line text of
  ``JDLOriginal``/``JDLToStart`` (:func:`jdl_lines`);
* templates (``templates``) and JSDL (``jsdl``).

Modules import each other in that order only (a test checks the graph is acyclic).

Pure: no I/O, database, SOAP or network; it imports only ``wmproxy.errors``/``domain``.
"""

from __future__ import annotations

from wmproxy.jdl.compound import CompoundJob, NodeSpec, dag_order, describe, expand, node_count
from wmproxy.jdl.description import (
    JobDescription,
    input_sandbox_files,
    read_description,
)
from wmproxy.jdl.expressions import check_expressions
from wmproxy.jdl.parse import parse_jdl
from wmproxy.jdl.registered import (
    RegisteredArea,
    check_virtual_organisation,
    isb_file_names,
    jdl_lines,
    registered_ad,
)
from wmproxy.jdl.sandbox import is_remote_uri

__all__ = [
    "CompoundJob",
    "JobDescription",
    "NodeSpec",
    "RegisteredArea",
    "check_expressions",
    "check_virtual_organisation",
    "dag_order",
    "describe",
    "expand",
    "input_sandbox_files",
    "is_remote_uri",
    "isb_file_names",
    "jdl_lines",
    "node_count",
    "parse_jdl",
    "read_description",
    "registered_ad",
]

"""The JDL layer: gLite Job Description Language on top of classad2 (no own parser).

It owns:

* parsing JDL text strictly into a ClassAd (:func:`parse_jdl`);
* the registration checks of the reference service and the typed
  :class:`JobDescription` (:func:`describe`);
* the registered JDL with the server-set attributes (:func:`registered_ad`) and the
  one-attribute-per-line text of ``JDLOriginal``/``JDLToStart`` (:func:`jdl_lines`);
* which ``InputSandbox`` entries the client must upload (:func:`input_sandbox_files`);
* collection, DAG and parametric expansion into validated node ads
  (:func:`expand`, :func:`dag_order`; ``wmproxy-behaviour.md`` §9.4, §9.5).

Pure: no I/O, database, SOAP or network; it imports only ``wmproxy.errors``/``domain``.
"""

from __future__ import annotations

from wmproxy.jdl.compound import CompoundJob, NodeSpec, dag_order, expand
from wmproxy.jdl.description import JobDescription, describe
from wmproxy.jdl.parse import parse_jdl
from wmproxy.jdl.registered import input_sandbox_files, is_remote_uri, jdl_lines, registered_ad

__all__ = [
    "CompoundJob",
    "JobDescription",
    "NodeSpec",
    "dag_order",
    "describe",
    "expand",
    "input_sandbox_files",
    "is_remote_uri",
    "jdl_lines",
    "parse_jdl",
    "registered_ad",
]

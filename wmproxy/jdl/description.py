"""Validated, typed view of a job's JDL (``wmproxy-behaviour.md`` §3.1 steps 7-8, 12).

:func:`describe` applies the checks the reference makes at registration and returns a
:class:`JobDescription`. Collections, DAGs and parametric jobs are validated by
expanding them (:func:`wmproxy.jdl.compound.expand`, §9.4, §9.5), which describes
every node; their description is that of the DAG-level ad.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import classad2

from wmproxy.errors import InvalidArgumentError, InvalidJdlAttributeError, JdlError

JOB_TYPES_OF_TYPE = ("job", "dag", "collection")
KNOWN_JOB_TYPES = (
    "normal", "interactive", "mpich", "parametric", "partitionable", "checkpointable",
)
INTERACTIVE_ATTRIBUTES = ("ListenerHost", "ListenerPort", "ListenerPipeName")

_ENVIRONMENT_ENTRY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=", re.ASCII)


@dataclass(frozen=True)
class JobDescription:
    """What the service needs to know about a simple job's JDL.

    Attributes:
        type: ``Type``, lowercase: ``job``, ``dag`` or ``collection``.
        job_type: ``JobType``, lowercase (``normal``, ``interactive``, ``mpich``...).
        executable: ``Executable``.
        arguments: ``Arguments``, ``""`` when absent.
        std_input, std_output, std_error: ``StdInput``/``StdOutput``/``StdError``.
        input_sandbox: ``InputSandbox`` entries as written (file names, paths, URIs).
        output_sandbox: ``OutputSandbox`` file names.
        environment: ``Environment`` entries, each ``NAME=value``.
        virtual_organisation: ``VirtualOrganisation`` as written.
        myproxy_server: ``MyProxyServer``; ``None`` when absent or ``""``.
        nodes: node names of a collection, DAG or parametric job in node order;
            ``()`` for a simple job.
    """

    type: str = "job"
    job_type: str = "normal"
    executable: str = ""
    arguments: str = ""
    std_input: str | None = None
    std_output: str | None = None
    std_error: str | None = None
    input_sandbox: tuple[str, ...] = ()
    output_sandbox: tuple[str, ...] = ()
    environment: tuple[str, ...] = ()
    virtual_organisation: str | None = None
    myproxy_server: str | None = None
    nodes: tuple[str, ...] = ()


def describe(ad: classad2.ClassAd) -> JobDescription:
    """Validate a parsed JDL as jobRegister does and return its description.

    Implements ``wmproxy-behaviour.md`` §3.1 steps 7 and 8 (``Type``, ``JobType``) and
    the mandatory-attribute and type checks of the JDL library. Attribute names are
    case-insensitive. A single string is accepted where a list of strings is
    expected (``InputSandbox``, ``OutputSandbox``, ``Environment``).

    A collection, DAG or parametric job is expanded with its default node limit and
    every node is validated; the result describes the DAG-level ad (``Executable`` may
    be ``""`` there; ``input_sandbox`` is the union of all nodes' entries) and lists
    the node names. Use :func:`wmproxy.jdl.compound.expand` to get the nodes.

    Args:
        ad: the JDL as returned by :func:`wmproxy.jdl.parse_jdl`; not modified.

    Returns:
        The job's :class:`JobDescription`.

    Raises:
        InvalidJdlAttributeError: ``Type`` is not job/dag/collection ("Invalid Job
            Type: <type>"), or ``JobType`` lists more than one type ("Composite Job
            Type not yet supported").
        InvalidArgumentError: a compound job that cannot be expanded (no nodes, too
            many, nested, nodes given by ``file``; see ``compound.expand``).
        JdlError: partitionable/checkpointable jobs ("... Jobs are Deprecated"), a
            missing mandatory attribute ("Mandatory attribute <name> not set"), an
            attribute of the wrong type (the message names it), an ``Environment``
            entry that is not ``NAME=value``, or an existing ``edg_jobid`` ("jobid
            attribute already exists"); for a compound job also a bad node list,
            dependency or parameter, and any node's error prefixed ``Node <name>: ``.
    """
    job_kind = _job_kind(ad)
    job_type = _job_type(ad) if job_kind == "job" else "normal"
    if job_kind != "job" or job_type == "parametric":
        return _describe_compound(ad, job_kind, job_type)
    _check_job_type(ad, job_type)
    if "edg_jobid" in ad:
        raise JdlError("jobid attribute already exists")

    executable = _string(ad, "Executable")
    if executable is None:
        raise JdlError("Mandatory attribute Executable not set")
    if not executable:
        raise JdlError("Attribute Executable must not be empty")
    environment = string_list(ad, "Environment")
    for entry in environment:
        if not _ENVIRONMENT_ENTRY.match(entry):
            raise JdlError(f"Attribute Environment: entry {entry!r} is not of the form NAME=value")

    return JobDescription(
        type=job_kind,
        job_type=job_type,
        executable=executable,
        arguments=_string(ad, "Arguments") or "",
        std_input=_string(ad, "StdInput"),
        std_output=_string(ad, "StdOutput"),
        std_error=_string(ad, "StdError"),
        input_sandbox=_file_list(ad, "InputSandbox"),
        output_sandbox=_file_list(ad, "OutputSandbox"),
        environment=environment,
        virtual_organisation=_string(ad, "VirtualOrganisation"),
        myproxy_server=_string(ad, "MyProxyServer") or None,
    )


def _describe_compound(ad: classad2.ClassAd, job_kind: str, job_type: str) -> JobDescription:
    """Validate a collection, DAG or parametric job by expanding it (§9.4, §9.5)."""
    from wmproxy.jdl.compound import expand  # noqa: PLC0415 - compound imports this module

    job = expand(ad)
    assert job is not None  # the caller checked the kind
    parent = job.parent_ad
    return JobDescription(
        type=job_kind,
        job_type=job_type,
        executable=_string(parent, "Executable") or "",
        arguments=_string(parent, "Arguments") or "",
        std_input=_string(parent, "StdInput"),
        std_output=_string(parent, "StdOutput"),
        std_error=_string(parent, "StdError"),
        input_sandbox=_file_list(parent, "InputSandbox"),
        output_sandbox=_file_list(parent, "OutputSandbox"),
        environment=string_list(parent, "Environment"),
        virtual_organisation=_string(parent, "VirtualOrganisation"),
        myproxy_server=_string(parent, "MyProxyServer") or None,
        nodes=tuple(node.name for node in job.nodes),
    )


def _job_kind(ad: classad2.ClassAd) -> str:
    """``Type``, lowercase, default ``job`` (§3.1 step 7)."""
    if "Type" not in ad:
        return "job"
    value = ad["Type"]
    if not isinstance(value, str) or value.lower() not in JOB_TYPES_OF_TYPE:
        shown = value if isinstance(value, str) else str(ad.lookup("Type")).strip()
        raise InvalidJdlAttributeError(f"Invalid Job Type: {shown}")
    return value.lower()


def _job_type(ad: classad2.ClassAd) -> str:
    """``JobType``, lowercase, default ``normal`` (§3.1 step 8)."""
    if "JobType" not in ad:
        return "normal"
    value = ad["JobType"]
    if isinstance(value, list):
        if len(value) > 1:
            raise InvalidJdlAttributeError("Composite Job Type not yet supported")
        if not value:
            raise JdlError("Attribute JobType must not be an empty list")
        value = value[0]
    if not isinstance(value, str):
        raise JdlError("Attribute JobType must be a string")
    job_type = value.lower()
    if job_type not in KNOWN_JOB_TYPES:
        raise JdlError(f"Attribute JobType has an unknown value: {value}")
    return job_type


def _check_job_type(ad: classad2.ClassAd, job_type: str) -> None:
    """Deprecated job types and the interactive job's mandatory attributes (§3.1 step 8)."""
    if job_type == "partitionable":
        raise JdlError("Partitionable Jobs are Deprecated")
    if job_type == "checkpointable":
        raise JdlError("Checkpointable Jobs are Deprecated")
    if job_type == "interactive":
        for name in INTERACTIVE_ATTRIBUTES:
            if name not in ad:
                raise JdlError(f"Mandatory attribute {name} not set")


def _string(ad: classad2.ClassAd, name: str) -> str | None:
    """A string-literal attribute, ``None`` when absent.

    Raises:
        JdlError: the attribute is not a string literal (``Executable = foo`` is an
            attribute reference, ``"a" + "b"`` an expression; both are refused).
    """
    if name not in ad:
        return None
    value = ad[name]
    if not isinstance(value, str):
        raise JdlError(
            f"Attribute {name} must be a string, not {_shown(ad, name)}"
        )
    return value


def string_list(ad: classad2.ClassAd, name: str) -> tuple[str, ...]:
    """A list-of-strings attribute; a single string counts as a one-element list.

    Args:
        ad: the JDL.
        name: the attribute, case-insensitive.

    Returns:
        The strings, ``()`` when the attribute is absent.

    Raises:
        JdlError: the value is neither a string nor a list of string literals.
    """
    if name not in ad:
        return ()
    value: Any = ad[name]
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise JdlError(
        f"Attribute {name} must be a string or a list of strings, not {_shown(ad, name)}"
    )


def _file_list(ad: classad2.ClassAd, name: str) -> tuple[str, ...]:
    """A sandbox file list: strings, none of them empty."""
    files = string_list(ad, name)
    if any(not entry.strip() for entry in files):
        raise JdlError(f"Attribute {name} contains an empty file name")
    return files


def _shown(ad: classad2.ClassAd, name: str) -> str:
    """The attribute's expression on one line, for error messages."""
    return " ".join(str(ad.lookup(name)).split())

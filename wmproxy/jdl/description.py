"""Validated, typed view of a simple job's JDL (``wmproxy-behaviour.md`` §3.1 steps 7-8, 12).

:func:`describe_simple` applies the checks the reference makes at registration and
returns a :class:`JobDescription`; :func:`read_description` reads the same fields from
an ad that has already been registered (it carries ``edg_jobid``). Collections, DAGs
and parametric jobs are described by :mod:`wmproxy.jdl.compound`, which builds on
this module (never the other way round).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

import classad2

from wmproxy.errors import JdlError
from wmproxy.jdl.attributes import (
    AdView,
    expiry_time,
    file_list,
    integer,
    is_number,
    job_kind,
    job_type,
    string_list,
    string_value,
    text,
)
from wmproxy.jdl.sandbox import (
    URI_SCHEME,
    check_input_sandbox_name,
    check_work_dir_name,
    has_wildcards,
    local_file_names,
    uri_file_name,
)

INTERACTIVE_ATTRIBUTES = ("ListenerHost", "ListenerPort", "ListenerPipeName")
#: The largest ``CpuNumber`` registration accepts (a count of CPUs: a positive 32-bit integer).
CPU_NUMBER_MAX = 2**31 - 1
WORK_DIR_ATTRIBUTES = ("StdInput", "StdOutput", "StdError")
#: Resubmission counts: integer literals (the JDL library's type for them).
RETRY_COUNT_ATTRIBUTES = ("RetryCount", "ShallowRetryCount")
#: Attributes the JDL library types boolean (``JdlAttributeList.cpp``): ``true`` or ``false``
#: literals; ``"true"`` would silently mean false.
BOOLEAN_ATTRIBUTES = ("PerusalFileEnable", "AllowZippedISB")

_ENVIRONMENT_ENTRY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=", re.ASCII)


@dataclass(frozen=True)
class JobDescription:
    """What the service needs to know about a job's JDL.

    Attributes:
        type: ``Type``, lowercase: ``job``, ``dag`` or ``collection``.
        job_type: ``JobType``, lowercase (``normal``, ``interactive``, ``mpich``...).
        executable: ``Executable``.
        arguments: ``Arguments``, ``""`` when absent.
        std_input, std_output, std_error: ``StdInput``/``StdOutput``/``StdError``.
        input_sandbox: ``InputSandbox`` entries as written (file names, paths, URIs).
        output_sandbox: ``OutputSandbox`` file names.
        output_sandbox_dest: ``OutputSandboxDestURI`` as written (see :attr:`output_names`).
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
    output_sandbox_dest: tuple[str, ...] = ()

    @property
    def output_names(self) -> tuple[str, ...]:
        """The file name each ``OutputSandbox`` entry is stored under in the job's output area
        (§3.2 step 8c): the last segment of its ``OutputSandboxDestURI`` entry (percent-decoded,
        :func:`~wmproxy.jdl.sandbox.uri_file_name`; registration accepts no destination
        elsewhere), a relative entry as written, else the entry's base name. An entry with
        wildcards has no single name: its matches keep theirs (``""`` here)."""
        names: list[str] = []
        for index, entry in enumerate(self.output_sandbox):
            dest = self.output_sandbox_dest[index] if index < len(self.output_sandbox_dest) else ""
            if has_wildcards([entry]):
                names.append("")
            elif URI_SCHEME.match(dest):
                names.append(uri_file_name(dest.rsplit("/", 1)[-1]))
            else:
                names.append(dest or posixpath.basename(entry))
        return tuple(names)


def is_simple(ad: classad2.ClassAd) -> bool:
    """Whether the JDL is a simple job (not a collection, DAG or parametric job).

    Raises:
        InvalidJdlAttributeError, JdlError: bad ``Type`` or ``JobType`` (see
            :func:`wmproxy.jdl.attributes.job_kind`, :func:`~wmproxy.jdl.attributes.job_type`).
    """
    return job_kind(ad) == "job" and job_type(ad) != "parametric"


def describe_simple(ad: classad2.ClassAd | AdView, *, parametric: bool = False) -> JobDescription:
    """Validate a simple job's JDL as jobRegister does and return its description.

    Implements ``wmproxy-behaviour.md`` §3.1 steps 7 and 8 (``Type``, ``JobType``) and
    the mandatory-attribute and type checks of the JDL library. Attribute names are
    case-insensitive. A single string is accepted where a list of strings is
    expected (``InputSandbox``, ``OutputSandbox``, ``Environment``).

    Args:
        ad: the JDL as returned by :func:`wmproxy.jdl.parse_jdl`, or an
            :class:`~wmproxy.jdl.attributes.AdView` of it; not modified.
        parametric: ``ad`` is a node of a parametric job: its relative ``StdInput`` need
            not be an ``InputSandbox`` file (the JDL library checked the parametric JDL, whose
            ``StdInput`` holds ``_PARAM_``, and skipped that check for it).

    Returns:
        The job's :class:`JobDescription`.

    Raises:
        InvalidJdlAttributeError: ``Type`` is not job/dag/collection ("Invalid Job
            Type: <type>"), or ``JobType`` lists more than one type ("Composite Job
            Type not yet supported").
        InvalidArgumentError: ``StdInput``/``StdOutput``/``StdError`` or an
            ``OutputSandbox`` name is absolute or has a ``..`` component or names what the
            service keeps in the work directory (:func:`~wmproxy.jdl.sandbox.check_work_dir_name`),
            or an ``InputSandbox`` entry would be staged there under such a name
            (:func:`~wmproxy.jdl.sandbox.check_input_sandbox_name`: ``user.proxy``, ``.wmproxy``);
            the message names the attribute; or the JDL is a compound job (use
            :func:`wmproxy.jdl.describe`).
        JdlError: partitionable/checkpointable jobs ("... Jobs are Deprecated"), a
            missing mandatory attribute ("Mandatory attribute <name> not set"), an
            attribute of the wrong type (the message names it), an ``ExpiryTime`` that
            is not a number of seconds in range (:func:`~wmproxy.jdl.attributes.expiry_time`),
            a ``CpuNumber`` that is not an integer from 1 to :data:`CPU_NUMBER_MAX`, a
            ``RetryCount`` or ``ShallowRetryCount`` that is not an integer literal (``"3"``,
            ``2.5``, ``undefined``: each would allow no resubmission), an ``Environment``
            entry that is not ``NAME=value``, an existing ``edg_jobid`` ("jobid attribute
            already exists"), a ``PerusalFileEnable``/``AllowZippedISB``/``PerusalTimeInterval``
            of the wrong type (:func:`check_typed_attributes`), a relative ``StdInput`` that
            is not the file name of an ``InputSandbox`` entry (not for a parametric node), or
            an ``OutputSandbox`` the job could not give back as written
            (:func:`check_output_sandbox`).
    """
    ad = AdView.of(ad)  # some thirty attributes asked for, most absent
    if not is_simple(ad):
        raise JdlError("A collection, DAG or parametric job is not a simple job")
    _check_job_type(ad, job_type(ad))
    if "edg_jobid" in ad:
        raise JdlError("jobid attribute already exists")
    description = read_description(ad)
    if "Executable" not in ad:
        raise JdlError("Mandatory attribute Executable not set")
    if not description.executable:
        raise JdlError("Attribute Executable must not be empty")
    expiry_time(ad)
    _check_cpu_number(ad)
    for attribute in RETRY_COUNT_ATTRIBUTES:
        integer(ad, attribute, 0)
    check_typed_attributes(ad)
    for entry in description.environment:
        if not _ENVIRONMENT_ENTRY.match(entry):
            raise JdlError(f"Attribute Environment: entry {entry!r} is not of the form NAME=value")
    for attribute, value in zip(
        WORK_DIR_ATTRIBUTES, (description.std_input, description.std_output, description.std_error), strict=True
    ):
        if value is not None:
            check_work_dir_name(attribute, value)
    for entry in description.input_sandbox:
        check_input_sandbox_name(entry)
    if description.std_input is not None and not parametric:
        _check_std_input(description.std_input, description.input_sandbox)
    for name in description.output_sandbox:
        check_work_dir_name("OutputSandbox", name)
    check_output_sandbox(description.output_sandbox, description.output_sandbox_dest)
    return description


def check_typed_attributes(ad: classad2.ClassAd) -> None:
    """The JDL library's types of the perusal and zipped-sandbox attributes (``JdlAttributeList.cpp``:
    ``PerusalFileEnable`` and ``AllowZippedISB`` boolean, ``PerusalTimeInterval`` integer; a
    negative interval refused). A value of another type (``"true"``, ``2000.0``) was read as
    absent: perusal off, the minimum interval.

    Raises:
        JdlError: the message names the attribute and its value.
    """
    for attribute in BOOLEAN_ATTRIBUTES:
        if attribute in ad and not isinstance(ad[attribute], bool):
            raise JdlError(f"Attribute {attribute} must be a boolean (true or false), not {text(ad, attribute)}")
    if integer(ad, "PerusalTimeInterval", 0) < 0:
        raise JdlError(f"Attribute PerusalTimeInterval must be a number of seconds from 0, "
                       f"not {text(ad, 'PerusalTimeInterval')}")


def check_output_sandbox(files: tuple[str, ...], destinations: tuple[str, ...]) -> None:
    """``OutputSandbox`` and ``OutputSandboxDestURI`` as the JDL library checks them
    (``JobAd::checkSemantic``): no two entries with the same file name (one output area holds
    them: ``a/res.txt`` and ``b/res.txt`` would give back one file), no ``OutputSandboxDestURI``
    with wildcards in ``OutputSandbox`` (their matches have no destination each), and one
    destination per entry; nor two entries stored under one name
    (:attr:`JobDescription.output_names`: ``OutputSandboxDestURI = {"x", "x"}``).

    Raises:
        JdlError: the message names the entries.
    """
    seen: dict[str, str] = {}
    for entry in files:
        if has_wildcards([entry]):
            continue
        name = posixpath.basename(entry)
        if name in seen:
            raise JdlError(f"Attribute OutputSandbox: entries {seen[name]!r} and {entry!r} have the same "
                           f"file name {name!r}; the job's output sandbox can hold only one of them")
        seen[name] = entry
    if not destinations:
        return
    if has_wildcards(files):
        raise JdlError("Attribute OutputSandboxDestURI cannot be used with wildcards in OutputSandbox "
                       "(use OutputSandboxBaseDestURI)")
    if len(destinations) != len(files):
        raise JdlError(f"OutputSandbox and OutputSandboxDestURI cardinalities are different "
                       f"({len(files)} and {len(destinations)} entries)")
    stored: dict[str, str] = {}
    for entry, name in zip(files, JobDescription(output_sandbox=files, output_sandbox_dest=destinations)
                           .output_names, strict=True):
        if name in stored:
            raise JdlError(f"Attribute OutputSandboxDestURI: OutputSandbox entries {stored[name]!r} and {entry!r} "
                           f"would both be stored as {name!r}")
        stored[name] = entry


def _check_std_input(std_input: str, input_sandbox: tuple[str, ...]) -> None:
    """A relative ``StdInput`` (the only kind :func:`check_work_dir_name` leaves) is a file the
    job's input sandbox brings into its work directory: the file name of a local ``InputSandbox``
    entry (``JobAd::checkSemantic``, "StdInput (inside InputSandbox)"). Without it every attempt
    of the job fails before its payload starts."""
    if std_input not in local_file_names(input_sandbox):
        raise JdlError(f"Attribute StdInput: {std_input!r} must be inside InputSandbox (the file name of one "
                       "of its entries): the job reads its standard input from its input sandbox")


def read_description(ad: classad2.ClassAd) -> JobDescription:
    """The typed fields of a JDL without the registration checks.

    For ads already checked by :func:`describe_simple`, such as the registered JDL
    (which carries ``edg_jobid``) or the DAG-level ad of a compound job (no
    ``Executable``). ``type`` and ``job_type`` are read as written.

    Raises:
        InvalidJdlAttributeError, JdlError: an attribute of the wrong type.
    """
    return JobDescription(
        type=job_kind(ad),
        job_type=job_type(ad),
        executable=string_value(ad, "Executable") or "",
        arguments=string_value(ad, "Arguments") or "",
        std_input=string_value(ad, "StdInput"),
        std_output=string_value(ad, "StdOutput"),
        std_error=string_value(ad, "StdError"),
        input_sandbox=file_list(ad, "InputSandbox"),
        output_sandbox=file_list(ad, "OutputSandbox"),
        output_sandbox_dest=string_list(ad, "OutputSandboxDestURI"),
        environment=string_list(ad, "Environment"),
        virtual_organisation=string_value(ad, "VirtualOrganisation"),
        myproxy_server=string_value(ad, "MyProxyServer") or None,
    )


def input_sandbox_files(description: JobDescription) -> list[str]:
    """The file names the client must upload into the job's input area (§3.4, §4.1).

    Returns:
        File names of the local (non-remote) ``InputSandbox`` entries, in JDL order,
        each once.
    """
    return local_file_names(description.input_sandbox)


def _check_job_type(ad: classad2.ClassAd, kind: str) -> None:
    """Deprecated job types and the interactive job's mandatory attributes (§3.1 step 8)."""
    if kind == "partitionable":
        raise JdlError("Partitionable Jobs are Deprecated")
    if kind == "checkpointable":
        raise JdlError("Checkpointable Jobs are Deprecated")
    if kind == "interactive":
        for name in INTERACTIVE_ATTRIBUTES:
            if name not in ad:
                raise JdlError(f"Mandatory attribute {name} not set")


def _check_cpu_number(ad: classad2.ClassAd) -> None:
    """``CpuNumber``, when given, is an integer literal from 1 to :data:`CPU_NUMBER_MAX`
    (a literal beyond 64 bits is refused by :func:`wmproxy.jdl.parse.parse_jdl`)."""
    if "CpuNumber" not in ad:
        return
    value = ad["CpuNumber"]
    if not is_number(value) or not isinstance(value, int) or not 1 <= value <= CPU_NUMBER_MAX:
        raise JdlError(f"Attribute CpuNumber must be an integer from 1 to {CPU_NUMBER_MAX}, "
                       f"not {text(ad, 'CpuNumber')}")

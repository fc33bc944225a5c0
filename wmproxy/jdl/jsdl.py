"""JSDL 1.0 → JDL for jobRegisterJSDL, jobSubmitJSDL and jobListMatchJSDL (§12).

The reference cut the ``<jsdl:JobDescription>`` text out of the raw request (so only
the literal prefix ``jsdl:`` worked) and ran an XSLT that was never published. Here the
``JobDefinition`` is read as an XML tree by namespace, whatever its prefixes, and mapped
element by element onto a JDL. Anything the mapping cannot honour is refused, every such
element in one message, instead of being dropped silently.

Namespaces: JSDL ``http://schemas.ggf.org/jsdl/2005/11/jsdl``, JSDL-POSIX
``.../2005/11/jsdl-posix`` and the HPC Basic Profile application
``.../2006/07/jsdl-hpcpa`` (HPCProfileApplication, read like POSIXApplication).

Mapping (Glue 1.x attributes of the CE the job is matched against, via ``other.``):

============================================  ==============================================
JSDL                                          JDL
============================================  ==============================================
JobIdentification/JobName                     ``JobName = "<name>"`` (informative attribute)
JobIdentification/Description, JobAnnotation  ignored (informative)
Application/ApplicationName                   ignored (descriptive)
Application/ApplicationVersion, Description   ignored (descriptive)
POSIXApplication/Executable                   ``Executable``
POSIXApplication/Argument*                    ``Arguments``: shell-quoted, space-joined
POSIXApplication/Input, Output, Error         ``StdInput``, ``StdOutput``, ``StdError``
POSIXApplication/Environment@name + text      ``Environment = { "name=value", ... }``: the value
                                              shell-quoted where needed (JSDL values are literal)
POSIXApplication/WallTimeLimit (s)            ``other.GlueCEPolicyMaxWallClockTime * 60 >= s``
POSIXApplication/CPUTimeLimit (s)             ``other.GlueCEPolicyMaxCPUTime * 60 >= s``
DataStaging with Source                       ``InputSandbox``: Source/URI if given, else FileName
DataStaging with Target                       ``OutputSandbox`` FileName; Target/URI →
                                              ``OutputSandboxDestURI`` (``""`` for the
                                              targets without a URI: the server's default)
Resources/CandidateHosts/HostName+            ``other.GlueCEInfoHostName == "h"`` (or-ed)
Resources/TotalCPUCount (Exact/Lower bound)   ``CpuNumber = n`` (an integer, 1 to 2³¹-1)
Resources/IndividualCPUCount                  range on ``other.GlueHostArchitectureSMPSize``
Resources/IndividualCPUSpeed (Hz)             range on ``other.GlueHostProcessorClockSpeed`` (MHz)
Resources/IndividualCPUTime (s)               range on ``other.GlueCEPolicyMaxCPUTime`` (min)
Resources/IndividualPhysicalMemory (bytes)    range on ``other.GlueHostMainMemoryRAMSize`` (MB)
Resources/IndividualVirtualMemory (bytes)     range on ``other.GlueHostMainMemoryVirtualSize`` (MB)
Resources/OperatingSystem/.../OSName LINUX    nothing (every gLite CE runs Linux)
Resources/OperatingSystem/Version             ``other.GlueHostOperatingSystemRelease == "v"``
Resources/CPUArchitecture/Name                ``other.GlueHostArchitecturePlatformType == ...``
                                              (x86/x86_32 → "i686", others by name)
Resources/ExclusiveExecution false            nothing
============================================  ==============================================

A range (``RangeValue_Type``) becomes the or of its Exact/Range/bounded parts (a bound with
``exclusiveBound="true"`` compares with ``>``/``<``, else ``>=``/``<=``), compared
in the JSDL unit (``other.GlueHostMainMemoryRAMSize * 1048576 >= 1073741824``), so no
rounding is involved. A bound is written as an integer while it fits 64 bits, else as a
real (``>= 1e+20``: classad2 reads a longer integer literal as 0). All Resources conditions
are and-ed into ``Requirements``; a JSDL without them gets ``Requirements = true``.

Refused (InvalidArgumentError): POSIX WorkingDirectory, UserName, GroupName and the other
``*Limit`` elements, ``filesystemName`` attributes, JobProject, Application without a
POSIXApplication, FileSystem, the Total* resources other than TotalCPUCount,
IndividualDiskSpace, IndividualNetworkBandwidth, ExclusiveExecution true, OS names other
than LINUX, CPU architecture ``other``, DataStaging with FilesystemName, CreationFlag
``append``, DeleteOnTermination false, neither Source nor Target, a FileName with a
``/`` or one that differs from its Source URI's file name, any element of another
namespace (``xsd:any`` extensions), and a second occurrence of an element the schemas allow
once (two Executables, two JobNames, two Applications...; the SOAP part must hold exactly
one JobDescription).
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import classad2
from lxml import etree

from wmproxy.errors import InvalidArgumentError
from wmproxy.jdl.depth import depth_problem
from wmproxy.jdl.description import CPU_NUMBER_MAX
from wmproxy.jdl.registered import jdl_lines

JSDL_NS = "http://schemas.ggf.org/jsdl/2005/11/jsdl"
POSIX_NS = "http://schemas.ggf.org/jsdl/2005/11/jsdl-posix"
HPCPA_NS = "http://schemas.ggf.org/jsdl/2006/07/jsdl-hpcpa"
_APPLICATION_NS = (POSIX_NS, HPCPA_NS)
_PREFIXES = {JSDL_NS: "jsdl", POSIX_NS: "jsdl-posix", HPCPA_NS: "jsdl-hpcpa"}

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z", re.ASCII)
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_MB = 1048576
_INT64_END = 2**63
#: The finite numbers of ``xsd:double``'s lexical space (Python's float() also takes ``3_600``).
_DOUBLE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)

# RangeValue resources: (Glue attribute, how many JSDL units one Glue unit is).
_RANGES = {
    "IndividualCPUCount": ("other.GlueHostArchitectureSMPSize", 1),
    "IndividualCPUSpeed": ("other.GlueHostProcessorClockSpeed", 1000000),
    "IndividualCPUTime": ("other.GlueCEPolicyMaxCPUTime", 60),
    "IndividualPhysicalMemory": ("other.GlueHostMainMemoryRAMSize", _MB),
    "IndividualVirtualMemory": ("other.GlueHostMainMemoryVirtualSize", _MB),
}
# POSIX limits (seconds) the CE's policy must allow.
_LIMITS = {
    "WallTimeLimit": "other.GlueCEPolicyMaxWallClockTime",
    "CPUTimeLimit": "other.GlueCEPolicyMaxCPUTime",
}
_ARCHITECTURES = {"x86": "i686", "x86_32": "i686"}
# Children the schemas allow once (maxOccurs 1), by parent; a second one is refused.
_ONCE = {
    "JobDescription": frozenset({"JobIdentification", "Application", "Resources"}),
    "JobIdentification": frozenset({"JobName", "Description"}),
    "Application": frozenset({"ApplicationName", "ApplicationVersion", "Description"}),
    "POSIXApplication": frozenset({"Executable", "Input", "Output", "Error", "WorkingDirectory",
                                   "UserName", "GroupName", *_LIMITS}),
    "Resources": frozenset({"CandidateHosts", "ExclusiveExecution", "OperatingSystem", "CPUArchitecture",
                            "IndividualNetworkBandwidth", "IndividualDiskSpace", "TotalCPUTime",
                            "TotalCPUCount", "TotalPhysicalMemory", "TotalVirtualMemory",
                            "TotalDiskSpace", "TotalResourceCount", *_RANGES}),
    "OperatingSystem": frozenset({"OperatingSystemType", "OperatingSystemVersion", "Description"}),
    "OperatingSystemType": frozenset({"OperatingSystemName"}),
    "CPUArchitecture": frozenset({"CPUArchitectureName"}),
    "RangeValue": frozenset({"UpperBoundedRange", "LowerBoundedRange"}),
    "Range": frozenset({"LowerBound", "UpperBound"}),
    "DataStaging": frozenset({"FileName", "FilesystemName", "CreationFlag", "DeleteOnTermination",
                              "Source", "Target"}),
    "SourceTarget": frozenset({"URI"}),
}

_SAFE_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
    huge_tree=False, remove_comments=True, remove_pis=True,
)


def parse_jsdl(data: bytes | str) -> etree._Element:
    """Parse a JSDL document safely: no DTD, no entities, no network.

    Args:
        data: the XML text.

    Returns:
        The root element.

    Raises:
        InvalidArgumentError: malformed XML, or a document with a DOCTYPE.
    """
    raw = data.encode() if isinstance(data, str) else data
    try:
        tree = etree.fromstring(raw, _SAFE_PARSER).getroottree()
    except etree.XMLSyntaxError as exc:
        raise InvalidArgumentError(f"Invalid Argument: JSDL is not well-formed XML: {exc}") from None
    if tree.docinfo.doctype:
        raise InvalidArgumentError("Invalid Argument: JSDL must not contain a DOCTYPE")
    return tree.getroot()


def jsdl_to_jdl(element: etree._Element) -> str:
    """Map a JSDL 1.0 job definition onto the equivalent JDL (see the module's table).

    Args:
        element: a ``JobDefinition``, a ``JobDescription``, or the element holding
            either (the SOAP ``jsdl`` part). Any namespace prefixes.

    Returns:
        The JDL, one attribute per line (:func:`wmproxy.jdl.registered.jdl_lines`).

    Raises:
        InvalidArgumentError: no (or more than one) JobDescription, no POSIXApplication
            Executable, or anything the mapping does not support; the message lists
            every such element and value.
    """
    job = _Conversion()
    job.description(_job_description(element))
    return job.jdl()


def _job_description(element: etree._Element) -> etree._Element:
    """The one JobDescription at or directly below ``element`` (or below its JobDefinition)."""
    if _is(element, JSDL_NS, "JobDescription"):
        return element
    holder = element
    if not _is(element, JSDL_NS, "JobDefinition"):
        definitions = [child for child in _children(element) if _is(child, JSDL_NS, "JobDefinition")]
        if len(definitions) == 1:
            holder = definitions[0]
    found = [child for child in _children(holder) if _is(child, JSDL_NS, "JobDescription")]
    if len(found) != 1:
        raise InvalidArgumentError(
            "Invalid Argument: JSDL must contain exactly one jsdl:JobDescription"
        )
    return found[0]


@dataclass
class _Conversion:
    """The JDL attributes gathered so far and the problems found on the way."""

    attributes: dict[str, object] = field(default_factory=dict)
    requirements: list[str] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)
    input_sandbox: list[str] = field(default_factory=list)
    output_sandbox: list[str] = field(default_factory=list)
    output_dest: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)

    def description(self, element: etree._Element) -> None:
        handlers: dict[str, Callable[[etree._Element], None]] = {
            "JobIdentification": self.identification,
            "Application": self.application,
            "Resources": self.resources,
            "DataStaging": self.data_staging,
        }
        self.once(element, "JobDescription")
        seen_application = False
        for child in _children(element):
            local = _local(child, JSDL_NS)
            if local in handlers:
                seen_application |= local == "Application"
                handlers[local](child)
            else:
                self.unsupported.append(_path(child))
        if not seen_application:
            self.invalid.append("no jsdl:Application/jsdl-posix:POSIXApplication")

    # --- JobIdentification ---

    def identification(self, element: etree._Element) -> None:
        self.once(element, "JobIdentification")
        for child in _children(element):
            local = _local(child, JSDL_NS)
            if local == "JobName":
                self.attributes["JobName"] = self.text(child)
            elif local not in ("Description", "JobAnnotation"):
                self.unsupported.append(_path(child))

    # --- Application ---

    def application(self, element: etree._Element) -> None:
        self.once(element, "Application")
        posix = []
        for child in _children(element):
            if any(_is(child, ns, name) for ns in _APPLICATION_NS
                   for name in ("POSIXApplication", "HPCProfileApplication")):
                posix.append(child)
            elif _local(child, JSDL_NS) not in ("ApplicationName", "ApplicationVersion", "Description"):
                self.unsupported.append(_path(child))
        if len(posix) != 1:
            self.invalid.append("jsdl:Application must hold exactly one jsdl-posix:POSIXApplication")
            return
        self.posix_application(posix[0])

    def posix_application(self, element: etree._Element) -> None:
        self.once(element, "POSIXApplication", _APPLICATION_NS)
        arguments: list[str] = []
        for child in _children(element):
            qname = etree.QName(child)
            local = qname.localname if qname.namespace in _APPLICATION_NS else None
            if child.get("filesystemName") is not None:
                self.unsupported.append(_path(child) + "/@filesystemName")
                continue
            if local == "Executable":
                self.attributes["Executable"] = self.text(child)
            elif local == "Argument":
                arguments.append(child.text or "")
                self.no_children(child)
            elif local in ("Input", "Output", "Error"):
                self.attributes[f"Std{local}"] = self.text(child)
            elif local == "Environment":
                self.environment_entry(child)
            elif local in _LIMITS:
                seconds = self.number(child)
                if seconds is not None:
                    self.requirements.append(f"{_LIMITS[local]} * 60 >= {_number(seconds)}")
            else:
                self.unsupported.append(_path(child))
        if not self.attributes.get("Executable"):
            self.invalid.append("jsdl-posix:POSIXApplication has no Executable")
        if arguments:
            self.attributes["Arguments"] = shlex.join(arguments)

    def environment_entry(self, element: etree._Element) -> None:
        name = element.get("name") or ""
        if not _ENV_NAME.match(name):
            self.invalid.append(f"Environment name {name!r} is not a valid variable name")
            return
        self.no_children(element)
        value = element.text or ""
        # A JSDL value is literal; a JDL Environment entry is read by the shell (the original's
        # ``eval export <entry>``): quoted, so the job gets exactly the JSDL's text.
        self.environment.append(f"{name}={shlex.quote(value) if value else ''}")

    # --- Resources ---

    def resources(self, element: etree._Element) -> None:
        self.once(element, "Resources")
        for child in _children(element):
            local = _local(child, JSDL_NS)
            if local == "CandidateHosts":
                self.candidate_hosts(child)
            elif local == "TotalCPUCount":
                self.cpu_number(child)
            elif local in _RANGES:
                attribute, unit = _RANGES[local]
                condition = self.range_value(child, attribute, unit)
                if condition:
                    self.requirements.append(condition)
            elif local == "OperatingSystem":
                self.operating_system(child)
            elif local == "CPUArchitecture":
                self.architecture(child)
            elif local == "ExclusiveExecution" and self.text(child).lower() in ("false", "0"):
                pass
            else:
                self.unsupported.append(_path(child))

    def candidate_hosts(self, element: etree._Element) -> None:
        hosts = []
        for child in _children(element):
            if _local(child, JSDL_NS) == "HostName":
                hosts.append(f"other.GlueCEInfoHostName == {classad2.quote(self.text(child))}")
            else:
                self.unsupported.append(_path(child))
        if hosts:
            self.requirements.append(hosts[0] if len(hosts) == 1 else "(" + " || ".join(hosts) + ")")

    def cpu_number(self, element: etree._Element) -> None:
        parts = list(_children(element))
        if len(parts) != 1 or _local(parts[0], JSDL_NS) not in ("Exact", "LowerBoundedRange") \
                or parts[0].get("epsilon") is not None or parts[0].get("exclusiveBound") is not None:
            self.unsupported.append(_path(element) + " (only one Exact or LowerBoundedRange)")
            return
        value = self.number(parts[0])
        if value is not None:
            if value != int(value) or not 1 <= value <= CPU_NUMBER_MAX:
                self.invalid.append(f"{_path(element)}: {_number(value)} is not an integer "
                                    f"from 1 to {CPU_NUMBER_MAX}")
            else:
                self.attributes["CpuNumber"] = int(value)

    def range_value(self, element: etree._Element, attribute: str, unit: int) -> str:
        """JSDL ``RangeValue_Type`` → an expression on ``attribute * unit``."""
        subject = attribute if unit == 1 else f"{attribute} * {unit}"
        self.once(element, "RangeValue")
        terms = []
        for part in _children(element):
            local = _local(part, JSDL_NS)
            if local in ("UpperBoundedRange", "LowerBoundedRange"):
                bound = self.number(part)
                if bound is not None:
                    terms.append(f"{subject} {_bound_operator(part)} {_number(bound)}")
            elif local == "Exact":
                exact = self.number(part)
                epsilon = _float(part.get("epsilon")) if part.get("epsilon") is not None else 0.0
                if epsilon is not None and epsilon < 0:
                    self.invalid.append(f"{_path(part)}/@epsilon must not be negative")
                elif exact is not None and epsilon is not None:
                    terms.append(f"{subject} == {_number(exact)}" if not epsilon else
                                 f"({subject} >= {_number(exact - epsilon)} && "
                                 f"{subject} <= {_number(exact + epsilon)})")
                elif epsilon is None:
                    self.invalid.append(f"{_path(part)}/@epsilon is not a number")
            elif local == "Range":
                self.once(part, "Range")
                bounds = {_local(b, JSDL_NS): b for b in _children(part)}
                if set(bounds) != {"LowerBound", "UpperBound"}:
                    self.invalid.append(f"{_path(part)} needs one LowerBound and one UpperBound")
                    continue
                lower, upper = bounds["LowerBound"], bounds["UpperBound"]
                low, high = self.number(lower), self.number(upper)
                if low is not None and high is not None:
                    terms.append(f"({subject} {_bound_operator(lower)} {_number(low)} && "
                                 f"{subject} {_bound_operator(upper)} {_number(high)})")
            else:
                self.unsupported.append(_path(part))
        if not terms:
            return ""
        return terms[0] if len(terms) == 1 else "(" + " || ".join(terms) + ")"

    def operating_system(self, element: etree._Element) -> None:
        self.once(element, "OperatingSystem")
        for child in _children(element):
            local = _local(child, JSDL_NS)
            if local == "OperatingSystemType":
                self.once(child, "OperatingSystemType")
                for name in _children(child):
                    if _local(name, JSDL_NS) != "OperatingSystemName":
                        self.unsupported.append(_path(name))
                    elif self.text(name) != "LINUX":
                        self.unsupported.append(f"{_path(name)} {self.text(name)} (only LINUX)")
            elif local == "OperatingSystemVersion":
                release = classad2.quote(self.text(child))
                self.requirements.append(f"other.GlueHostOperatingSystemRelease == {release}")
            elif local != "Description":
                self.unsupported.append(_path(child))

    def architecture(self, element: etree._Element) -> None:
        self.once(element, "CPUArchitecture")
        for child in _children(element):
            name = self.text(child)
            if _local(child, JSDL_NS) != "CPUArchitectureName" or name in ("", "other"):
                self.unsupported.append(f"{_path(child)} {name}".rstrip())
                continue
            platform = classad2.quote(_ARCHITECTURES.get(name, name))
            self.requirements.append(f"other.GlueHostArchitecturePlatformType == {platform}")

    # --- DataStaging ---

    def data_staging(self, element: etree._Element) -> None:
        file_name = None
        source: str | None = None
        target: str | None = None
        has_source = has_target = False
        self.once(element, "DataStaging")
        for child in _children(element):
            local = _local(child, JSDL_NS)
            if local == "FileName":
                file_name = self.text(child)
            elif local == "CreationFlag":
                if self.text(child) not in ("overwrite", "dontOverwrite"):
                    self.unsupported.append(f"{_path(child)} {self.text(child)}")
            elif local == "DeleteOnTermination":
                if self.text(child).lower() not in ("true", "1"):
                    self.unsupported.append(f"{_path(child)} {self.text(child)}")
            elif local == "Source":
                has_source, source = True, self.uri(child)
            elif local == "Target":
                has_target, target = True, self.uri(child)
            else:
                self.unsupported.append(_path(child))
        where = f"jsdl:DataStaging {file_name!r}"
        if not file_name or "/" in file_name or file_name in (".", ".."):
            self.invalid.append(f"{where}: FileName must be a plain file name")
            return
        if not has_source and not has_target:
            self.invalid.append(f"{where} has neither Source nor Target")
        if has_source:
            if source and _uri_file_name(source) != file_name:
                self.invalid.append(f"{where}: the Source URI's file name differs from FileName")
            else:
                self.input_sandbox.append(source or file_name)
        if has_target:
            self.output_sandbox.append(file_name)
            self.output_dest.append(target or "")

    def uri(self, element: etree._Element) -> str | None:
        self.once(element, "SourceTarget")
        uri = None
        for child in _children(element):
            if _local(child, JSDL_NS) == "URI":
                uri = self.text(child)
            else:
                self.unsupported.append(_path(child))
        if uri is not None and not _URI_SCHEME.match(uri):
            self.invalid.append(f"{_path(element)}/jsdl:URI {uri!r} is not an absolute URI")
            return None
        return uri

    # --- helpers ---

    def text(self, element: etree._Element) -> str:
        """The element's text, stripped; child elements are reported as unsupported."""
        self.no_children(element)
        return (element.text or "").strip()

    def once(self, element: etree._Element, schema_type: str,
             namespaces: tuple[str, ...] = (JSDL_NS,)) -> None:
        """Refuse each repetition of a child ``schema_type`` allows once (:data:`_ONCE`)."""
        seen = set()
        for child in _children(element):
            qname = etree.QName(child)
            if qname.namespace in namespaces and qname.localname in _ONCE[schema_type]:
                if qname.localname in seen:
                    self.invalid.append(f"{_path(child)} is given more than once")
                seen.add(qname.localname)

    def no_children(self, element: etree._Element) -> None:
        self.unsupported.extend(_path(child) for child in _children(element))

    def number(self, element: etree._Element) -> float | None:
        value = _float(self.text(element))
        if value is None:
            self.invalid.append(f"{_path(element)}: {self.text(element)!r} is not a number")
        return value

    def jdl(self) -> str:
        problems = []
        if self.unsupported:
            problems.append("unsupported elements: " + ", ".join(dict.fromkeys(self.unsupported)))
        problems.extend(dict.fromkeys(self.invalid))
        requirements = " && ".join(self.requirements) or "true"
        if (deep := depth_problem(requirements)) is not None:  # thousands of hosts or ranges: classad2's stack
            problems.append(f"the Requirements made of its resources: {deep}")
        if problems:
            raise InvalidArgumentError(
                "Invalid Argument: JSDL cannot be converted to JDL: " + "; ".join(problems)
            )
        ad = classad2.ClassAd()
        for name in ("JobName", "Executable", "Arguments", "StdInput", "StdOutput", "StdError"):
            if name in self.attributes:
                ad[name] = self.attributes[name]
        if self.environment:
            ad["Environment"] = self.environment
        if self.input_sandbox:
            ad["InputSandbox"] = self.input_sandbox
        if self.output_sandbox:
            ad["OutputSandbox"] = self.output_sandbox
            if any(self.output_dest):
                ad["OutputSandboxDestURI"] = self.output_dest
        if "CpuNumber" in self.attributes:
            ad["CpuNumber"] = self.attributes["CpuNumber"]
        ad["Requirements"] = classad2.ExprTree(requirements)
        return jdl_lines(ad)


def _children(element: etree._Element) -> Iterator[etree._Element]:
    """Child elements, without comments and processing instructions."""
    return (child for child in element if isinstance(child.tag, str))


def _is(element: etree._Element, namespace: str, local: str) -> bool:
    return isinstance(element.tag, str) and element.tag == f"{{{namespace}}}{local}"


def _local(element: etree._Element, namespace: str) -> str | None:
    """The local name when ``element`` is in ``namespace``, else ``None``."""
    qname = etree.QName(element)
    return qname.localname if qname.namespace == namespace else None


def _path(element: etree._Element) -> str:
    """``jsdl:Resources/jsdl:FileSystem``: the element below JobDescription, conventional prefixes."""
    names = []
    node: etree._Element | None = element
    while node is not None and not _is(node, JSDL_NS, "JobDescription"):
        qname = etree.QName(node)
        prefix = _PREFIXES.get(qname.namespace or "")
        names.append(f"{prefix}:{qname.localname}" if prefix else qname.text)
        node = node.getparent()
    return "/".join(reversed(names))


def _float(text: str | None) -> float | None:
    """A finite ``xsd:double`` (``3600``, ``-1.5``, ``1e20``; not ``3_600``, ``INF`` or ``NaN``)."""
    literal = (text or "").strip()
    if not _DOUBLE.fullmatch(literal):
        return None
    value = float(literal)
    return value if math.isfinite(value) else None


def _bound_operator(bound: etree._Element) -> str:
    """``>=``/``<=`` for a lower/upper ``Boundary_Type``; ``>``/``<`` with ``exclusiveBound`` true."""
    exclusive = (bound.get("exclusiveBound") or "").strip() in ("true", "1")
    upper = etree.QName(bound).localname in ("UpperBoundedRange", "UpperBound")
    return ("<" if upper else ">") + ("" if exclusive else "=")


def _number(value: float) -> str:
    """``value`` as a ClassAd literal: an integer while it fits 64 bits, else a real.

    classad2 reads an integer literal beyond 64 bits as 0 (``>= 100000000000000000000``
    would be ``>= 0``); ``1e+20`` keeps the meaning."""
    return str(int(value)) if value == int(value) and abs(value) < _INT64_END else repr(value)


def _uri_file_name(uri: str) -> str:
    path = uri.split("://", 1)[1].split("?", 1)[0].split("#", 1)[0]
    return path.rstrip("/").rsplit("/", 1)[-1]

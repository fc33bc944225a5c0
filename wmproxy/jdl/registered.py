"""The registered JDL and its serialisation (``wmproxy-behaviour.md`` §3.1 steps 12-13, §3.2 8c).

:func:`registered_ad` builds the JDL stored as ``JDLToStart`` in one pass from the
user's JDL, the job's area (paths and URIs computed by the storage layer, seen here
through the :class:`RegisteredArea` protocol) and the MyProxy server chosen for it;
:func:`jdl_lines` is the text of ``JDLOriginal``/``JDLToStart`` that getJDL returns;
:func:`isb_file_names` reads back from a registered JDL which files the job's input
area must hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import classad2

from wmproxy.domain import service_file
from wmproxy.errors import InvalidArgumentError, InvalidJdlAttributeError, JdlError
from wmproxy.jdl.attributes import AdView, string_list, string_value
from wmproxy.jdl.compound import describe
from wmproxy.jdl.description import JobDescription
from wmproxy.jdl.parse import one_line, quote_name
from wmproxy.jdl.sandbox import URI_SCHEME, file_name, file_uri, has_wildcards, is_remote_uri, uri_file_name

NODE_TYPE = "edg-jdl"


class RegisteredArea(Protocol):
    """What the registered JDL needs of a job's area (``wmproxy.sandbox.storage.JobArea``)."""

    @property
    def base_uri(self) -> str:
        """``WMPInputSandboxBaseURI``: URI of the job's own directory."""
        ...

    @property
    def input_text(self) -> str:
        """Where the job's input sandbox files are (a node's: the parent's input), as text."""
        ...

    @property
    def input_uri(self) -> str:
        """URI of ``input_text``."""
        ...

    @property
    def output_text(self) -> str:
        """Where the job's output sandbox is collected (always the job's own), as text."""
        ...

    @property
    def output_uri(self) -> str:
        """URI of ``output_text``."""
        ...

    @property
    def proxy_text(self) -> str:
        """The job's proxy file, as text."""
        ...


def registered_ad(
    ad: classad2.ClassAd | AdView,
    area: RegisteredArea,
    *,
    job_id: str,
    certificate_subject: str,
    proxy_vo: str | None,
    proxy_fqan: str | None,
    myproxy_server: str | None,
    description: JobDescription | None = None,
    nodes: Sequence[tuple[str, classad2.ClassAd]] = (),
    dependencies: Sequence[tuple[str, str]] = (),
    local_account: str | None = None,
) -> classad2.ClassAd:
    """Build the registered JDL (``JDLToStart``) of a job, a node or a DAG level, in one pass.

    Implements ``wmproxy-behaviour.md`` §3.1 step 6 (VO check), step 8 (interactive
    ``Environment`` additions), step 12 (attributes set, removed and normalised) and
    §3.2 step 8c (``OutputSandboxDestURI`` below the job's own output URI, the only destination
    accepted). Local
    ``InputSandbox`` entries become ``<area.input_uri>/<file name>`` (the name percent-encoded,
    :func:`~wmproxy.jdl.sandbox.file_uri`): for a node that
    is the parent's input area, where the files are really uploaded. The DAG level of
    a compound job lists its registered nodes as the reference's ``JDLToStart`` does
    (§9.4 step 9): ``nodes = [ <name> = [ description = [...]; node_type = "edg-jdl" ];
    ...; dependencies = { {a, b} } ]``. ``LB_sequence_code`` is left out.

    Args:
        ad: the user's JDL (for a compound job its DAG-level ad or a node's ad), or an
            :class:`~wmproxy.jdl.attributes.AdView` of it; not modified. Validated with
            :func:`wmproxy.jdl.describe` unless ``description`` is given.
        area: the job's area (paths absolute, as text; URIs https).
        job_id: the new job id, stored as ``edg_jobid``.
        certificate_subject: the caller's DN without proxy CNs.
        proxy_vo: VO of the delegated proxy's first FQAN, if any.
        proxy_fqan: the delegated proxy's first FQAN, stored as ``VOMS_FQAN``.
        myproxy_server: the server the proxy is renewed from (``MyProxyServer``), or
            None for no renewal (the attribute is then left out).
        description: the ad's description when the caller already has it.
        nodes: ``(node name, registered node ad)`` of a compound job's DAG level.
        dependencies: ``(parent node, child node)`` pairs of the DAG level.
        local_account: the Unix account the job runs as (the mapping's decision at
            registration), stored as ``LocalAccount`` so the owner sees it; None (no
            mapping configured) leaves the attribute out. A user-supplied
            ``LocalAccount`` is always removed.

    Returns:
        A new ClassAd.

    Raises:
        InvalidJdlAttributeError: the JDL's ``VirtualOrganisation`` differs from
            ``proxy_vo`` (case-insensitive), or anything :func:`describe` raises.
        InvalidArgumentError: a remote ``InputSandbox`` entry or a remote ``InputSandboxBaseURI``
            with relative ``InputSandbox`` entries, or an ``OutputSandboxDestURI`` entry
            or ``OutputSandboxBaseDestURI`` outside the job's own output area: this service fetches
            and sends no file elsewhere (the message names the entry).
        InvalidArgumentError, JdlError: see :func:`describe`; bad interactive
            listener attributes or ``OutputSandboxBaseDestURI``.
    """
    # What the copy ``out`` holds of the user's attributes is asked of ``user`` (the names read
    # once, :class:`AdView`): each attribute asked about is one this function has not set or
    # removed in ``out`` before the question.
    user = AdView.of(ad)
    if description is None:
        description = describe(user.ad)
    out = classad2.ClassAd(str(user.ad))
    _set_virtual_organisation(out, description.virtual_organisation, proxy_vo)
    out["edg_jobid"] = job_id
    out["CertificateSubject"] = certificate_subject
    if proxy_fqan:
        out["VOMS_FQAN"] = proxy_fqan
    elif "VOMS_FQAN" in user:  # claimed by the user, proven by no proxy: matching and renewal read it
        del out["VOMS_FQAN"]
    out["WMPInputSandboxBaseURI"] = area.base_uri
    out["InputSandboxPath"] = area.input_text
    out["OutputSandboxPath"] = area.output_text
    out["X509UserProxy"] = area.proxy_text
    if "MyProxyServer" in user:
        del out["MyProxyServer"]
    if myproxy_server:
        out["MyProxyServer"] = myproxy_server
    if "LocalAccount" in user:
        del out["LocalAccount"]
    if local_account:
        out["LocalAccount"] = local_account
    if "JobProvenance" in user and user["JobProvenance"] == "":
        del out["JobProvenance"]

    environment = list(description.environment)
    if description.job_type == "interactive":
        environment += _interactive_environment(out)
    if environment or "Environment" in user:
        _set_list(out, user, "Environment", environment)
    _check_input_sandbox(description.input_sandbox, string_value(user, "InputSandboxBaseURI"))
    if "InputSandbox" in user:
        _set_list(out, user, "InputSandbox", [
            entry if is_remote_uri(entry) else file_uri(area.input_uri, file_name(entry))
            for entry in description.input_sandbox
        ])
    if "OutputSandbox" in user:
        _set_list(out, user, "OutputSandbox", description.output_sandbox)
        _set_output_destinations(out, user, description.output_sandbox, area.output_uri)
    if nodes:
        out["nodes"] = _node_list(nodes, dependencies)
    return out


def isb_file_names(registered: classad2.ClassAd, input_uri: str) -> tuple[str, ...]:
    """The files a registered job needs from its input area, in JDL order, each once.

    Args:
        registered: a JDL built by :func:`registered_ad`.
        input_uri: the area's ``input_uri`` the local entries were mapped below. Only
            the URI paths are compared, so a service that has changed its host name or
            port since registration still finds the files.

    Returns:
        File names of the ``InputSandbox`` entries below ``input_uri``, decoded
        (:func:`~wmproxy.jdl.sandbox.uri_file_name`; remote entries are the job's own business).

    Raises:
        JdlError: ``InputSandbox`` is not a list of strings.
    """
    prefix = _uri_path(input_uri).rstrip("/") + "/"
    names: list[str] = []
    for entry in string_list(registered, "InputSandbox"):
        path = _uri_path(entry)
        if not path.startswith(prefix):
            continue
        segment = path[len(prefix):]
        name = uri_file_name(segment)
        if segment and "/" not in segment and "/" not in name and name not in names:
            names.append(name)
    return tuple(names)


def _uri_path(uri: str) -> str:
    """``scheme://host:port/path`` → ``/path``, taken literally (file names may hold ``#``, ``?``)."""
    match = URI_SCHEME.match(uri)
    if match is None:
        return uri
    rest = uri[match.end():]
    slash = rest.find("/")
    return rest[slash:] if slash >= 0 else ""


def jdl_lines(ad: classad2.ClassAd) -> str:
    """Serialise a JDL one attribute per line, as ``JDLOriginal``/``JDLToStart`` (§3.1 step 13).

    The output is a bracketed new-format ClassAd that :func:`wmproxy.jdl.parse_jdl`
    reads back to an equal ad. A name that is not plain (a node name such as ``Node_a-b``;
    :func:`~wmproxy.jdl.parse.parse_jdl` refuses such names in a JDL) is quoted as classad2
    quotes it, so that the text is read back to the same attributes and no name can write
    attributes of its own (``'x=0; VirtualOrganisation="atlas"; y'``). Strings and lists of
    strings are written on one line (``Environment = { "FOO=bar" };``); nested ClassAds (a
    DAG's ``nodes``) one attribute per line, indented; other expressions as classad2 prints
    them, on one line (:func:`~wmproxy.jdl.parse.one_line`: string literals are kept as
    they are, ``"ce  01"`` with its two spaces).

    Args:
        ad: any ClassAd.

    Returns:
        ``"[\\n  Name = value;\\n  ...\\n]\\n"``.
    """
    return _ad_text(ad, "") + "\n"


def _ad_text(ad: classad2.ClassAd, indent: str) -> str:
    inner = indent + "  "
    lines = [f"{inner}{quote_name(name)} = {_value_text(ad, name, inner)};" for name in ad]
    return "[\n" + "\n".join(lines) + ("\n" if lines else "") + indent + "]"


def _value_text(ad: classad2.ClassAd, name: str, indent: str) -> str:
    value = ad[name]
    if isinstance(value, str):
        return str(classad2.quote(value))
    if isinstance(value, classad2.ClassAd):
        return _ad_text(value, indent)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "{ " + ", ".join(classad2.quote(item) for item in value) + " }" if value else "{ }"
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)  # classad2 prints 1.5 as 1.500000000000000E+00
    if isinstance(value, classad2.ExprTree):  # not a literal: the expression itself, as ad.lookup gives it
        return one_line(str(value))
    return one_line(str(ad.lookup(name)))


def _node_list(
    nodes: Sequence[tuple[str, classad2.ClassAd]], dependencies: Sequence[tuple[str, str]]
) -> classad2.ClassAd:
    """§9.4 step 9: ``[ <name> = [ description = ...; node_type = "edg-jdl" ]; dependencies = {...} ]``."""
    listing = classad2.ClassAd()
    for name, registered in nodes:
        entry = classad2.ClassAd()
        entry["description"] = classad2.ClassAd(str(registered))
        entry["node_type"] = NODE_TYPE
        listing[name] = entry
    pairs = ", ".join(f"{{ {quote_name(parent)}, {quote_name(child)} }}" for parent, child in dependencies)
    listing["dependencies"] = classad2.ExprTree(f"{{ {pairs} }}" if pairs else "{ }")
    return listing


def check_virtual_organisation(jdl_vo: str | None, proxy_vo: str | None) -> None:
    """§3.1 step 6, made by jobRegister and jobListMatch alike: the JDL's ``VirtualOrganisation``
    is the delegated proxy's VO (case-insensitive) when both are known.

    Raises:
        InvalidJdlAttributeError: they differ (1220).
    """
    if jdl_vo is not None and proxy_vo and jdl_vo.lower() != proxy_vo.lower():
        raise InvalidJdlAttributeError(
            f"Jdl VirtualOrganisation attribute ({jdl_vo}) is different from "
            f"delegated Proxy Virtual Organisation ({proxy_vo})"
        )


def _set_virtual_organisation(out: classad2.ClassAd, jdl_vo: str | None, proxy_vo: str | None) -> None:
    """§3.1 step 6: refuse a VO other than the proxy's, fill it in when absent."""
    check_virtual_organisation(jdl_vo, proxy_vo)
    if jdl_vo is None and proxy_vo:
        out["VirtualOrganisation"] = proxy_vo


def _interactive_environment(out: classad2.ClassAd) -> list[str]:
    """§3.1 step 8: what an interactive job gets appended to ``Environment``."""
    values = {}
    for name in ("ListenerHost", "ListenerPort", "ListenerPipeName"):
        value = out[name]
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise JdlError(f"Attribute {name} must be a string or an integer")
        values[name] = str(value)
    pipe = values["ListenerPipeName"]
    return [
        f"BYPASS_SHADOW_HOST={values['ListenerHost']}",
        f"BYPASS_SHADOW_PORT={values['ListenerPort']}",
        f"GRID_CONSOLE_STDIN={pipe}.in",
        f"GRID_CONSOLE_STDOUT={pipe}.out",
    ]


_NO_REMOTE_INPUT = ("this service does not fetch remote input sandbox files (no GridFTP, no download from "
                    "other servers or from another job's sandbox); give a local file, which the client uploads "
                    "into the job's input sandbox")


def _check_input_sandbox(entries: Sequence[str], base_uri: str | None) -> None:
    """Refuse a remote ``InputSandbox`` entry (``gsiftp://``, ``https://``...; ``file://`` is local),
    and a remote ``InputSandboxBaseURI`` with relative entries (which name files below it).

    The service runs the job with the files of its own input area only: it has no GridFTP and
    fetches nothing from elsewhere, not even another job's output sandbox on this service (the
    gLite idiom of chaining jobs through ``https://<wms>/SandboxDir/.../output/<file>``).

    Raises:
        InvalidArgumentError: the message names the entry (the base URI).
    """
    for entry in entries:
        if is_remote_uri(entry):
            raise InvalidArgumentError(f"Attribute InputSandbox: {entry!r} is not allowed: {_NO_REMOTE_INPUT}")
    if base_uri is not None and is_remote_uri(base_uri):
        relative = [entry for entry in entries if not URI_SCHEME.match(entry) and not entry.startswith("/")]
        if relative:
            raise InvalidArgumentError(
                f"Attribute InputSandboxBaseURI: {base_uri!r} is not allowed with relative InputSandbox entries "
                f"({relative[0]!r} names a file below it): {_NO_REMOTE_INPUT}")


def _set_list(out: classad2.ClassAd, user: AdView, name: str, values: Sequence[str]) -> None:
    """:func:`~wmproxy.jdl.attributes.set_list` on ``out`` for an attribute ``out`` holds as the
    user's ad ``user`` does (copied, not set since): removed, then set again under the user's
    spelling (or ``name`` when the user has none)."""
    key = user.spelling(name)
    if key is not None:
        del out[key]
    out[key or name] = list(values)


def _set_output_destinations(out: classad2.ClassAd, user: AdView, files: tuple[str, ...], output_uri: str) -> None:
    """§3.2 step 8c: ``OutputSandboxDestURI``, or ``OutputSandboxBaseDestURI`` with wildcards.

    A name appended to the job's output URI is percent-encoded as getOutputFileList gives it
    (:func:`~wmproxy.jdl.sandbox.file_uri`): ``res#1.txt`` is ``…/output/res%231.txt``; a
    relative ``OutputSandboxDestURI`` entry is the file name the output is stored under there.
    This service keeps every output in the job's own output area (it has no GridFTP and uploads
    nowhere else): a destination elsewhere is refused (:func:`_check_output_destinations`)."""
    user_dest = string_list(user, "OutputSandboxDestURI")  # out holds the user's (copied, not set)
    base_dest = string_value(user, "OutputSandboxBaseDestURI")
    _check_output_destinations(user_dest, base_dest, output_uri)
    if not files:
        return
    if has_wildcards(files):
        if "OutputSandboxBaseDestURI" not in user:
            out["OutputSandboxBaseDestURI"] = output_uri
        return
    dest: list[str] = []
    for index, entry in enumerate(files):
        given = user_dest[index] if index < len(user_dest) else ""
        if given and URI_SCHEME.match(given):
            dest.append(given)
        elif given:
            dest.append(file_uri(output_uri, given))
        else:
            dest.append(file_uri(output_uri, file_name(entry)))
    _set_list(out, user, "OutputSandboxDestURI", dest)


_OWN_OUTPUT = "this service keeps the output sandbox in the job's own output area ({uri}), it sends no file elsewhere"


def _check_output_destinations(user_dest: Sequence[str], base_dest: str | None, output_uri: str) -> None:
    """Refuse an ``OutputSandboxDestURI`` entry or ``OutputSandboxBaseDestURI`` naming anything
    but the job's own output area: an absolute URI other than ``<output_uri>/<file name>``
    (``<output_uri>`` for the base), or a relative entry that is not a plain file name; or one
    naming a file the output area never serves (:func:`~wmproxy.domain.service_file`: ``user.proxy``).

    Raises:
        InvalidArgumentError: the message names the attribute and the entry.
    """
    own = _OWN_OUTPUT.format(uri=output_uri)
    for given in user_dest:
        if URI_SCHEME.match(given):
            rest = given[len(output_uri) + 1:] if given.startswith(output_uri + "/") else ""
            name = uri_file_name(rest)
            if not _is_file_name(name):
                raise InvalidArgumentError(f"Attribute OutputSandboxDestURI: {given!r} is not allowed: {own}")
        elif given and not _is_file_name(given):
            raise InvalidArgumentError(
                f"Attribute OutputSandboxDestURI: {given!r} is not allowed: a relative destination must be a file "
                f"name (no '/'); {own}")
        else:
            name = given
        if (why := service_file(name)) is not None:  # the output area never serves it (storage.withheld)
            raise InvalidArgumentError(f"Attribute OutputSandboxDestURI: {given!r} is reserved: {why}")
    if base_dest is not None and base_dest.rstrip("/") != output_uri:
        raise InvalidArgumentError(f"Attribute OutputSandboxBaseDestURI: {base_dest!r} is not allowed: {own}")


def _is_file_name(name: str) -> bool:
    return name not in ("", ".", "..") and "/" not in name and "\x00" not in name


__all__ = ["NODE_TYPE", "RegisteredArea", "isb_file_names", "jdl_lines", "registered_ad"]

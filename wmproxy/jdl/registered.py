"""The registered JDL and its serialisation (``wmproxy-behaviour.md`` §3.1 steps 12-13, §3.2 8c).

:func:`registered_ad` turns the user's JDL into the one stored as ``JDLToStart``;
:func:`jdl_lines` is the text of ``JDLOriginal``/``JDLToStart`` that getJDL returns.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Iterable

import classad2

from wmproxy.errors import InvalidJdlAttributeError, JdlError
from wmproxy.jdl.description import JobDescription, describe, string_list

_URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_LOCAL_SCHEME = "file"
_WILDCARDS = ("*", "?", "[")


def is_remote_uri(entry: str) -> bool:
    """Whether a sandbox entry names a remote file (``gsiftp://``, ``https://``...).

    ``file://`` names a file on the client's machine, like a plain path: the client
    uploads it (the gLite UI treats ``file://`` as its local protocol).

    Args:
        entry: an ``InputSandbox`` entry as written in the JDL.

    Returns:
        True for ``<scheme>://...`` with a scheme other than ``file``.
    """
    match = _URI_SCHEME.match(entry)
    return match is not None and match.group(1).lower() != _LOCAL_SCHEME


def input_sandbox_files(description: JobDescription) -> list[str]:
    """The file names the client must upload into ``<jobdir>/input`` (§3.4, §4.1).

    Args:
        description: the job's description.

    Returns:
        Basenames of the local (non-remote) ``InputSandbox`` entries, in JDL order,
        each once.
    """
    names: list[str] = []
    for entry in description.input_sandbox:
        if not is_remote_uri(entry):
            name = _basename(entry)
            if name not in names:
                names.append(name)
    return names


def registered_ad(
    ad: classad2.ClassAd,
    *,
    job_id: str,
    certificate_subject: str,
    proxy_vo: str | None,
    proxy_fqan: str | None,
    isb_base_uri: str,
    job_dir: str,
    description: JobDescription | None = None,
) -> classad2.ClassAd:
    """Build the registered JDL (``JDLToStart``) of a simple job.

    Implements ``wmproxy-behaviour.md`` §3.1 step 6 (VO check), step 8 (interactive
    ``Environment`` additions), step 12 (attributes set, removed and normalised) and
    §3.2 step 8c (``OutputSandboxDestURI`` with the job's ``isb_base_uri`` as dest URI).
    ``LB_sequence_code`` is left to the caller.

    Args:
        ad: the user's JDL; it is validated with :func:`describe` and not modified.
        description: the ad's description when the caller already has it (the
            DAG-level ad of a compound job, which :func:`describe` cannot take alone).
        job_id: the new job id, stored as ``edg_jobid``.
        certificate_subject: the caller's DN without proxy CNs.
        proxy_vo: VO of the delegated proxy's first FQAN, if any.
        proxy_fqan: the delegated proxy's first FQAN, stored as ``VOMS_FQAN``.
        isb_base_uri: ``WMPInputSandboxBaseURI``, the gsiftp URI of the job directory.
        job_dir: absolute path of the job directory on the server.

    Returns:
        A new ClassAd.

    Raises:
        InvalidJdlAttributeError: the JDL's ``VirtualOrganisation`` differs from
            ``proxy_vo`` (case-insensitive), or anything :func:`describe` raises.
        InvalidArgumentError: see :func:`describe`.
        JdlError: see :func:`describe`.
    """
    if description is None:
        description = describe(ad)
    out = classad2.ClassAd(str(ad))
    base = isb_base_uri.rstrip("/")

    _set_virtual_organisation(out, description.virtual_organisation, proxy_vo)
    out["edg_jobid"] = job_id
    out["CertificateSubject"] = certificate_subject
    if proxy_fqan:
        out["VOMS_FQAN"] = proxy_fqan
    out["WMPInputSandboxBaseURI"] = base
    out["InputSandboxPath"] = f"{job_dir}/input"
    out["OutputSandboxPath"] = f"{job_dir}/output"
    out["X509UserProxy"] = f"{job_dir}/user.proxy"
    for name in ("MyProxyServer", "JobProvenance"):
        if name in out and out[name] == "":
            del out[name]

    environment = list(description.environment)
    if description.job_type == "interactive":
        environment += _interactive_environment(out)
    if environment or "Environment" in out:
        _set_list(out, "Environment", environment)
    if "InputSandbox" in out:
        _set_list(out, "InputSandbox", [
            entry if is_remote_uri(entry) else f"{base}/input/{_basename(entry)}"
            for entry in description.input_sandbox
        ])
    if "OutputSandbox" in out:
        _set_list(out, "OutputSandbox", description.output_sandbox)
        _set_output_destinations(out, description.output_sandbox, base)
    return out


def jdl_lines(ad: classad2.ClassAd) -> str:
    """Serialise a JDL one attribute per line, as ``JDLOriginal``/``JDLToStart`` (§3.1 step 13).

    The output is a bracketed new-format ClassAd that :func:`wmproxy.jdl.parse_jdl`
    reads back to an equal ad. Strings and lists of strings are written on one line
    (``Environment = { "FOO=bar" };``); other expressions as classad2 prints them.

    Args:
        ad: any ClassAd.

    Returns:
        ``"[\\n  Name = value;\\n  ...\\n]\\n"``.
    """
    lines = [f"  {name} = {_value_text(ad, name)};" for name in ad.keys()]
    return "[\n" + "\n".join(lines) + ("\n" if lines else "") + "]\n"


def _value_text(ad: classad2.ClassAd, name: str) -> str:
    value = ad[name]
    if isinstance(value, str):
        return classad2.quote(value)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "{ " + ", ".join(classad2.quote(item) for item in value) + " }" if value else "{ }"
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)  # classad2 prints 1.5 as 1.500000000000000E+00
    return str(ad.lookup(name)).strip()


def _set_virtual_organisation(out: classad2.ClassAd, jdl_vo: str | None, proxy_vo: str | None) -> None:
    """§3.1 step 6: refuse a VO other than the proxy's, fill it in when absent."""
    if jdl_vo is not None and proxy_vo and jdl_vo.lower() != proxy_vo.lower():
        raise InvalidJdlAttributeError(
            f"Jdl VirtualOrganisation attribute ({jdl_vo}) is different from "
            f"delegated Proxy Virtual Organisation ({proxy_vo})"
        )
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


def _set_output_destinations(out: classad2.ClassAd, files: tuple[str, ...], base: str) -> None:
    """§3.2 step 8c: ``OutputSandboxDestURI``, or ``OutputSandboxBaseDestURI`` with wildcards."""
    if not files:
        return
    if any(w in entry for entry in files for w in _WILDCARDS):
        if "OutputSandboxBaseDestURI" not in out:
            out["OutputSandboxBaseDestURI"] = f"{base}/output"
        return
    user_dest = string_list(out, "OutputSandboxDestURI")
    base_dest = None
    if "OutputSandboxBaseDestURI" in out:
        value = out["OutputSandboxBaseDestURI"]
        if not isinstance(value, str):
            raise JdlError("Attribute OutputSandboxBaseDestURI must be a string")
        base_dest = value.rstrip("/")
    dest: list[str] = []
    for index, entry in enumerate(files):
        given = user_dest[index] if index < len(user_dest) else ""
        if given and _URI_SCHEME.match(given):
            dest.append(given)
        elif given:
            dest.append(f"{base}/output/{given}")
        elif base_dest:
            dest.append(f"{base_dest}/{_basename(entry)}")
        else:
            dest.append(f"{base}/output/{_basename(entry)}")
    _set_list(out, "OutputSandboxDestURI", dest)


def _set_list(out: classad2.ClassAd, name: str, values: Iterable[str]) -> None:
    """Set a list-of-strings attribute, keeping the user's spelling of its name."""
    existing = next((key for key in out.keys() if key.lower() == name.lower()), name)
    if existing in out:
        del out[existing]
    out[existing] = list(values)


def _basename(entry: str) -> str:
    """File name of a sandbox entry: a path, a ``file://`` URI or a remote URI."""
    match = _URI_SCHEME.match(entry)
    path = entry[match.end():] if match else entry
    return posixpath.basename(path.rstrip("/"))

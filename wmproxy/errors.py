"""Domain exceptions of wmproxy.

Every layer below the SOAP port raises these; only ``wmproxy.soap.faults`` turns
them into WSDL faults and only ``wmproxy.sandbox.http`` into HTTP statuses.

Each class carries the numeric error code of the reference service
(``wmproxy-behaviour.md`` §1.5.2, base 1200 = GLITE_WMS_NETWORKSERVER_ERROR_BASE) so
that the ``ErrorCode`` field of the fault detail is what gLite clients expect.
"""

from __future__ import annotations


class WMProxyError(Exception):
    """Base of every error the service reports to a client.

    Args:
        message: one human readable sentence; it becomes the fault ``Description``
            and ``faultstring``. Never put secrets (keys, passphrases) in it.
        causes: extra lines for ``FaultCause``; defaults to ``[message]``.
    """

    code: int = 1201  # WMS_FATAL
    prefix: str = ""

    def __init__(self, message: str, *, causes: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = self.prefix + message
        self.causes = causes if causes is not None else [self.message]

    def __str__(self) -> str:
        return self.message


# --- authentication / authorization (AuthenticationFault, AuthorizationFault) ---

class AuthenticationError(WMProxyError):
    """No usable client credential (1206)."""

    code = 1206


class AuthorizationError(WMProxyError):
    """The caller may not do this (1207)."""

    code = 1207


class LimitedProxyError(AuthorizationError):
    """A limited proxy (RFC 3820 limited policy or legacy ``CN=limited proxy``) was used for
    an operation that creates, starts, changes or delegates (1207, AuthorizationFault)."""


class FqanMismatchError(AuthorizationError):
    """The client proxy's primary FQAN differs from the delegated proxy's (1207; WMS 3.3
    wording, WTS bug 54728)."""


class ProxyError(WMProxyError):
    """A proxy certificate is missing, unreadable or invalid (1212)."""

    code = 1212
    prefix = "Proxy exception: "


class ProxyExpiredError(ProxyError):
    """A delegated or job proxy has (nearly) expired (1213).

    The message keeps the WMS 3.3 wording "The delegated Proxy has expired" that
    the gLite test suites look for (``wmproxy-behaviour.md`` §3.1).
    """

    code = 1213
    prefix = ""


class DelegationError(WMProxyError):
    """Delegation id or stored delegation problem (1215)."""

    code = 1215


class InvalidDelegationIdError(DelegationError):
    """A delegation id that cannot name a credential (contains ``/``, too long...)."""


class DelegationNotFoundError(DelegationError):
    """No delegated proxy for (caller DN, delegation id)."""


class DelegationLimitError(DelegationError):
    """putProxy of a new delegation id for a DN that has ``[limits] max_delegations_per_user`` stored."""


class ProxyVerificationError(ProxyError):
    """putProxy got a certificate chain that fails a check (1212)."""


class ProxyPolicyError(ProxyVerificationError):
    """A proxy level of a chain whose RFC 3820 policy language is neither id-ppl-inheritAll
    (1.3.6.1.5.5.7.21.1) nor the Globus limited proxy (1.3.6.1.4.1.3536.1.1.1.9): an
    id-ppl-independent proxy (1.3.6.1.5.5.7.21.2) has none of its issuer's rights, and a
    language the service does not understand must not be read as inheritAll (RFC 3820), so the
    chain is refused (1212; at the TLS edge an AuthenticationFault, 1206).

    Attributes:
        policy_language: the dotted OID of the refused language.
    """

    def __init__(self, message: str, *, policy_language: str) -> None:
        super().__init__(message)
        self.policy_language = policy_language


# --- jobs ---

class JobNotFoundError(WMProxyError):
    """Unknown or purged job id, or a job of another user (1218, JobUnknownFault).

    Jobs of other users are reported exactly like unknown ones, so their existence
    does not leak.
    """

    code = 1218

    def __init__(self, job_id: str, endpoint: str = "") -> None:
        where = f" ({endpoint})" if endpoint else ""
        super().__init__(
            "The job has not been registered from this Workload Manager Proxy server"
            f"{where} or it has been purged: {job_id}"
        )
        self.job_id = job_id


class OperationNotAllowedError(WMProxyError):
    """The job's state does not allow the operation (1226)."""

    code = 1226
    prefix = "The Operation is not allowed: "


# --- arguments and JDL (InvalidArgumentFault, GenericFault) ---

class InvalidArgumentError(WMProxyError):
    """A request argument is malformed (1225, InvalidArgumentFault)."""

    code = 1225


class JdlError(WMProxyError):
    """The JDL cannot be parsed or lacks a mandatory attribute (1219, InvalidArgumentFault)."""

    code = 1219


class JdlSyntaxError(JdlError):
    """The JDL text is not a ClassAd."""


class JdlExpressionError(JdlError):
    """A JDL expression the service will not or cannot evaluate: one that could cost far
    more than the JDL is long (``wmproxy.jdl.check_expressions``), or a ``Requirements`` or
    ``Rank`` classad2 failed on (1219, InvalidArgumentFault; the execution worker aborts the
    job with the message as its reason)."""


class InvalidJdlAttributeError(WMProxyError):
    """A JDL attribute has a value the service refuses (1220, GenericFault in the reference)."""

    code = 1220


# --- sandbox ---

class SandboxError(WMProxyError):
    """Sandbox file system problem (1203)."""

    code = 1203


class SandboxBusyError(OperationNotAllowedError):
    """Another request is still removing (or putting back) the job's sandbox area, moved aside
    as ``.purging-*`` under its lock: the operation is refused and may be tried again (1226, as
    the reference's "operation aborted" when another operation held the job's lock)."""


class SandboxPathError(InvalidArgumentError):
    """A sandbox path escapes the job's area or names something that is not a file."""


class SandboxNameError(InvalidArgumentError):
    """A sandbox file name the service refuses: control characters, ``/``, ``.``/``..``,
    the name of an upload in progress, or longer than ``[limits] max_sandbox_name_bytes``
    (1225; HTTP 400)."""


class SandboxFileCountError(InvalidArgumentError):
    """A job lists or uploads more sandbox files than ``[limits] max_input_sandbox_files`` /
    ``max_output_sandbox_files`` allow (1225; HTTP 403). The message starts with the
    reference's "The maximum number of input|output sandbox files is reached"."""


class QuotaExceededError(WMProxyError):
    """An upload would exceed MaxInputSandboxSize or the user's quota (1224)."""

    code = 1224


class ServerOverloadedError(WMProxyError):
    """The service refuses work because it is overloaded (1228)."""

    code = 1228


class InspectionLimitError(ServerOverloadedError):
    """An inspection request over ``[inspection] max_requests_per_job`` or
    ``max_requests_per_user`` (1228, ServerOverloadedFault: asked again once the oldest
    requests are past ``[inspection] retention``)."""


class NotSupportedError(WMProxyError):
    """Operation deliberately unsupported (GenericFault), e.g. delegation-2 getServiceMetadata."""

    code = 1201

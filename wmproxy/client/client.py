"""WMProxyClient: one method per WMProxy/delegation operation, plain values in and out."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from wmproxy.client import envelope, models
from wmproxy.client.delegation import Port, delegation_port, parse_version, sign_request
from wmproxy.client.faults import WMProxyClientError, translated_errors
from wmproxy.client.jsdl import JsdlInput, jsdl_part
from wmproxy.client.models import (
    CEMatch,
    GraphNode,
    JobIds,
    JobStatus,
    NewProxyRequest,
    OutputFile,
    ProxyInfo,
    Quota,
    RenewalInfo,
)
from wmproxy.client.wsdl import BINDINGS, WMP_NS, wsdl_path

JdlKind = Literal["ORIGINAL", "REGISTERED"]

#: The gLite error code of an unknown or purged job (JobUnknownFault; ``WMS_JOB_NOT_FOUND``).
JOB_UNKNOWN_CODE = "1218"

log = logging.getLogger("wmproxy.client")


class WMProxyClient:
    """A WMProxy endpoint seen through the three ports of ``wsdl/wmproxy.wsdl``.

    Args:
        endpoint: service URL, ``https://host:7443/glite_wms_wmproxy_server``; every
            port's address is overridden with it.
        proxy_file: the user's proxy (PEM cert, key, chain), the TLS client credential.
        ca_dir: grid CA directory used to verify the service.
        timeout: seconds a call (a WSDL load too) may take as a whole, connection and reply;
            seconds for connecting and for each read of a sandbox transfer.
        wsdl: WSDL location; default the local file, else ``<endpoint>?wsdl``.
        session: an already configured requests Session (tests); default
            :func:`~wmproxy.client.session.grid_session`.

    Every method raises :class:`~wmproxy.client.WMProxyClientError` on a SOAP fault,
    a transport/TLS failure or an unreadable response.
    """

    def __init__(
        self,
        endpoint: str,
        proxy_file: str,
        ca_dir: str,
        timeout: float = 120.0,
        *,
        wsdl: str | None = None,
        session: Any = None,
    ) -> None:
        self.endpoint = endpoint
        self.proxy_file = proxy_file
        self.timeout = timeout
        self.ca_dir = ca_dir
        if session is not None:
            self.session = session
        self._wsdl = wsdl
        self._version: str | None = None

    @functools.cached_property
    def session(self) -> Any:
        """The requests Session of zeep calls and sandbox transfers
        (:func:`~wmproxy.client.session.grid_session`), made on first use (requests is not
        imported by the light calls)."""
        from wmproxy.client.session import grid_session

        return grid_session(self.proxy_file, self.ca_dir)

    @functools.cached_property
    def _zeep(self) -> Any:
        """The zeep client, built on first use: getVersion and getJobStatus go through
        :mod:`.envelope` and need neither zeep nor the WSDL (issue 14: CLI start-up)."""
        import zeep

        from wmproxy.client.session import soap_transport

        local = wsdl_path()
        location = self._wsdl or (str(local) if local else f"{self.endpoint}?wsdl")
        transport = soap_transport(self.session, self.timeout, self.timeout)
        with translated_errors("wsdl"):
            return zeep.Client(location, transport=transport)

    @functools.cached_property
    def _ports(self) -> dict[str, Any]:
        return {key: self._zeep.create_service(qname, self.endpoint) for key, qname in BINDINGS.items()}

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST to the endpoint: through the requests session once there is one (zeep calls,
        transfers, tests), else on a new standard-library connection (:mod:`.direct`)."""
        if "session" in self.__dict__:
            from wmproxy.client.session import bounded_post

            response = bounded_post(self.session, self.endpoint, body, headers, self.timeout)
            return int(response.status_code), bytes(response.content)
        from wmproxy.client import direct

        return direct.post(self.endpoint, body, headers, proxy_file=self.proxy_file, ca_dir=self.ca_dir,
                           timeout=self.timeout)

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST one SOAP request to the endpoint, ``(HTTP status, reply body)``: the light
        path of the extension ports (:func:`wmproxy.client.jobs_ext.job_summary`).

        Raises:
            WMProxyClientError: a transport or TLS failure.
        """
        return self._post(body, headers)

    def _light_call(self, operation: str, *parts: tuple[str, str]) -> Any:
        """A WMProxy-port call through :func:`.envelope.call` (string parts only), logged as
        :meth:`_call`."""
        started = time.monotonic()
        try:
            return envelope.call(self._post, WMP_NS, operation, list(parts))
        finally:
            log.debug("%s %s: %.3f s", self.endpoint, operation, time.monotonic() - started)

    def _call(self, port: str, operation: str, *args: Any, **kwargs: Any) -> Any:
        """One SOAP call; logged at DEBUG with its duration (never its arguments: a putProxy
        argument is a proxy)."""
        started = time.monotonic()
        try:
            with translated_errors(operation):
                return getattr(self._ports[port], operation)(*args, **kwargs)
        except WMProxyClientError as exc:
            log.debug("%s %s failed after %.3f s: %s", self.endpoint, operation, time.monotonic() - started, exc)
            raise
        finally:
            log.debug("%s %s: %.3f s", self.endpoint, operation, time.monotonic() - started)

    # --- service information ---

    def get_version(self) -> str:
        """WMProxy ``getVersion``: the service version, e.g. ``"3.5.0"`` (cached)."""
        if self._version is None:
            self._version = str(self._light_call("getVersion") or "")
        return self._version

    def get_max_input_sandbox_size(self) -> int:
        """WMProxy ``getMaxInputSandboxSize``: the input sandbox limit in bytes."""
        return int(self._call("wmproxy", "getMaxInputSandboxSize"))

    def get_transfer_protocols(self) -> list[str]:
        """WMProxy ``getTransferProtocols``: protocol names, e.g. ``["gsiftp", "https"]``."""
        return models.string_list_from(self._call("wmproxy", "getTransferProtocols"))

    # --- delegation ---

    def delegation_port(self) -> Port:
        """The port the gLite UI would use for delegation with this service (needs getVersion)."""
        return delegation_port(parse_version(self.get_version()))

    def get_proxy_req(self, delegation_id: str, *, port: Port | None = None) -> str:
        """``getProxyReq``: a PEM certificate request for ``delegation_id`` ("" = server default).

        Args:
            delegation_id: the id to delegate under.
            port: ``wmproxy``, ``delegation1`` or ``delegation2``; default :meth:`delegation_port`.
        """
        return str(self._call(port or self.delegation_port(), "getProxyReq", delegation_id))

    def put_proxy(self, delegation_id: str, proxy_pem: str, *, port: Port | None = None) -> None:
        """``putProxy``: send the signed proxy chain (PEM) for ``delegation_id``."""
        self._call(port or self.delegation_port(), "putProxy", delegation_id, proxy_pem)

    def delegate(self, delegation_id: str | None = None, *, port: Port | None = None) -> str:
        """Delegate the user's proxy: getProxyReq, sign locally, putProxy.

        Args:
            delegation_id: the id; None or "" for automatic (sent empty: the service
                uses its default id for the caller, as ``glite-wms-job-submit -a``).
            port: as in :meth:`get_proxy_req`.

        Returns:
            The delegation id used ("" for automatic).

        Raises:
            WMProxyClientError: faults of getProxyReq/putProxy, or ``ProxyError`` when
                the local proxy cannot sign.
        """
        did = delegation_id or ""
        port = port or self.delegation_port()
        csr = self.get_proxy_req(did, port=port)
        self.put_proxy(did, sign_request(csr, self.proxy_file), port=port)
        return did

    def default_delegation_id(self) -> str | None:
        """The id under which an automatic (empty id) delegation of this proxy is stored, as
        the service reports it (getDelegatedProxyInfo of each candidate of
        :func:`~wmproxy.client.delegation.default_id_candidates`); None when none is found."""
        from wmproxy.client.delegation import default_id_candidates

        for candidate in default_id_candidates(self.proxy_file):
            try:
                self.get_delegated_proxy_info(candidate)
            except WMProxyClientError:
                continue
            return candidate
        return None

    def get_new_proxy_req(self) -> NewProxyRequest:
        """delegation-2 ``getNewProxyReq``: a CSR plus the id the service chose."""
        return models.new_proxy_request_from(self._call("delegation2", "getNewProxyReq"))

    def renew_proxy_req(self, delegation_id: str) -> str:
        """delegation-2 ``renewProxyReq``: a PEM CSR to renew an existing delegation."""
        return str(self._call("delegation2", "renewProxyReq", delegation_id))

    def get_termination_time(self, delegation_id: str) -> datetime:
        """delegation-2 ``getTerminationTime``: notAfter of the delegated proxy (aware, UTC)."""
        return self._call("delegation2", "getTerminationTime", delegation_id)  # type: ignore[no-any-return]

    def destroy(self, delegation_id: str) -> None:
        """delegation-2 ``destroy``: delete the delegated proxy."""
        self._call("delegation2", "destroy", delegation_id)

    # --- jobs ---

    def job_register(self, jdl: str, delegation_id: str) -> JobIds:
        """WMProxy ``jobRegister``: register a job; it runs only after :meth:`job_start`.

        Args:
            jdl: the JDL text.
            delegation_id: a delegated proxy's id ("" = the service's default id).
        """
        return models.job_ids_from(self._call("wmproxy", "jobRegister", jdl, delegation_id), "jobRegister")

    def job_submit(self, jdl: str, delegation_id: str) -> JobIds:
        """WMProxy ``jobSubmit``: register and start a job that needs no upload."""
        return models.job_ids_from(self._call("wmproxy", "jobSubmit", jdl, delegation_id), "jobSubmit")

    def job_start(self, job_id: str) -> None:
        """WMProxy ``jobStart``: start a registered job whose input sandbox is uploaded."""
        self._call("wmproxy", "jobStart", job_id)

    def job_cancel(self, job_id: str) -> None:
        """WMProxy ``jobCancel``."""
        self._call("wmproxy", "jobCancel", job_id)

    def job_purge(self, job_id: str) -> None:
        """WMProxy ``jobPurge``: delete a finished job's sandbox (the job becomes Cleared)."""
        self._call("wmproxy", "jobPurge", job_id)

    def get_job_status(self, job_id: str) -> JobStatus:
        """WMProxy ``getJobStatus``: state name of the job and of its nodes.

        Raises:
            WMProxyClientError: ``JobUnknownFault`` for an unknown or purged job, as every other
                job operation: getJobStatus declares no JobUnknownFault on the wire, so the
                service answers it as a GenericFault with the gLite code 1218.
        """
        try:
            return models.job_status_from(self._light_call("getJobStatus", ("jobId", job_id)))
        except WMProxyClientError as exc:
            if exc.fault_type == "GenericFault" and exc.error_code == JOB_UNKNOWN_CODE:
                raise WMProxyClientError("JobUnknownFault", exc.description, exc.error_code, exc.method,
                                         exc.causes) from None
            raise

    def get_jdl(self, job_id: str, kind: JdlKind = "ORIGINAL") -> str:
        """WMProxy ``getJDL``: the JDL as sent (ORIGINAL) or as registered (REGISTERED)."""
        return str(self._call("wmproxy", "getJDL", job_id, kind))

    # --- sandboxes ---

    def get_sandbox_dest_uri(self, job_id: str, protocol: str = "https") -> list[str]:
        """WMProxy ``getSandboxDestURI``: input sandbox directory URIs for ``protocol``
        (``https``, ``gsiftp``, ``default`` or ``all``)."""
        return models.string_list_from(self._call("wmproxy", "getSandboxDestURI", job_id, protocol))

    def get_sandbox_bulk_dest_uri(self, job_id: str, protocol: str = "https") -> dict[str, list[str]]:
        """WMProxy ``getSandboxBulkDestURI``: ``{job or node id: [uri, ...]}``, the job first."""
        return models.dest_uris_from(self._call("wmproxy", "getSandboxBulkDestURI", job_id, protocol))

    def get_output_file_list(self, job_id: str, protocol: str = "https") -> list[OutputFile]:
        """WMProxy ``getOutputFileList``: ``[(uri, size in bytes), ...]`` of the output sandbox."""
        return models.output_files_from(self._call("wmproxy", "getOutputFileList", job_id, protocol))

    # --- quota ---

    def get_total_quota(self) -> Quota:
        """WMProxy ``getTotalQuota``: ``(soft, hard)`` disk quota in bytes; ``(-1, -1)``
        when the service has none (gLite clients then use :meth:`get_max_input_sandbox_size`)."""
        return models.quota_from(self._call("wmproxy", "getTotalQuota"))

    def get_free_quota(self) -> Quota:
        """WMProxy ``getFreeQuota``: ``(soft, hard)`` bytes left; ``(-1, -1)`` without quota."""
        return models.quota_from(self._call("wmproxy", "getFreeQuota"))

    # --- matchmaking and JSDL ---

    def job_list_match(self, jdl: str, delegation_id: str) -> list[CEMatch]:
        """WMProxy ``jobListMatch``: ``[(ce_id, rank), ...]`` of the CEs matching a normal job.

        An empty list means no CE matches (the service sends no fault for that).
        """
        return models.ce_matches_from(self._call("wmproxy", "jobListMatch", jdl, delegation_id))

    def job_register_jsdl(self, jsdl: JsdlInput, delegation_id: str) -> JobIds:
        """WMProxy ``jobRegisterJSDL``: :meth:`job_register` for a JSDL 1.0 job definition.

        Args:
            jsdl: a ``jsdl:JobDefinition`` element/tree or its XML as bytes/str (not modified).
            delegation_id: as in :meth:`job_register`.
        """
        part = jsdl_part(jsdl, "jobRegisterJSDL")
        return models.job_ids_from(
            self._call("wmproxy", "jobRegisterJSDL", jsdl=part, delegationId=delegation_id), "jobRegisterJSDL"
        )

    def job_submit_jsdl(self, jsdl: JsdlInput, delegation_id: str) -> JobIds:
        """WMProxy ``jobSubmitJSDL``: :meth:`job_submit` for a JSDL job definition
        (on the wire ``delegationId`` comes first, as in gLite's WSDL)."""
        part = jsdl_part(jsdl, "jobSubmitJSDL")
        return models.job_ids_from(
            self._call("wmproxy", "jobSubmitJSDL", delegationId=delegation_id, jsdl=part), "jobSubmitJSDL"
        )

    def job_list_match_jsdl(self, jsdl: JsdlInput, delegation_id: str) -> list[CEMatch]:
        """WMProxy ``jobListMatchJSDL``: :meth:`job_list_match` for a JSDL job definition."""
        part = jsdl_part(jsdl, "jobListMatchJSDL")
        return models.ce_matches_from(
            self._call("wmproxy", "jobListMatchJSDL", jsdl=part, delegationId=delegation_id)
        )

    # --- JDL templates ---

    def get_job_template(
        self,
        job_types: Iterable[str],
        executable: str,
        arguments: str,
        requirements: str,
        rank: str,
    ) -> str:
        """WMProxy ``getJobTemplate``: a JDL template.

        Args:
            job_types: ``NORMAL``, ``PARAMETRIC``, ``INTERACTIVE``, ``MPI`` (combinable).
            executable, arguments: string values of the template.
            requirements, rank: ClassAd expressions (inserted unquoted).
        """
        return str(self._call(
            "wmproxy", "getJobTemplate",
            models.job_type_list_to(job_types), executable, arguments, requirements, rank,
        ))

    def get_dag_template(
        self, graph: GraphNode, requirements: str, rank: str
    ) -> str:
        """WMProxy ``getDAGTemplate``: a DAG JDL template from a dependency tree
        (see :class:`~wmproxy.client.models.GraphNode`)."""
        return str(self._call("wmproxy", "getDAGTemplate", models.graph_to(graph), requirements, rank))

    def get_collection_template(
        self, job_number: int, requirements: str, rank: str
    ) -> str:
        """WMProxy ``getCollectionTemplate``: a collection of ``job_number`` nodes."""
        return str(self._call("wmproxy", "getCollectionTemplate", int(job_number), requirements, rank))

    def get_int_parametric_job_template(
        self,
        attributes: Iterable[str],
        param: int,
        start: int,
        step: int,
        requirements: str,
        rank: str,
    ) -> str:
        """WMProxy ``getIntParametricJobTemplate``: ``Parameters = param``,
        ``ParameterStart = start``, ``ParameterStep = step``; each of ``attributes`` is set
        to ``"_PARAM_"``."""
        return str(self._call(
            "wmproxy", "getIntParametricJobTemplate",
            models.string_list_to(attributes), int(param), int(start), int(step), requirements, rank,
        ))

    def get_string_parametric_job_template(
        self,
        attributes: Iterable[str],
        params: Iterable[str],
        requirements: str,
        rank: str,
    ) -> str:
        """WMProxy ``getStringParametricJobTemplate``: ``Parameters = {"p1", ...}``."""
        return str(self._call(
            "wmproxy", "getStringParametricJobTemplate",
            models.string_list_to(attributes), models.string_list_to(params), requirements, rank,
        ))

    # --- per-job ACLs ---

    def get_acl_items(self, job_id: str) -> list[str]:
        """WMProxy ``getACLItems``: the DNs allowed to access the job's sandboxes."""
        return models.string_list_from(self._call("wmproxy", "getACLItems", job_id))

    def add_acl_items(self, job_id: str, items: Iterable[str]) -> None:
        """WMProxy ``addACLItems``: give these DNs read access to the job."""
        self._call("wmproxy", "addACLItems", job_id, models.string_list_to(items))

    def remove_acl_item(self, job_id: str, item: str) -> None:
        """WMProxy ``removeACLItem``: remove one DN (the owner's cannot be removed)."""
        self._call("wmproxy", "removeACLItem", job_id, item)

    # --- proxy information ---

    def get_delegated_proxy_info(self, delegation_id: str) -> ProxyInfo:
        """WMProxy ``getDelegatedProxyInfo``: the caller's proxy delegated under ``delegation_id``."""
        return models.proxy_info_from(self._call("wmproxy", "getDelegatedProxyInfo", delegation_id))

    def get_job_proxy_info(self, job_id: str) -> ProxyInfo:
        """WMProxy ``getJobProxyInfo``: the proxy the job runs with."""
        return models.proxy_info_from(self._call("wmproxy", "getJobProxyInfo", job_id))

    def get_proxy_renewal_info(self, job_id: str) -> RenewalInfo:
        """WMProxy ``getProxyRenewalInfo`` (project extension, not in the gLite WSDL): the
        MyProxy renewal of the job's proxy (server, last attempt and result, proxy end).

        A service without the operation answers with a fault (``InvalidArgumentFault``
        "Unknown operation" from an older wmproxy, a detail-less fault from gLite); when the
        WSDL was read from such a service (``<endpoint>?wsdl``) the operation is not even
        known here: both raise :class:`WMProxyClientError`, the latter with fault type
        ``UnsupportedOperation``.
        """
        try:
            operation = self._ports["wmproxy"]["getProxyRenewalInfo"]
        except (KeyError, AttributeError):
            raise WMProxyClientError(
                "UnsupportedOperation", "the service's WSDL has no getProxyRenewalInfo", None, "getProxyRenewalInfo"
            ) from None
        with translated_errors("getProxyRenewalInfo"):
            return models.renewal_info_from(operation(job_id))

    # --- file perusal ---

    def enable_file_perusal(self, job_id: str, files: Iterable[str]) -> None:
        """WMProxy ``enableFilePerusal``: output files to peek at while the job runs
        (an empty list disables perusal). Needs ``PerusalFileEnable = true`` in the JDL."""
        self._call("wmproxy", "enableFilePerusal", job_id, models.string_list_to(files))

    def get_perusal_files(
        self, job_id: str, file: str, all_chunks: bool = False, protocol: str = "https"
    ) -> list[str]:
        """WMProxy ``getPerusalFiles``: URIs of the newly merged chunks of ``file``
        (all of them with ``all_chunks``); empty when nothing is new."""
        return models.string_list_from(
            self._call("wmproxy", "getPerusalFiles", job_id, file, bool(all_chunks), protocol)
        )

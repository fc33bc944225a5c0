"""The WMProxy port (namespace ``http://glite.org/wms/wmproxy``), rpc/literal.

Each method is a thin adapter: unpack the parts, call one service function, convert
the result. Part names, response accessors and declared faults follow
``WMProxy.wsdl`` exactly (``wmproxy-behaviour.md`` §1.3).
"""

from __future__ import annotations

from spyne import ServiceBase, rpc

from wmproxy.services import delegation, jobs, sandboxes, submission, uris
from wmproxy.soap import convert
from wmproxy.soap.calls import wmproxy_call
from wmproxy.soap.contract import operations_by_namespace
from wmproxy.soap.namespaces import WMPROXY
from wmproxy.soap.types import (
    DestURIsStructType,
    JobIdStructType,
    JobStatusStructType,
    Long_,
    Part,
    String,
    StringAndLongList,
    StringList,
)

#: Faults each operation declares in the project's WSDL; a fault outside the set is sent
#: as GenericFault, so strict clients only ever see declared faults.
DECLARED_FAULTS = operations_by_namespace()[WMPROXY]


def _call(ctx, method, fn):  # type: ignore[no-untyped-def]
    return wmproxy_call(ctx, method, DECLARED_FAULTS[method], fn)


class WMProxyPort(ServiceBase):
    """Operations of ``WMProxy_PortType``; faults as in :data:`DECLARED_FAULTS`."""

    @rpc(_returns=String, _out_variable_name="version")
    def getVersion(ctx):  # noqa: N802, N805
        return _call(ctx, "getVersion", lambda rt, p: rt.settings.service.version)

    @rpc(String, String, _returns=String, _out_variable_name="jdl")
    def getJDL(ctx, jobId, type):  # noqa: N802, N803, A002
        return _call(ctx, "getJDL", lambda rt, p: jobs.get_jdl(rt, p, jobId or "", type or ""))

    @rpc(String, String, _returns=Part(JobIdStructType), _out_variable_name="jobIdStruct")
    def jobRegister(ctx, jdl, delegationId):  # noqa: N802, N803
        return _call(
            ctx,
            "jobRegister",
            lambda rt, p: convert.job_id_struct(submission.register_job(rt, p, jdl or "", delegationId)),
        )

    @rpc(String)
    def jobStart(ctx, jobId):  # noqa: N802, N803
        _call(ctx, "jobStart", lambda rt, p: submission.start_job(rt, p, jobId or ""))

    @rpc(String, String, _returns=Part(JobIdStructType), _out_variable_name="jobIdStruct")
    def jobSubmit(ctx, jdl, delegationId):  # noqa: N802, N803
        return _call(
            ctx,
            "jobSubmit",
            lambda rt, p: convert.job_id_struct(submission.submit_job(rt, p, jdl or "", delegationId)),
        )

    @rpc(String)
    def jobCancel(ctx, jobId):  # noqa: N802, N803
        _call(ctx, "jobCancel", lambda rt, p: jobs.cancel_job(rt, p, jobId or ""))

    @rpc(String)
    def jobPurge(ctx, jobId):  # noqa: N802, N803
        _call(ctx, "jobPurge", lambda rt, p: jobs.purge_job(rt, p, jobId or ""))

    @rpc(_returns=Long_, _out_variable_name="size")
    def getMaxInputSandboxSize(ctx):  # noqa: N802, N805
        return _call(ctx, "getMaxInputSandboxSize", lambda rt, p: rt.settings.service.max_input_sandbox_size)

    @rpc(String, String, _returns=Part(StringList), _out_variable_name="path")
    def getSandboxDestURI(ctx, jobId, protocol):  # noqa: N802, N803
        return _call(
            ctx,
            "getSandboxDestURI",
            lambda rt, p: StringList(Item=sandboxes.dest_uris(rt, p, jobId or "", protocol)),
        )

    @rpc(String, String, _returns=Part(DestURIsStructType), _out_variable_name="DestURIsStructType")
    def getSandboxBulkDestURI(ctx, jobId, protocol):  # noqa: N802, N803
        return _call(
            ctx,
            "getSandboxBulkDestURI",
            lambda rt, p: convert.dest_uris_struct(sandboxes.bulk_dest_uris(rt, p, jobId or "", protocol)),
        )

    @rpc(_returns=Part(StringList), _out_variable_name="items")
    def getTransferProtocols(ctx):  # noqa: N802, N805
        return _call(ctx, "getTransferProtocols", lambda rt, p: StringList(Item=uris.transfer_protocols(rt.settings)))

    @rpc(String, String, _returns=Part(StringAndLongList), _out_variable_name="OutputFileAndSizeList")
    def getOutputFileList(ctx, jobId, protocol):  # noqa: N802, N803
        return _call(
            ctx,
            "getOutputFileList",
            lambda rt, p: convert.file_list(jobs.output_files(rt, p, jobId or "", protocol)),
        )

    @rpc(String, _returns=Part(JobStatusStructType), _out_variable_name="JobStatusStruct")
    def getJobStatus(ctx, jobId):  # noqa: N802, N803
        return _call(
            ctx, "getJobStatus", lambda rt, p: convert.job_status_struct(jobs.job_status(rt, p, jobId or ""))
        )

    @rpc(String, _returns=String, _out_variable_name="request")
    def getProxyReq(ctx, delegationID):  # noqa: N802, N803
        return _call(ctx, "getProxyReq", lambda rt, p: delegation.create_proxy_request(rt, p, delegationID)[1])

    @rpc(String, String)
    def putProxy(ctx, delegationID, proxy):  # noqa: N802, N803
        _call(ctx, "putProxy", lambda rt, p: delegation.store_proxy(rt, p, delegationID, proxy or ""))

"""The WMProxy port (namespace ``http://glite.org/wms/wmproxy``), rpc/literal.

Each method is a thin adapter: unpack the parts, call one service function, convert
the result. Part names, response accessors and declared faults follow
``WMProxy.wsdl`` exactly (``wmproxy-behaviour.md`` §1.3).
"""

from __future__ import annotations

from spyne import AnyXml, ServiceBase, rpc

from wmproxy.errors import InvalidArgumentError
from wmproxy.jdl import templates
from wmproxy.jdl.jsdl import jsdl_to_jdl
from wmproxy.jdl.templates import GraphNode
from wmproxy.services import (
    acl,
    delegation,
    jobs,
    load,
    matchmaking,
    perusal,
    quota,
    renewal_info,
    sandboxes,
    submission,
    uris,
)
from wmproxy.soap import convert
from wmproxy.soap.calls import wmproxy_call
from wmproxy.soap.contract import operations_by_namespace
from wmproxy.soap.namespaces import WMPROXY
from wmproxy.soap.types import (
    Boolean_,
    DestURIsStructType,
    GraphStructType,
    Integer_,
    JobIdStructType,
    JobStatusStructType,
    JobTypeList,
    Long_,
    Part,
    ProxyInfoStructType,
    ProxyRenewalInfoStructType,
    String,
    StringAndLongList,
    StringList,
)

#: Faults each operation declares in the project's WSDL; a fault outside the set is sent
#: as GenericFault, so strict clients only ever see declared faults.
DECLARED_FAULTS = operations_by_namespace()[WMPROXY]


def _call(ctx, method, fn):
    return wmproxy_call(ctx, method, DECLARED_FAULTS.get(method, frozenset({"GenericFault"})), fn)


class WMProxyPort(ServiceBase):
    """Operations of ``WMProxy_PortType``; faults as in :data:`DECLARED_FAULTS`."""

    @rpc(_returns=String, _out_variable_name="version")
    def getVersion(ctx):
        return _call(ctx, "getVersion", lambda rt, p: rt.settings.service.version)

    @rpc(String, String, _returns=String, _out_variable_name="jdl")
    def getJDL(ctx, jobId, type):  # noqa: A002
        return _call(ctx, "getJDL", lambda rt, p: jobs.get_jdl(rt, p, jobId or "", type or ""))

    @rpc(String, String, _returns=Part(JobIdStructType), _out_variable_name="jobIdStruct")
    def jobRegister(ctx, jdl, delegationId):
        return _call(
            ctx,
            "jobRegister",
            lambda rt, p: _create(submission.register_job, rt, p, jdl or "", delegationId),
        )

    @rpc(String)
    def jobStart(ctx, jobId):
        _call(ctx, "jobStart", lambda rt, p: submission.start_job(rt, p, jobId or ""))

    @rpc(String, String, _returns=Part(JobIdStructType), _out_variable_name="jobIdStruct")
    def jobSubmit(ctx, jdl, delegationId):
        return _call(
            ctx,
            "jobSubmit",
            lambda rt, p: _create(submission.submit_job, rt, p, jdl or "", delegationId),
        )

    @rpc(String)
    def jobCancel(ctx, jobId):
        _call(ctx, "jobCancel", lambda rt, p: jobs.cancel_job(rt, p, jobId or ""))

    @rpc(String)
    def jobPurge(ctx, jobId):
        _call(ctx, "jobPurge", lambda rt, p: jobs.purge_job(rt, p, jobId or ""))

    @rpc(_returns=Long_, _out_variable_name="size")
    def getMaxInputSandboxSize(ctx):
        return _call(ctx, "getMaxInputSandboxSize", lambda rt, p: rt.settings.service.max_input_sandbox_size)

    @rpc(String, String, _returns=Part(StringList), _out_variable_name="path")
    def getSandboxDestURI(ctx, jobId, protocol):
        return _call(
            ctx,
            "getSandboxDestURI",
            lambda rt, p: StringList(Item=sandboxes.dest_uris(rt, p, jobId or "", protocol)),
        )

    @rpc(String, String, _returns=Part(DestURIsStructType), _out_variable_name="DestURIsStructType")
    def getSandboxBulkDestURI(ctx, jobId, protocol):
        return _call(
            ctx,
            "getSandboxBulkDestURI",
            lambda rt, p: convert.dest_uris_struct(sandboxes.bulk_dest_uris(rt, p, jobId or "", protocol)),
        )

    @rpc(_returns=Part(StringList), _out_variable_name="items")
    def getTransferProtocols(ctx):
        return _call(ctx, "getTransferProtocols", lambda rt, p: StringList(Item=uris.transfer_protocols(rt.settings)))

    @rpc(String, String, _returns=Part(StringAndLongList), _out_variable_name="OutputFileAndSizeList")
    def getOutputFileList(ctx, jobId, protocol):
        return _call(
            ctx,
            "getOutputFileList",
            lambda rt, p: convert.file_list(jobs.output_files(rt, p, jobId or "", protocol)),
        )

    @rpc(String, _returns=Part(JobStatusStructType), _out_variable_name="JobStatusStruct")
    def getJobStatus(ctx, jobId):
        return _call(
            ctx, "getJobStatus", lambda rt, p: convert.job_status_struct(jobs.job_status(rt, p, jobId or ""))
        )

    @rpc(String, _returns=String, _out_variable_name="request")
    def getProxyReq(ctx, delegationID):
        return _call(ctx, "getProxyReq", lambda rt, p: delegation.create_proxy_request(rt, p, delegationID)[1])

    @rpc(String, String)
    def putProxy(ctx, delegationID, proxy):
        _call(ctx, "putProxy", lambda rt, p: delegation.store_proxy(rt, p, delegationID, proxy or ""))

    # --- quota (§4.4) ---

    @rpc(_returns=(Long_, Long_), _out_variable_names=("softLimit", "hardLimit"))
    def getTotalQuota(ctx):
        return _call(ctx, "getTotalQuota", quota.total_quota)

    @rpc(_returns=(Long_, Long_), _out_variable_names=("softLimit", "hardLimit"))
    def getFreeQuota(ctx):
        return _call(ctx, "getFreeQuota", quota.free_quota)

    # --- per-job ACL (§6.4) ---

    @rpc(String, _returns=Part(StringList), _out_variable_name="items")
    def getACLItems(ctx, jobId):
        return _call(ctx, "getACLItems", lambda rt, p: StringList(Item=acl.get_acl_items(rt, p, jobId or "")))

    @rpc(String, Part(StringList))
    def addACLItems(ctx, jobId, items):
        _call(ctx, "addACLItems", lambda rt, p: acl.add_acl_items(rt, p, jobId or "", _items(items)))

    @rpc(String, String)
    def removeACLItem(ctx, jobId, item):
        _call(ctx, "removeACLItem", lambda rt, p: acl.remove_acl_item(rt, p, jobId or "", item or ""))

    # --- proxy information (§5.5) ---

    @rpc(String, _returns=Part(ProxyInfoStructType), _out_variable_name="items")
    def getDelegatedProxyInfo(ctx, delegationID):
        return _call(
            ctx,
            "getDelegatedProxyInfo",
            lambda rt, p: convert.proxy_info_struct(delegation.delegated_proxy_info(rt, p, delegationID or "")),
        )

    @rpc(String, _returns=Part(ProxyInfoStructType), _out_variable_name="items")
    def getJobProxyInfo(ctx, jobId):
        return _call(
            ctx, "getJobProxyInfo", lambda rt, p: convert.proxy_info_struct(jobs.job_proxy_info(rt, p, jobId or ""))
        )

    # --- extension: MyProxy renewal of a job's proxy (issue 4; not in the reference WSDL) ---

    @rpc(String, _returns=Part(ProxyRenewalInfoStructType), _out_variable_name="renewal")
    def getProxyRenewalInfo(ctx, jobId):
        return _call(
            ctx,
            "getProxyRenewalInfo",
            lambda rt, p: convert.proxy_renewal_info_struct(renewal_info.proxy_renewal_info(rt, p, jobId or "")),
        )

    # --- perusal (§8) ---

    @rpc(String, Part(StringList))
    def enableFilePerusal(ctx, jobId, fileList):
        _call(ctx, "enableFilePerusal", lambda rt, p: perusal.enable_file_perusal(rt, p, jobId or "", _items(fileList)))

    @rpc(String, String, Boolean_, String, _returns=Part(StringList), _out_variable_name="fileList")
    def getPerusalFiles(ctx, jobId, file, allChunks, protocol):
        return _call(
            ctx,
            "getPerusalFiles",
            lambda rt, p: StringList(
                Item=perusal.perusal_files(rt, p, jobId or "", file or "", bool(allChunks), protocol)
            ),
        )

    # --- templates (§9): strings in, JDL out; no job is touched ---

    @rpc(Part(JobTypeList), String, String, String, String, _returns=String, _out_variable_name="jdl")
    def getJobTemplate(ctx, jobType, executable, arguments, requirements, rank):
        return _call(ctx, "getJobTemplate", lambda rt, p: templates.job_template(
            _list(jobType, "jobType"), executable or "", arguments or "", requirements or "", rank or ""))

    @rpc(Part(GraphStructType), String, String, _returns=String, _out_variable_name="jdl")
    def getDAGTemplate(ctx, dependencies, requirements, rank):
        return _call(ctx, "getDAGTemplate", lambda rt, p: templates.dag_template(
            _graph(dependencies), requirements or "", rank or ""))

    @rpc(Integer_, String, String, _returns=String, _out_variable_name="jdl")
    def getCollectionTemplate(ctx, jobNumber, requirements, rank):
        return _call(ctx, "getCollectionTemplate", lambda rt, p: templates.collection_template(
            _at_most(jobNumber if jobNumber is not None else 0, rt.settings.jobs.max_nodes, "jobNumber"),
            requirements or "", rank or ""))

    @rpc(Part(StringList), Integer_, Integer_, Integer_, String, String, _returns=String, _out_variable_name="jdl")
    def getIntParametricJobTemplate(ctx, attributes, param, parameterStart, parameterStep, requirements, rank):
        return _call(ctx, "getIntParametricJobTemplate", lambda rt, p: templates.int_parametric_template(
            _list(attributes, "Item"), param if param is not None else 0, parameterStart or 0,
            parameterStep if parameterStep is not None else 1, requirements or "", rank or ""))

    @rpc(Part(StringList), Part(StringList), String, String, _returns=String, _out_variable_name="jdl")
    def getStringParametricJobTemplate(ctx, attributes, param, requirements, rank):
        return _call(ctx, "getStringParametricJobTemplate", lambda rt, p: templates.string_parametric_template(
            _list(attributes, "Item"), _list(param, "Item"), requirements or "", rank or ""))

    # --- matchmaking (§3.7) ---

    @rpc(String, String, _returns=Part(StringAndLongList), _out_variable_name="CEIdAndRankList")
    def jobListMatch(ctx, jdl, delegationId):
        return _call(ctx, "jobListMatch", lambda rt, p: convert.file_list(
            matchmaking.list_match(rt, p, jdl or "", delegationId or "")))

    # --- JSDL (§12): the JobDefinition is mapped onto the equivalent JDL ---

    @rpc(Part(AnyXml), String, _returns=Part(JobIdStructType), _out_variable_name="jobIdStruct")
    def jobRegisterJSDL(ctx, jsdl, delegationId):
        return _call(ctx, "jobRegisterJSDL",
                     lambda rt, p: _create(submission.register_job, rt, p, _jdl_of(jsdl), delegationId))

    @rpc(String, Part(AnyXml), _returns=Part(JobIdStructType), _out_variable_name="jobIdStruct")
    def jobSubmitJSDL(ctx, delegationId, jsdl):
        return _call(ctx, "jobSubmitJSDL",
                     lambda rt, p: _create(submission.submit_job, rt, p, _jdl_of(jsdl), delegationId))

    @rpc(Part(AnyXml), String, _returns=Part(StringAndLongList), _out_variable_name="CEIdAndRankList")
    def jobListMatchJSDL(ctx, jsdl, delegationId):
        return _call(ctx, "jobListMatchJSDL", lambda rt, p: convert.file_list(
            matchmaking.list_match(rt, p, _jdl_of(jsdl), delegationId or "")))


def create_job(create, rt, principal, jdl: str, delegation_id):
    """``create`` (register_job or submit_job) after the per-submission node cap of ``[load]``;
    returns its RegisteredJob (``wmproxy.soap.direct`` serves the plain requests with it)."""
    load.check_submission_size(rt.settings, jdl)
    return create(rt, principal, jdl, delegation_id)


def _create(create, rt, principal, jdl: str, delegation_id):
    """:func:`create_job` as the JobIdStructType the Spyne methods return."""
    return convert.job_id_struct(create_job(create, rt, principal, jdl, delegation_id))


def _at_most(value: int, limit: int, name: str) -> int:
    """``value`` if it is at most ``limit`` (a template of more nodes than a job may have would
    only cost memory: 10**26 nodes once killed a worker)."""
    if value > limit:
        raise InvalidArgumentError(f"Invalid Argument: {name} must be at most {limit} (the most nodes a job may have)")
    return value


def _items(string_list) -> list[str]:
    """The ``Item`` strings of a StringList argument (None when the part is absent)."""
    return [item for item in (getattr(string_list, "Item", None) or []) if item is not None]


def _list(value, field: str) -> list[str] | None:
    """The strings of a list-typed part; None when the part itself is absent (→ "Invalid Argument")."""
    if value is None:
        return None
    return [item for item in (getattr(value, field, None) or []) if item is not None]


def _graph(value) -> GraphNode | None:
    return None if value is None else _graph_node(value)


def _graph_node(value) -> GraphNode:
    return GraphNode(value.name, [_graph_node(child) for child in (value.childrenJob or []) if child is not None])


def _jdl_of(jsdl) -> str:
    """The JDL equivalent of the ``jsdl`` part (a JobDefinition_Type: its JobDescription).

    Spyne's AnyXml hands over only the part's first child; the whole part, its parent, is
    converted, so that a second JobDescription is refused rather than dropped."""
    if jsdl is None:
        raise InvalidArgumentError("Invalid Argument: no JSDL JobDefinition given")
    part = jsdl.getparent()
    return jsdl_to_jdl(jsdl if part is None else part)

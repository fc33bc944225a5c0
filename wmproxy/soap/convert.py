"""Domain results → Spyne instances of the WSDL types."""

from __future__ import annotations

import datetime as dt

from wmproxy.security.proxy_info import ProxyInfo
from wmproxy.services.jobs import JobStatus
from wmproxy.services.renewal_info import ProxyRenewalInfo
from wmproxy.services.submission import RegisteredJob
from wmproxy.soap import types
from wmproxy.text import xml_text


def job_id_struct(job: RegisteredJob) -> types.JobIdStructType:
    return types.JobIdStructType(
        id=job.job_id,
        name=job.name,
        path=job.path,
        childrenJob=[job_id_struct(child) for child in job.children],
    )


def job_status_struct(status: JobStatus) -> types.JobStatusStructType:
    return types.JobStatusStructType(
        jobid=status.job_id,
        status=status.status,
        childrenJob=[job_status_struct(child) for child in status.children],
    )


def dest_uris_struct(entries: list[tuple[str, list[str]]]) -> types.DestURIsStructType:
    return types.DestURIsStructType(Item=[types.DestURIStructType(id=job_id, Item=uris) for job_id, uris in entries])


def file_list(entries: list[tuple[str, int]]) -> types.StringAndLongList:
    return types.StringAndLongList(file=[types.StringAndLongType(name=name, size=size) for name, size in entries])


def epoch(when: dt.datetime) -> str:
    """``when`` (aware) as the wire's decimal UNIX epoch seconds, e.g. ``"1300000000"``."""
    return str(int(when.timestamp()))


def proxy_info_struct(info: ProxyInfo) -> types.ProxyInfoStructType:
    """Key size as a decimal string of bits, times as :func:`epoch` strings. A VOMS AC that did
    not verify is listed with the one Attribute ``not verified: <reason>`` (the WSDL needs at
    least one; it is not an FQAN: it does not start with ``/``). Names and attributes come from
    certificates a client sent: a character XML cannot carry (a proxy CN with U+0001, stored
    before putProxy refused such a CN) is written ``\\x01`` (:func:`wmproxy.text.xml_text`)."""
    return types.ProxyInfoStructType(
        Subject=xml_text(info.subject),
        Issuer=xml_text(info.issuer),
        Identity=xml_text(info.identity),
        Type=info.type,
        Strength=str(info.strength),
        StartTime=epoch(info.start_time),
        EndTime=epoch(info.end_time),
        VOsInfo=[
            types.VOProxyInfoStructType(
                User=xml_text(vo.user), UserCA=xml_text(vo.user_ca), Server=xml_text(vo.server),
                ServerCA=xml_text(vo.server_ca), VOName=xml_text(vo.vo_name), URI=xml_text(vo.uri),
                StartTime=epoch(vo.start_time), EndTime=epoch(vo.end_time),
                Attribute=([xml_text(a) for a in vo.attributes] if vo.verified
                           else [xml_text(f"not verified: {vo.verify_error}")]),
            )
            for vo in info.vos
        ],
    )


def proxy_renewal_info_struct(info: ProxyRenewalInfo) -> types.ProxyRenewalInfoStructType:
    """Times to the second (xsd:dateTime, UTC); the proxy's end as :func:`epoch`."""
    return types.ProxyRenewalInfoStructType(
        myProxyServer=info.myproxy_server,
        registered=info.registered,
        lastAttempt=None if info.last_attempt is None else info.last_attempt.replace(microsecond=0),
        lastResult=info.last_result,
        lastError=info.last_error,
        renewals=info.renewals,
        proxyEndTime=epoch(info.proxy_end_time),
    )

"""Glue between a Spyne method and a service call: principal, runtime, fault mapping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from wmproxy.domain import Principal
from wmproxy.services.runtime import Runtime
from wmproxy.soap.faults import delegation_fault, wmproxy_fault

T = TypeVar("T")

PRINCIPAL_KEY = "wmproxy.principal"
RUNTIME_KEY = "wmproxy.runtime"


def _context(ctx: Any) -> tuple[Runtime, Principal]:
    environ = ctx.transport.req_env
    return environ[RUNTIME_KEY], environ[PRINCIPAL_KEY]


def wmproxy_call(ctx: Any, method: str, declared: frozenset[str], fn: Callable[[Runtime, Principal], T]) -> T:
    """Run ``fn(runtime, principal)``; any exception becomes the WMProxy fault of ``method``."""
    rt, principal = _context(ctx)
    try:
        return fn(rt, principal)
    except Exception as exc:  # noqa: BLE001 - every error must become a typed fault
        raise wmproxy_fault(method, exc, declared) from None


def delegation_call(ctx: Any, namespace: str, method: str, fn: Callable[[Runtime, Principal], T]) -> T:
    """Run ``fn(runtime, principal)``; any exception becomes a DelegationException."""
    rt, principal = _context(ctx)
    try:
        return fn(rt, principal)
    except Exception as exc:  # noqa: BLE001
        raise delegation_fault(namespace, method, exc) from None

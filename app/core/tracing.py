"""W3C Trace Context (https://www.w3.org/TR/trace-context/): a request's `traceparent` is honoured and passed on.

A valid incoming traceparent keeps its trace id and flags; this service's part of the trace gets a span id of its
own, sent back in the response's traceparent and written in the log lines of the request (trace_id). A missing or
invalid one is replaced by a new trace. Webhook events keep the traceparent of the change that emitted them, and
each delivery attempt sends it on with a new span id, so a receiver's trace continues the one that caused it.
"""

import re
import secrets
from contextvars import ContextVar
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str  # 32 lowercase hex digits, not all zero
    span_id: str  # 16 lowercase hex digits, not all zero: this service's span
    flags: str = "00"

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> "TraceContext":
        """The same trace, a new span (an outgoing call of this one)."""
        return TraceContext(self.trace_id, new_span_id(), self.flags)


trace_var: ContextVar[TraceContext | None] = ContextVar("trace", default=None)


def new_span_id() -> str:
    return secrets.token_hex(8)


def parse(header: str | None) -> TraceContext | None:
    """The trace context of a traceparent header (its span id is the caller's), or None when it is not a valid one:
    version ff, an all-zero trace or parent id, upper-case hex, or for version 00 anything after the flags."""
    if not header:
        return None
    match = _TRACEPARENT.fullmatch(header.strip())
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return TraceContext(trace_id, parent_id, flags)


def for_request(header: str | None) -> TraceContext:
    """This request's context: the caller's trace (a new span in it), or a new trace."""
    incoming = parse(header)
    if incoming is not None:
        return incoming.child()
    return TraceContext(secrets.token_hex(16), new_span_id(), "00")


def current_traceparent() -> str | None:
    """The traceparent of the work under way (a request, or a task it started), or None outside any."""
    context = trace_var.get()
    return context.traceparent if context is not None else None


def outgoing(stored: str | None) -> str:
    """The traceparent to send on a call made for `stored` (a traceparent kept with the work, e.g. an event): its
    trace with a new span id; a new trace when none was kept."""
    return (parse(stored) or for_request(None)).child().traceparent

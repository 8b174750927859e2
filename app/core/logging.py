"""JSON logs with a request id. Log records never carry request bodies or personal data: not in a message, and
not in a traceback, which is written without any exception's text (exception messages quote the values)."""

import json
import logging
import sys
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime

from app.core.tracing import trace_var

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        trace = trace_var.get()
        if trace is not None:
            entry["trace_id"] = trace.trace_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)

    def formatException(self, ei) -> str:  # noqa: N802 (logging's name)
        return format_traceback(ei[1]) if ei[1] is not None else ""


DATABASE_CODES = ("sqlstate", "constraint_name", "table_name", "column_name")
"""What a database error says of itself that names no value (its message and DETAIL do: "Key (external_id)=(...)",
"invalid input for query argument $3: ...", and SQLAlchemy's statement with its parameters)."""


def describe_exception(exc: BaseException) -> str:
    """An exception's type and its database codes, never its message."""
    codes = [f"{name}={value}" for name in DATABASE_CODES if isinstance(value := getattr(exc, name, None), str)]
    return f"{type(exc).__module__}.{type(exc).__qualname__}" + (f" ({', '.join(codes)})" if codes else "")


def format_traceback(exc: BaseException) -> str:
    """The stack of exc and of the exceptions it came from (causes, contexts, members of a group), each frame's
    file, line and code, and each exception's type: everything a traceback shows but the exceptions' texts."""
    chain, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    parts = []
    for error in reversed(chain):
        frames = "".join(traceback.format_list(traceback.extract_tb(error.__traceback__)))
        part = f"Traceback (most recent call last):\n{frames}{describe_exception(error)}"
        for member in getattr(error, "exceptions", ()):  # an exception group
            part += "\n  member: " + format_traceback(member).replace("\n", "\n  ")
        parts.append(part)
    return "\n\nwhich led to\n\n".join(parts)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # our middleware logs each request once

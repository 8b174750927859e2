"""The lines of a holdings import (NDJSON or CSV), read as they stream in: each validated as one holding of one
customer, and turned into a staging record, accepted or with the field it was rejected for."""

import csv
import hashlib
import json
from collections.abc import AsyncIterator

from pydantic import ValidationError

from app.core.errors import validation_errors
from app.customers.intake_schemas import HoldingImportLine

CSV_COLUMNS = ("customer_id", "product_code", "opened_at", "balance", "as_of")
REQUIRED_CSV_COLUMNS = frozenset({"customer_id", "product_code", "balance", "as_of"})
FORMATS = {"application/x-ndjson": "ndjson", "application/jsonl": "ndjson", "text/csv": "csv"}
# The staging record's columns, in order (app.customers.models.HoldingImportLine, less import_id and customer_id).
RECORD_COLUMNS = ("line", "external_id", "product_code", "opened_at", "balance", "as_of", "pointer", "detail")


class BadHeader(ValueError):
    """A CSV whose header lacks a required column: the whole file is refused."""


async def split_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The lines of a byte stream, without their line ends (a last line without one included)."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r")
    if buffer:
        yield buffer.rstrip(b"\r")


class LineReader:
    """Turns raw lines into staging records, keeping the file's digest (format and every line) and counts."""

    def __init__(self, fmt: str) -> None:
        self.format = fmt
        self.digest = hashlib.sha256(fmt.encode() + b"\n")
        self.lines = 0
        self.header: list[str] | None = None

    async def records(self, lines: AsyncIterator[bytes]) -> AsyncIterator[tuple]:
        async for raw in lines:
            self.digest.update(len(raw).to_bytes(8, "big") + raw)
            self.lines += 1
            if not raw.strip():
                continue
            if self.format == "csv" and self.header is None:
                self.header = self._header(raw)
                continue
            yield self.record(self.lines, raw)

    def _header(self, raw: bytes) -> list[str]:
        header = [name.strip() for name in next(csv.reader([raw.decode("utf-8", "replace")]))]
        missing = sorted(REQUIRED_CSV_COLUMNS - set(header))
        unknown = sorted(set(header) - set(CSV_COLUMNS))
        if missing or unknown:
            raise BadHeader(
                f"the CSV header must name {', '.join(CSV_COLUMNS[:2])}, balance, as_of (and may name opened_at); "
                + (f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(unknown)}")
            )
        return header

    def record(self, line_no: int, raw: bytes) -> tuple:
        """The staging record of one line: accepted (pointer and detail null) or rejected for its first bad field,
        keeping the customer id when it could be read (so that the customer's other lines are held back too)."""
        try:
            if self.format == "csv":
                values = next(csv.reader([raw.decode("utf-8")]))
                if len(values) != len(self.header):
                    position = self.header.index("customer_id")
                    customer = values[position] if position < len(values) else None
                    return _rejected(line_no, customer, "", f"expected {len(self.header)} values, one per column")
                fields = {name: value for name, value in zip(self.header, values, strict=True) if value != ""}
                line = HoldingImportLine.model_validate(fields)
            else:
                line = HoldingImportLine.model_validate_json(raw)
        except ValidationError as exc:
            first = validation_errors([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])[0]
            return _rejected(line_no, self._customer_of(raw), first.get("pointer") or "", first["detail"])
        except (UnicodeDecodeError, csv.Error):
            return _rejected(line_no, None, "", "not a line of UTF-8 CSV")
        return (line_no, line.customer_id, line.product_code, line.opened_at, line.balance, line.as_of, None, None)

    def _customer_of(self, raw: bytes) -> object:
        """The customer id of a line rejected for another field, when it can be read."""
        try:
            if self.format == "csv":
                return next(csv.reader([raw.decode("utf-8")]))[self.header.index("customer_id")]
            document = json.loads(raw)
            return document.get("customer_id") if isinstance(document, dict) else None
        except (ValueError, IndexError, csv.Error):
            return None


def _rejected(line_no: int, customer: object, pointer: str, detail: str) -> tuple:
    external_id = customer if isinstance(customer, str) and 0 < len(customer) <= 64 else None
    return (line_no, external_id, None, None, None, None, pointer[:100] or None, detail[:300])

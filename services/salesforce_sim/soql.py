"""A SOQL subset: SELECT fields|COUNT() FROM Object [WHERE a op v [AND ...]] [LIMIT n].

Operators: =, !=, <>, IN (...). Values: 'strings' with SOQL escapes, true, false, null, numbers.
String comparisons ignore case and 15/18-character ids match each other, as in Salesforce.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .model import same_id

Value = str | bool | float | None
Row = dict[str, Any]

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>!=|<>|=|,|\(|\))|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))",
    re.S,
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


class SoqlError(Exception):
    """A query Salesforce would refuse; ``code`` is the REST errorCode."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Query:
    fields: list[str]  # canonical names; empty for COUNT()
    count: bool
    sobject: str
    where: list[tuple[str, str, list[Value]]]
    limit: int | None


def _unescape(literal: str) -> str:
    body, out, i = literal[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt.lower() in _ESCAPES:
                out.append(_ESCAPES[nxt.lower()] if nxt not in "\"'\\" else nxt)
                i += 2
                continue
            raise SoqlError(
                "MALFORMED_QUERY", f"Invalid string literal '{literal}'. Illegal character sequence '\\{nxt}'"
            )
        out.append(ch)
        i += 1
    return "".join(out)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token near: {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def parse(text: str, schema: dict[str, list[str]]) -> Query:
    """Parse ``text`` against ``schema`` (object name -> field names)."""
    toks = _tokens(text)
    pos = 0

    def peek() -> tuple[str, str]:
        return toks[pos] if pos < len(toks) else ("end", "")

    def take(kind: str | None = None, word: str | None = None) -> str:
        nonlocal pos
        k, v = peek()
        if (kind and k != kind) or (word and v.upper() != word):
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{v or 'end of query'}'")
        pos += 1
        return v

    take("word", "SELECT")
    raw_fields: list[str] = []
    count = False
    if peek()[1].upper() == "COUNT":
        take()
        take("op", "(")
        take("op", ")")
        count = True
    else:
        raw_fields.append(take("word"))
        while peek() == ("op", ","):
            take()
            raw_fields.append(take("word"))
    take("word", "FROM")
    name = take("word")
    sobject = next((s for s in schema if s.lower() == name.lower()), None)
    if sobject is None:
        raise SoqlError("INVALID_TYPE", f"sObject type '{name}' is not supported.")

    def field(raw: str) -> str:
        match = next((f for f in schema[sobject] if f.lower() == raw.lower()), None)
        if match is None:
            raise SoqlError("INVALID_FIELD", f"No such column '{raw}' on entity '{sobject}'.")
        return match

    fields = [field(f) for f in raw_fields]

    def take_value() -> Value:
        nonlocal pos
        value = _value(peek())
        pos += 1
        return value

    where: list[tuple[str, str, list[Value]]] = []
    if peek()[1].upper() == "WHERE":
        take()
        while True:
            name_ = field(take("word"))
            kind, op = peek()
            if kind == "op" and op in ("=", "!=", "<>"):
                take()
                where.append((name_, "!=" if op == "<>" else op, [take_value()]))
            elif kind == "word" and op.upper() == "IN":
                take()
                take("op", "(")
                values = [take_value()]
                while peek() == ("op", ","):
                    take()
                    values.append(take_value())
                take("op", ")")
                where.append((name_, "IN", values))
            else:
                raise SoqlError(
                    "MALFORMED_QUERY", f"unsupported operator '{op}' (the simulator knows =, !=, IN)"
                )
            if peek()[1].upper() != "AND":
                break
            take()
    limit = None
    if peek()[1].upper() == "LIMIT":
        take()
        limit = int(float(take("num")))
    if peek()[0] != "end":
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{peek()[1]}' (unsupported by the simulator)")
    return Query(fields, count, sobject, where, limit)


def _value(tok: tuple[str, str]) -> Value:
    kind, text = tok
    if kind == "str":
        return _unescape(text)
    if kind == "num":
        return float(text)
    if kind == "word" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if kind == "word" and text.lower() == "null":
        return None
    raise SoqlError("MALFORMED_QUERY", f"unexpected value: '{text or 'end of query'}'")


def _equal(field: str, actual: Any, wanted: Value) -> bool:
    if wanted is None or actual is None:
        return actual is None and wanted is None
    if isinstance(actual, bool) or isinstance(wanted, bool):
        return actual == wanted
    if isinstance(actual, str) and isinstance(wanted, str):
        if field == "Id" or field.endswith("Id"):
            return same_id(actual, wanted) or actual.casefold() == wanted.casefold()
        return actual.casefold() == wanted.casefold()
    return bool(actual == wanted)


def run(query: Query, rows: Iterable[Row], url_for: Callable[[Row], str]) -> dict[str, Any]:
    """The REST query response for ``rows`` (each row has every schema field)."""
    matched = []
    for row in rows:
        ok = True
        for name, op, values in query.where:
            hit = any(_equal(name, row.get(name), v) for v in values)
            if (op == "!=" and hit) or (op != "!=" and not hit):
                ok = False
                break
        if ok:
            matched.append(row)
    if query.limit is not None:
        matched = matched[: query.limit]
    if query.count:
        return {"totalSize": len(matched), "done": True, "records": []}
    records = [
        {"attributes": {"type": query.sobject, "url": url_for(row)}, **{f: row.get(f) for f in query.fields}}
        for row in matched
    ]
    return {"totalSize": len(records), "done": True, "records": records}

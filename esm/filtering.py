"""Lambda event filtering (``FilterCriteria``): compile patterns once, match records; no I/O.

docs/semantics.md §7. :func:`compile_filter_criteria` turns the ``Filters[i].Pattern`` strings
into closures and small objects; :meth:`RecordFilter.matches` runs them against one Lambda record
dict (docs/semantics.md §3.1, §4.1, §5.1). A record passes if any pattern matches (OR); a pattern
matches if every field it names matches (AND); operators in one rule array are ORed.

What each pattern is matched against
    SQS       the record; ``body`` is the data key.
    Kinesis   the record with the fields of ``kinesis`` lifted to the top, which is how AWS
              writes Kinesis patterns: ``{"partitionKey": ["1"], "data": {"Location": [...]}}``
              (Lambda Developer Guide, invocation-eventfiltering.md "Filtering examples", and
              with-kinesis-filtering.html: ``{"data": {"order": {"type": ["buy"]}}}``).
              ``{"kinesis": {"partitionKey": [...], "data": {...}}}`` works too. ``data`` is
              base64-decoded, then parsed.
    DynamoDB  the record; ``dynamodb`` is already an object in DynamoDB JSON, so numeric
              operators under it are refused at compile time (numbers are strings there).
    Metadata fields (``eventSource``, ``eventSourceARN``, ``awsRegion``, SQS ``attributes`` and
    ``messageAttributes``, DynamoDB ``eventName`` ...) may be named too (docs/semantics.md §7.3).

Decisions where AWS is silent
    - "Valid JSON" data is an object or an array: the first non-whitespace character is ``{``
      or ``[`` and strict RFC 8259 parsing (orjson: no NaN/Infinity) succeeds. Any other body,
      including JSON scalars such as ``123`` or ``"x"``, is a plain string. The data is parsed
      at most once per ``matches()`` call, and only when some pattern names the data key.
    - Body format table (docs/semantics.md §7.3): a rule array on ``body`` only matches a
      plain-string body; an object on ``body`` only matches a JSON body; otherwise that pattern
      does not match. For Kinesis/DynamoDB a rule array on the data key is refused; invalid
      base64, non-UTF-8 or non-JSON ``data`` fails every pattern that names ``data``.
    - Equality is typed, on the parsed values: ``"300"``, ``300`` and ``300.0`` are three
      different values and ``true`` is not ``1`` (but ``300.0`` and ``3.0e2`` are the same
      float, and orjson reads integers beyond 64 bits as floats). ``numeric`` compares by
      value and never matches strings or booleans.
    - Arrays in the event (EventBridge): a rule array matches if any leaf of the (flattened)
      array matches; an object pattern matches if one object element matches all of it
      (fields from different elements are not combined).
    - ``exists`` looks at leaves only: ``exists: true`` matches any present non-object value
      (``null`` included, an empty array excluded); ``exists: false`` is its exact negation, so
      it also matches a field holding an object.
    - ``anything-but`` matches any present leaf (string, number, boolean, null) that is not in
      its list. ``equals-ignore-case`` compares ``str.lower()`` forms.
    - Refused: non-JSON, non-object, empty objects or arrays, values that are neither arrays
      nor objects, nested arrays, objects with other than one operator, ``wildcard``,
      ``anything-but`` / ``prefix`` / ``suffix`` with an operator object, unknown operators,
      bad operator arguments, and a ``numeric`` range whose lower bound exceeds its upper bound.
    - ``cidr`` (not in Lambda's documented table, accepted by CloudFormation and SAM) matches as
      in EventBridge: a string holding an IPv4 or IPv6 address inside the block; loading a
      mapping that uses it warns (:func:`undocumented_operators`).
    - Patterns are parsed with orjson like the records (duplicate keys: the last wins).
"""

from __future__ import annotations

import binascii
import ipaddress
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import orjson

from esm.arns import SourceKind

__all__ = [
    "UNDOCUMENTED",
    "FilterPatternError",
    "RecordFilter",
    "compile_filter_criteria",
    "undocumented_operators",
]


class FilterPatternError(ValueError):
    """``FilterCriteria.Filters[index].Pattern`` breaks ``rule``."""

    def __init__(self, index: int, rule: str) -> None:
        self.index = index
        self.rule = rule
        super().__init__(f"FilterCriteria.Filters[{index}].Pattern: {rule}")


class _Bad(Exception):
    """Raised while compiling one pattern; wrapped into FilterPatternError with its index."""


_MISSING: Final[Any] = object()  # the event has no such field
_NOT_JSON: Final[Any] = object()  # the data key holds something that is not a JSON object/array
_UNSET: Final[Any] = object()  # data not parsed yet
_EMPTY: Final[dict[str, Any]] = {}
_JSON_START: Final = frozenset(("{", "[", b"{", b"["))
_UNSUPPORTED: Final = frozenset({"wildcard"})
# Operators Lambda's filtering documentation does not list but CloudFormation and SAM accept;
# esm runs them as EventBridge defines them, and says so when a mapping is loaded
UNDOCUMENTED: Final = frozenset({"cidr"})
_LOWER_OPS: Final = frozenset({">", ">="})
_UPPER_OPS: Final = frozenset({"<", "<="})
_COMPARE: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "=": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

Matcher = Callable[[Any], bool]


def _is_number(v: object) -> bool:
    return type(v) is int or type(v) is float


def _flat(items: list[Any]) -> Iterator[Any]:
    """The elements of an event array, nested arrays flattened (EventBridge)."""
    for x in items:
        if type(x) is list:
            yield from _flat(x)
        else:
            yield x


class _Leaf:
    """A rule array (``["a", 1, {"prefix": "x"}]``) applied to one field."""

    __slots__ = ("exists_false", "exists_true", "null", "others", "preds", "strs")

    def __init__(self) -> None:
        self.strs: set[str] = set()
        self.others: set[tuple[type, Any]] = set()  # typed numbers and booleans
        self.null = False
        self.preds: list[Matcher] = []
        self.exists_true = False
        self.exists_false = False

    def match(self, v: Any) -> bool:
        if v is _MISSING or type(v) is dict:
            return self.exists_false
        if type(v) is list:
            seen = False
            for x in _flat(v):
                if type(x) is dict:
                    continue
                if self._one(x):
                    return True
                seen = True
            return not seen and self.exists_false
        return self._one(v)

    def _one(self, v: Any) -> bool:
        if self.exists_true:
            return True
        t = type(v)
        if t is str:
            if v in self.strs:
                return True
        elif v is None:
            if self.null:
                return True
        elif (t, v) in self.others:
            return True
        for p in self.preds:
            if p(v):
                return True
        return False


class _Object:
    """A nested object pattern: every named field must match; each ``$or`` needs one branch."""

    __slots__ = ("fields", "ors")

    def __init__(self, fields: list[tuple[str, Matcher]], ors: list[list[_Object]]) -> None:
        self.fields = fields
        self.ors = ors

    def match(self, v: Any) -> bool:
        if type(v) is list:
            objects = [x for x in _flat(v) if type(x) is dict]
            if objects:
                return any(self._match(o) for o in objects)
        return self._match(v if type(v) is dict else _EMPTY)

    def _match(self, d: dict[str, Any]) -> bool:
        for key, m in self.fields:
            if not m(d.get(key, _MISSING)):
                return False
        for alts in self.ors:
            if not any(alt._match(d) for alt in alts):
                return False
        return True


# -- compiling rules ---------------------------------------------------------------------------


def _compile_value(sub: Any, path: str, numeric_ok: bool) -> Matcher:
    if type(sub) is dict:
        return _compile_object(sub, path, numeric_ok).match
    if type(sub) is list:
        return _compile_leaf(sub, path, numeric_ok).match
    raise _Bad(f"{path}: must be an array of rules or an object, not {orjson.dumps(sub).decode()}")


def _compile_object(obj: dict[str, Any], path: str, numeric_ok: bool) -> _Object:
    if not obj:
        raise _Bad(f"{path or 'pattern'}: empty objects are not allowed")
    fields: list[tuple[str, Matcher]] = []
    ors: list[list[_Object]] = []
    for key, sub in obj.items():
        here = f"{path}.{key}" if path else key
        if key == "$or":
            ors.append([_compile_object(a, here, numeric_ok) for a in _alternatives(sub, here)])
        else:
            fields.append((key, _compile_value(sub, here, numeric_ok)))
    return _Object(fields, ors)


def _alternatives(sub: Any, path: str) -> list[dict[str, Any]]:
    if type(sub) is not list or not sub or any(type(a) is not dict for a in sub):
        raise _Bad(f"{path}: $or takes a non-empty array of objects")
    return sub


def _compile_leaf(rules: list[Any], path: str, numeric_ok: bool) -> _Leaf:
    if not rules:
        raise _Bad(f"{path}: empty arrays are not allowed")
    leaf = _Leaf()
    for rule in rules:
        if type(rule) is str:
            leaf.strs.add(rule)
        elif rule is None:
            leaf.null = True
        elif type(rule) in (int, float, bool):
            leaf.others.add((type(rule), rule))
        elif type(rule) is dict:
            _compile_operator(rule, leaf, path, numeric_ok)
        else:
            raise _Bad(f"{path}: nested arrays are not allowed in a rule array")
    return leaf


def _compile_operator(rule: dict[str, Any], leaf: _Leaf, path: str, numeric_ok: bool) -> None:
    if len(rule) != 1:
        raise _Bad(f"{path}: an operator object must hold exactly one operator, got {list(rule)}")
    ((op, arg),) = rule.items()
    if op == "exists":
        if type(arg) is not bool:
            raise _Bad(f"{path}: exists takes true or false")
        leaf.exists_true |= arg
        leaf.exists_false |= not arg
    elif op == "numeric":
        if not numeric_ok:
            raise _Bad(
                f"{path}: numeric operators are not supported for DynamoDB "
                "(numbers are strings in DynamoDB JSON)"
            )
        leaf.preds.append(_numeric(arg, path))
    elif op == "anything-but":
        leaf.preds.append(_anything_but(arg, path))
    elif op in ("prefix", "suffix", "equals-ignore-case"):
        leaf.preds.append(_string_op(op, arg, path))
    elif op == "cidr":
        leaf.preds.append(_cidr(arg, path))
    elif op in _UNSUPPORTED:
        raise _Bad(f"{path}: operator {op!r} is not supported by Lambda event filtering")
    else:
        raise _Bad(f"{path}: unknown operator {op!r}")


def _refuse_nested(op: str, arg: Any, path: str) -> None:
    if type(arg) is dict:
        inner = ", ".join(repr(k) for k in arg)
        raise _Bad(f"{path}: {op!r} with {inner} is not supported by Lambda event filtering")


def _string_op(op: str, arg: Any, path: str) -> Matcher:
    _refuse_nested(op, arg, path)
    if type(arg) is not str:
        raise _Bad(f"{path}: {op!r} takes a string")
    if op == "prefix":
        return lambda v: type(v) is str and v.startswith(arg)
    if op == "suffix":
        return lambda v: type(v) is str and v.endswith(arg)
    low = arg.lower()
    return lambda v: type(v) is str and v.lower() == low


def _cidr(arg: Any, path: str) -> Matcher:
    """EventBridge's ``cidr``: a string holding an IPv4 or IPv6 address inside the block."""
    if type(arg) is not str:
        raise _Bad(f"{path}: 'cidr' takes a CIDR block such as \"10.0.0.0/24\"")
    try:
        network = ipaddress.ip_network(arg, strict=False)
    except ValueError:
        rule = f"'cidr' takes a CIDR block such as \"10.0.0.0/24\" (got {arg!r})"
        raise _Bad(f"{path}: {rule}") from None

    def match(v: Any) -> bool:
        if type(v) is not str:
            return False
        try:
            return ipaddress.ip_address(v) in network
        except ValueError:
            return False

    return match


def undocumented_operators(pattern: str) -> set[str]:
    """The operators of ``pattern`` (:data:`UNDOCUMENTED`) that Lambda does not document."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if type(node) is dict:
            found.update(k for k in node if k in UNDOCUMENTED)
            for v in node.values():
                walk(v)
        elif type(node) is list:
            for v in node:
                walk(v)

    try:
        walk(orjson.loads(pattern))
    except orjson.JSONDecodeError:
        pass
    return found


def _anything_but(arg: Any, path: str) -> Matcher:
    _refuse_nested("anything-but", arg, path)
    values = arg if type(arg) is list else [arg]
    if not values or any(type(x) is not str and not _is_number(x) for x in values):
        raise _Bad(f"{path}: 'anything-but' takes a string, a number or a non-empty array of them")
    excluded = frozenset((type(x), x) for x in values)
    return lambda v: (type(v), v) not in excluded


def _numeric(arg: Any, path: str) -> Matcher:
    bad = _Bad(
        f"{path}: 'numeric' takes [op, number] or [lower-op, number, upper-op, number] "
        "with op one of =, <, <=, >, >="
    )
    if type(arg) is not list or len(arg) not in (2, 4):
        raise bad
    conds: list[tuple[str, int | float]] = []
    for op, num in zip(arg[::2], arg[1::2], strict=True):
        if op not in ("=", "<", "<=", ">", ">=") or not _is_number(num):
            raise bad
        conds.append((op, num))
    if len(conds) == 1:
        return _numeric_one(*conds[0])
    lows = [c for c in conds if c[0] in _LOWER_OPS]
    highs = [c for c in conds if c[0] in _UPPER_OPS]
    if len(lows) != 1 or len(highs) != 1:
        raise bad
    if lows[0][1] > highs[0][1]:
        raise _Bad(f"{path}: 'numeric' range is empty (lower bound above upper bound)")
    low, high = _numeric_one(*lows[0]), _numeric_one(*highs[0])
    return lambda v: low(v) and high(v)


def _numeric_one(op: str, n: int | float) -> Matcher:
    compare = _COMPARE[op]
    return lambda v: _is_number(v) and compare(v, n)


# -- the record, its data key, and the top of a pattern ----------------------------------------


class _Event:
    """One record being matched; parses its data at most once, and only when asked."""

    __slots__ = ("_data", "_parse", "record")

    def __init__(self, record: dict[str, Any], parse: Callable[[dict[str, Any]], Any]) -> None:
        self.record = record
        self._parse = parse
        self._data: Any = _UNSET

    def data(self) -> Any:
        if self._data is _UNSET:
            self._data = self._parse(self.record)
        return self._data

    def dynamodb(self) -> Any:
        image = self.record.get("dynamodb")
        return image if type(image) is dict else _NOT_JSON


def _json_data(text: str | bytes) -> Any:
    """``text`` parsed when it holds a JSON object or array, else _NOT_JSON."""
    head = text[:1]
    if head not in _JSON_START and not (head.isspace() and text.lstrip()[:1] in _JSON_START):
        return _NOT_JSON
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def _sqs_body(record: dict[str, Any]) -> Any:
    body = record.get("body")
    return _json_data(body) if type(body) is str else _NOT_JSON


def _kinesis_data(record: dict[str, Any]) -> Any:
    kinesis = record.get("kinesis")
    data = kinesis.get("data") if type(kinesis) is dict else None
    if type(data) is not str:
        return _NOT_JSON
    try:
        return _json_data(binascii.a2b_base64(data, strict_mode=True))
    except (binascii.Error, ValueError):  # not base64
        return _NOT_JSON


_PARSERS: Final[dict[str, Callable[[dict[str, Any]], Any]]] = {
    "sqs": _sqs_body,
    "kinesis": _kinesis_data,
    "dynamodb": lambda record: _NOT_JSON,  # unused: `dynamodb` is already an object
}

Test = Callable[[_Event], bool]
Lookup = Callable[[dict[str, Any], str], Any]


def _from_record(record: dict[str, Any], key: str) -> Any:
    return record.get(key, _MISSING)


def _from_kinesis(record: dict[str, Any], key: str) -> Any:
    kinesis = record.get("kinesis")
    return kinesis.get(key, _MISSING) if type(kinesis) is dict else _MISSING


def _lifted(record: dict[str, Any], key: str) -> Any:
    value = record.get(key, _MISSING)
    return _from_kinesis(record, key) if value is _MISSING else value


def _compile_top(obj: Any, source: SourceKind, lookup: Lookup, path: str) -> Test:
    if type(obj) is not dict:
        raise _Bad(f"{path or 'pattern'}: must be a JSON object")
    if not obj:
        raise _Bad(f"{path or 'pattern'}: empty objects are not allowed")
    tests: list[Test] = []
    for key, sub in obj.items():
        here = f"{path}.{key}" if path else key
        if key == "$or":
            alts = [_compile_top(a, source, lookup, here) for a in _alternatives(sub, here)]
            tests.append(_any_of(alts))
        else:
            tests.append(_compile_top_field(key, sub, source, lookup, here))
    return tests[0] if len(tests) == 1 else _all_of(tests)


def _any_of(tests: list[Test]) -> Test:
    def test(ev: _Event) -> bool:
        for t in tests:
            if t(ev):
                return True
        return False

    return test


def _all_of(tests: list[Test]) -> Test:
    def test(ev: _Event) -> bool:
        for t in tests:
            if not t(ev):
                return False
        return True

    return test


def _compile_top_field(key: str, sub: Any, source: SourceKind, lookup: Lookup, path: str) -> Test:
    if source == "sqs" and key == "body":
        if type(sub) is list:  # plain-string pattern: only a plain-string body can match
            leaf = _compile_leaf(sub, path, True).match
            return lambda ev: ev.data() is _NOT_JSON and leaf(ev.record.get("body", _MISSING))
        return _data_test(sub, path, _Event.data)
    if source == "kinesis" and key == "data":
        return _data_test(sub, path, _Event.data)
    if source == "kinesis" and key == "kinesis" and lookup is _lifted and type(sub) is dict:
        return _compile_top(sub, source, _from_kinesis, path)
    if source == "dynamodb" and key == "dynamodb":
        return _data_test(sub, path, _Event.dynamodb)
    m = _compile_value(sub, path, True)
    return lambda ev: m(lookup(ev.record, key))


def _data_test(sub: Any, path: str, get: Callable[[_Event], Any]) -> Test:
    """A pattern on the data key: a JSON object that only JSON data can match
    (docs/semantics.md §7.3)."""
    if type(sub) is not dict:
        raise _Bad(f"{path}: the data pattern must be a JSON object (not a rule array)")
    obj = _compile_object(sub, path, numeric_ok=get is not _Event.dynamodb).match
    return lambda ev: (data := get(ev)) is not _NOT_JSON and obj(data)


# -- public API --------------------------------------------------------------------------------


class RecordFilter:
    """Compiled ``FilterCriteria``: ``matches(record)``; false when there is nothing to check."""

    __slots__ = ("_parse", "_tests")

    def __init__(self, tests: Sequence[Test], source: SourceKind) -> None:
        self._tests = tuple(tests)
        self._parse = _PARSERS[source]

    def __bool__(self) -> bool:
        return bool(self._tests)

    def matches(self, record: dict[str, Any]) -> bool:
        if not self._tests:
            return True
        ev = _Event(record, self._parse)
        for test in self._tests:
            if test(ev):
                return True
        return False


def compile_filter_criteria(patterns: Sequence[str], source: SourceKind) -> RecordFilter:
    """Compile ``FilterCriteria.Filters[*].Pattern``; FilterPatternError names the bad one."""
    if source not in _PARSERS:
        raise ValueError(f"unknown event source kind: {source!r}")
    lookup: Lookup = _lifted if source == "kinesis" else _from_record
    tests: list[Test] = []
    for index, text in enumerate(patterns):
        try:
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise _Bad(f"not valid JSON ({exc})") from None
            tests.append(_compile_top(obj, source, lookup, ""))
        except _Bad as exc:
            raise FilterPatternError(index, str(exc)) from None
    return RecordFilter(tests, source)

"""Signature Version 4 checked as AWS checks it: who may call esm's API (``Settings.ApiAuth``).

boto3, the AWS CLI, Terraform and every SDK sign each request with the caller's secret access key:
``Authorization: AWS4-HMAC-SHA256 Credential=<key id>/<day>/<region>/lambda/aws4_request,
SignedHeaders=<names>, Signature=<hex>`` and ``X-Amz-Date``; a presigned URL carries the same in
its query (``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``, ``X-Amz-Expires``,
``X-Amz-SignedHeaders``, ``X-Amz-Signature``). :meth:`Verifier.verify` recomputes the signature
from what arrived, with the secret esm holds for that key id, and refuses as AWS does (403, but
400 for IncompleteSignatureException, as AWS's Common Errors list them; botocore raises
``ClientError`` with the name as ``Error.Code``), in this order:

==========================================  ==================================================
request                                     refused with
==========================================  ==================================================
no ``Authorization``, no ``X-Amz-*`` auth   MissingAuthenticationTokenException "Missing
in the query                                Authentication Token"
both; a header that is not                  IncompleteSignatureException naming what is missing
``AWS4-HMAC-SHA256 Credential=…,            ("Authorization header requires 'Signature'
SignedHeaders=…, Signature=…``; no date;    parameter." …), or "Credential must have exactly 5
a credential without 5 parts; a date not    slash-delimited elements …", "Date must be in
``YYYYMMDDTHHMMSSZ``                        ISO-8601 'basic format'. …"
the date more than 5 minutes from esm's     InvalidSignatureException "Signature expired: <date>
clock (presigned: past ``X-Amz-Expires``)   is now earlier than <now - 5 min> (<now> - 5 min.)"
                                            / "Signature not yet current: … (<now> + 5 min.)"
an access key id esm does not know, or a    UnrecognizedClientException "The security token
session token (``X-Amz-Security-Token``:    included in the request is invalid."
esm's keys are long-term keys)
the credential's day is not the date's;     InvalidSignatureException "Date in Credential scope
region not ``Settings.Region``; service     does not match …", "Credential should be scoped to a
not ``lambda``; not ``aws4_request``;       valid region, not '<region>'. ", "… to correct
``host`` not signed                         service: 'lambda'. ", "'Host' must be a
                                            'SignedHeader' in the AWS Authorization."
an ``x-amz-*`` header that is not signed;   InvalidSignatureException (esm's rule, below)
``X-Amz-Content-SHA256`` not the body's
hash
any other difference (wrong secret, a       InvalidSignatureException "The request signature we
changed body, path, query or signed         calculated does not match the signature you
header)                                     provided. Check your AWS Secret Access Key and
                                            signing method. Consult the service documentation
                                            for details." and, as AWS adds, the canonical
                                            request and string to sign esm computed
==========================================  ==================================================

What is signed, as botocore computes it and AWS checks it: the method; the path as it arrived,
dot segments and empty segments removed, percent-encoded once more (``%3A`` → ``%253A``: every
AWS service but S3 signs the path encoded twice); the query's pairs decoded, re-encoded with only
``A-Z a-z 0-9 - _ . ~`` left bare, sorted (``X-Amz-Signature`` left out); the signed headers,
lower-cased and sorted, each value trimmed with inner runs of spaces made one, repeats joined with
``,``; the payload's SHA-256 (``X-Amz-Content-SHA256`` when sent). The string to sign is
``AWS4-HMAC-SHA256``, the date, the scope ``<day>/<region>/lambda/aws4_request`` and the hash of
the canonical request; the key is HMAC-SHA256 chained over ``"AWS4" + secret``, day, region,
service, ``aws4_request``. Signatures are compared in constant time.

esm's rules where AWS's text is silent or AWS would let it pass:

- **Every ``x-amz-*`` header must be signed** (SDKs sign every one they send): an unsigned
  ``X-Amz-Invocation-Type`` added to a captured request would otherwise turn a replayed
  synchronous call into an ``Event``.
- **The payload is always signed**: ``X-Amz-Content-SHA256`` must be the body's hash;
  ``UNSIGNED-PAYLOAD`` is refused (botocore sends it only over HTTPS, and only for S3).
- **Replay inside the window.** As on AWS, a signed request can be sent again, unchanged, for as
  long as its date is within 5 minutes (a presigned URL: until it expires, at most 7 days).
  Serve the API over TLS (a proxy in front) where the network between clients and esm is not
  trusted: SigV4 proves who signed, it does not hide what was sent.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_tz
from urllib.parse import quote, unquote

from esm.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "lambda"
TERMINATOR = "aws4_request"
SKEW_S = 300  # AWS's window either side of its clock
MAX_EXPIRES_S = 604_800  # a presigned URL's longest life (7 days)
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
QUERY_AUTH = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature")

MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
MISSING_TOKEN = "Missing Authentication Token"
INVALID_TOKEN = "The security token included in the request is invalid."


@dataclass(frozen=True)
class Arrived:
    """A request as it came over the wire: ``path`` and ``query`` still percent-encoded (the
    query without its ``?``), every header with its repeats, the whole body."""

    method: str
    path: str
    query: str
    headers: Sequence[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class _Parts:
    """What a signature claims: from the Authorization header or the query."""

    credential: str
    signed_headers: str
    signature: str
    amz_date: str
    expires_s: int | None  # presigned only


def signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    """SigV4's key for one day, region and service."""
    key = hmac.digest(("AWS4" + secret).encode(), day.encode(), "sha256")
    for part in (region, service, TERMINATOR):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


def amz_date(t: float) -> str:
    return time.strftime(DATE_FORMAT, time.gmtime(t))


@dataclass(frozen=True)
class Verifier:
    """Checks requests against ``keys`` (access key id → secret access key) for ``region``;
    :meth:`check` at ``now()`` (the engine's clock), :meth:`verify` at a time given."""

    keys: Mapping[str, str] = field(repr=False)
    region: str
    service: str = SERVICE
    now: Callable[[], float] = field(default=time.time, repr=False, compare=False)
    _cache: dict[tuple[str, str], bytes] = field(default_factory=dict, repr=False, compare=False)

    def check(self, request: Arrived) -> str:
        return self.verify(request, self.now())

    def verify(self, request: Arrived, now: float) -> str:
        """The access key id that signed ``request``; raises an ``AuthError`` (the module's
        table) when no key esm holds did, or not recently enough."""
        headers = _lower(request.headers)
        pairs = _query_pairs(request.query)
        parts = _claims(headers, dict(pairs))
        when = _check_date(parts, now)
        credential = parts.credential.split("/")
        if len(credential) != 5:
            raise IncompleteSignatureException(
                "Credential must have exactly 5 slash-delimited elements, e.g. "
                f"keyid/date/region/service/term, got '{parts.credential}'"
            )
        key_id, day, region, service, terminator = credential
        secret = self.keys.get(key_id)
        if (
            secret is None
            or "x-amz-security-token" in headers
            or "X-Amz-Security-Token" in dict(pairs)
        ):
            raise UnrecognizedClientException(INVALID_TOKEN)
        self._check_scope(parts, when, day, region, service, terminator, headers)
        payload = _payload_hash(headers, request.body)
        canonical = canonical_request(request.method, request.path, pairs, headers, parts, payload)
        scope = f"{day}/{region}/{service}/{terminator}"
        to_sign = "\n".join(
            (ALGORITHM, when, scope, hashlib.sha256(canonical.encode()).hexdigest())
        )
        expected = hmac.digest(self._key(secret, day), to_sign.encode(), "sha256").hex()
        given = parts.signature.encode("utf-8", "replace")
        if not hmac.compare_digest(expected.encode(), given):
            raise InvalidSignatureException(
                f"{MISMATCH}\n\nThe Canonical String for this request should have been\n"
                f"'{canonical}'\n\nThe String-to-Sign should have been\n'{to_sign}'\n"
            )
        return key_id

    def _key(self, secret: str, day: str) -> bytes:
        found = self._cache.get((secret, day))
        if found is None:
            if len(self._cache) > 4 * len(self.keys) + 4:
                self._cache.clear()
            found = self._cache[(secret, day)] = signing_key(secret, day, self.region, self.service)
        return found

    def _check_scope(
        self,
        parts: _Parts,
        when: str,
        day: str,
        region: str,
        service: str,
        terminator: str,
        headers: Mapping[str, list[str]],
    ) -> None:
        if day != when[:8]:
            raise InvalidSignatureException(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                f"from HTTP: '{day}' != '{when[:8]}', from '{when}'."
            )
        if region != self.region:
            raise InvalidSignatureException(
                f"Credential should be scoped to a valid region, not '{region}'. "
            )
        if service != self.service:
            raise InvalidSignatureException(
                f"Credential should be scoped to correct service: '{self.service}'. "
            )
        if terminator != TERMINATOR:
            raise InvalidSignatureException(
                "Credential should be scoped with a valid terminator: 'aws4_request', not "
                f"'{terminator}'. "
            )
        signed = set(_signed_names(parts.signed_headers))
        if "host" not in signed:
            raise InvalidSignatureException(
                "'Host' must be a 'SignedHeader' in the AWS Authorization."
            )
        unsigned = sorted(n for n in headers if n.startswith("x-amz-") and n not in signed)
        if unsigned:
            raise InvalidSignatureException(
                f"Header '{unsigned[0]}' is not signed: esm needs every x-amz-* header in "
                "SignedHeaders."
            )


# -- the parts ------------------------------------------------------------------------------------


def _lower(headers: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in headers:
        out.setdefault(name.lower(), []).append(value)
    return out


def _query_pairs(query: str) -> list[tuple[str, str]]:
    """The query's pairs, percent-decoded (``+`` is a plus sign, as in RFC 3986)."""
    pairs = []
    for item in query.split("&"):
        if item:
            key, _, value = item.partition("=")
            pairs.append((unquote(key), unquote(value)))
    return pairs


def _claims(headers: Mapping[str, list[str]], query: Mapping[str, str]) -> _Parts:
    header = headers.get("authorization")
    in_query = any(name in query for name in QUERY_AUTH)
    if header is None and not in_query:
        raise MissingAuthenticationTokenException(MISSING_TOKEN)
    if header is not None and in_query:
        raise IncompleteSignatureException(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the "
            "Authorization header should be specified"
        )
    if header is not None:
        return _from_header(header[0], headers)
    return _from_query(query)


def _from_header(value: str, headers: Mapping[str, list[str]]) -> _Parts:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise IncompleteSignatureException(
            f"Unsupported AWS 'algorithm': '{algorithm[:40]}' (esm verifies {ALGORITHM})"
        )
    fields: dict[str, str] = {}
    for item in rest.split(","):
        item = item.strip()
        if not item:
            continue
        name, eq, v = item.partition("=")
        if not eq:
            raise IncompleteSignatureException(
                f"'{item[:80]}' not a valid key=value pair (missing equal-sign) in Authorization "
                "header"
            )
        fields[name.strip()] = v.strip()
    date: str | None = None
    if "x-amz-date" in headers:
        date = headers["x-amz-date"][0]
    elif "date" in headers:
        date = _http_date(headers["date"][0])
    problems = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not fields.get(name)
    ]
    if date is None:
        problems.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if problems:
        raise IncompleteSignatureException(" ".join(problems))
    assert date is not None
    return _Parts(fields["Credential"], fields["SignedHeaders"], fields["Signature"], date, None)


def _from_query(query: Mapping[str, str]) -> _Parts:
    needed = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-SignedHeaders")
    if any(not query.get(name) for name in (*needed, "X-Amz-Date")):
        raise IncompleteSignatureException(
            "AWS query-string parameters must include 'X-Amz-Algorithm', 'X-Amz-Credential', "
            "'X-Amz-Signature', 'X-Amz-SignedHeaders', 'X-Amz-Date'. Re-examine the query-string "
            "parameters."
        )
    if query["X-Amz-Algorithm"] != ALGORITHM:
        raise IncompleteSignatureException(
            f"Unsupported AWS 'algorithm': '{query['X-Amz-Algorithm'][:40]}' (esm verifies "
            f"{ALGORITHM})"
        )
    raw = query.get("X-Amz-Expires", str(MAX_EXPIRES_S))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_EXPIRES_S:
        raise IncompleteSignatureException(
            f"X-Amz-Expires must be a number of seconds from 1 to {MAX_EXPIRES_S} (a week), "
            f"got '{raw[:20]}'"
        )
    return _Parts(
        query["X-Amz-Credential"],
        query["X-Amz-SignedHeaders"],
        query["X-Amz-Signature"],
        query["X-Amz-Date"],
        int(raw),
    )


def _http_date(value: str) -> str:
    """A ``Date`` header (RFC 1123) as SigV4's ``YYYYMMDDTHHMMSSZ``, or the value unchanged (to
    be refused) when it is not a date."""
    parsed = parsedate_tz(value)
    if parsed is None:
        return value
    return amz_date(calendar.timegm(parsed[:9]) - (parsed[9] or 0))


def _check_date(parts: _Parts, now: float) -> str:
    """The signature's date, checked against ``now``: within 5 minutes either way (a presigned
    URL: not past its expiry)."""
    date = parts.amz_date
    try:
        t = calendar.timegm(time.strptime(date, DATE_FORMAT))
    except ValueError:
        raise IncompleteSignatureException(
            f"Date must be in ISO-8601 'basic format'. Got '{date[:40]}'. See "
            "http://en.wikipedia.org/wiki/ISO_8601"
        ) from None
    if t > now + SKEW_S:
        raise InvalidSignatureException(
            f"Signature not yet current: {date} is still later than {amz_date(now + SKEW_S)} "
            f"({amz_date(now)} + 5 min.)"
        )
    if parts.expires_s is not None:
        if now > t + parts.expires_s:
            raise InvalidSignatureException(
                f"Signature expired: {date} is now earlier than {amz_date(now - parts.expires_s)} "
                f"({amz_date(now)} - {parts.expires_s} sec.)"
            )
    elif t < now - SKEW_S:
        raise InvalidSignatureException(
            f"Signature expired: {date} is now earlier than {amz_date(now - SKEW_S)} "
            f"({amz_date(now)} - 5 min.)"
        )
    return date


def _payload_hash(headers: Mapping[str, list[str]], body: bytes) -> str:
    actual = hashlib.sha256(body).hexdigest()
    claimed = headers.get("x-amz-content-sha256")
    if claimed is None:
        return actual
    if claimed[0] != actual:
        raise InvalidSignatureException(
            "The provided 'x-amz-content-sha256' header does not match what was computed "
            "(esm needs the body's SHA-256; UNSIGNED-PAYLOAD is not accepted)."
        )
    return actual


def _signed_names(signed_headers: str) -> list[str]:
    return sorted({n.strip().lower() for n in signed_headers.split(";") if n.strip()})


# -- the canonical request ------------------------------------------------------------------------


def canonical_request(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, list[str]],
    parts: _Parts,
    payload_hash: str,
) -> str:
    """SigV4's canonical request for what arrived (the module's "What is signed")."""
    names = _signed_names(parts.signed_headers)
    lines = [
        f"{name}:{','.join(' '.join(v.split()) for v in headers.get(name, []))}\n" for name in names
    ]
    return "\n".join(
        (
            method.upper(),
            canonical_uri(path),
            canonical_query(query, presigned=parts.expires_s is not None),
            "".join(lines),
            ";".join(names),
            payload_hash,
        )
    )


def canonical_uri(path: str) -> str:
    return quote(remove_dot_segments(path) or "/", safe="/~")


def canonical_query(pairs: Sequence[tuple[str, str]], *, presigned: bool) -> str:
    encoded = sorted(
        (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
        for k, v in pairs
        if not (presigned and k == "X-Amz-Signature")
    )
    return "&".join(f"{k}={v}" for k, v in encoded)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, with the empty segments AWS also drops (``a//b`` → ``a/b``)."""
    if not path:
        return ""
    out: list[str] = []
    for segment in path.split("/"):
        if segment and segment != ".":
            if segment == "..":
                if out:
                    out.pop()
            else:
                out.append(segment)
    first = "/" if path[0] == "/" else ""
    last = "/" if path[-1] == "/" and out else ""
    return first + "/".join(out) + last

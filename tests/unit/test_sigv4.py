"""SigV4 verification (``Settings.ApiAuth``): requests signed by botocore's own signer, at a frozen
time, checked at chosen times; what passes and what AWS's error names refuse.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from esm import errors
from esm.sigv4 import MISMATCH, Arrived, Verifier, canonical_uri, remove_dot_segments

KEY = "AKIAESMTESTKEY000001"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "eu-west-1"
SIGNED_AT = datetime(2026, 12, 5, 12, 0, 0)
T = float(calendar.timegm(SIGNED_AT.timetuple()))
BASE = "http://127.0.0.1:3001"
INVOKE = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A000000000000%3Afunction%3Aorders/invocations"


def signed(
    path: str = INVOKE,
    *,
    method: str = "POST",
    body: bytes = b'{"order": 1}',
    headers: dict[str, str] | None = None,
    key: str = KEY,
    secret: str = SECRET,
    token: str | None = None,
    region: str = REGION,
    service: str = "lambda",
    presign: int | None = None,
    at: datetime = SIGNED_AT,
) -> Arrived:
    """The request as it reaches the server after botocore signed it at ``at``."""
    request = AWSRequest(method=method, url=BASE + path, data=body, headers=headers or {})
    credentials = Credentials(key, secret, token)
    signer = (
        SigV4QueryAuth(credentials, service, region, expires=presign)
        if presign
        else SigV4Auth(credentials, service, region)
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=at):
        signer.add_auth(request)
    prepared = request.prepare()
    url = urlsplit(prepared.url)
    sent = [("Host", url.netloc), *prepared.headers.items()]
    return Arrived(prepared.method, url.path, url.query, sent, prepared.body or b"")


VERIFIER = Verifier({KEY: SECRET, "AKIAOTHER": "another-secret-of-40-characters-xxxxxxxx"}, REGION)


@pytest.mark.parametrize(
    "request_",
    [
        signed(),
        signed(headers={"X-Amz-Invocation-Type": "Event", "X-Amz-Log-Type": "None"}),
        signed(INVOKE + "?Qualifier=%24LATEST"),
        signed("/2015-03-31/functions/", method="GET", body=b""),
        signed(
            "/2015-03-31/event-source-mappings/?FunctionName=arn%3Aaws%3Alambda%3Aeu-west-1"
            "%3A000000000000%3Afunction%3Aorders&MaxItems=2&Marker=a%2Bb%3D",
            method="GET",
            body=b"",
        ),
        signed("/2017-10-31/functions/orders/concurrency", method="PUT", body=b"{}"),
        signed("/2015-03-31/event-source-mappings/abc", method="DELETE", body=b""),
        signed(body=b"", headers={"Date": "Sat, 05 Dec 2026 12:00:00 GMT"}),  # Date, not X-Amz-Date
        signed(body='{"n": "ünïcode ✓"}'.encode()),
        signed("/2015-03-31/functions/?MaxItems=3", method="GET", body=b"", presign=3600),
    ],
    ids=[
        "invoke",
        "invoke-headers",
        "query",
        "list",
        "encoded-query",
        "put",
        "delete",
        "date-header",
        "unicode-body",
        "presigned",
    ],
)
@pytest.mark.parametrize("offset_s", [0, -299, 299])
def test_botocores_signature_passes_within_five_minutes(request_: Arrived, offset_s: int) -> None:
    assert VERIFIER.verify(request_, T + offset_s) == KEY


def _sha(body: bytes) -> str:
    import hashlib

    return hashlib.sha256(body).hexdigest()


def _with_header(request: Arrived, name: str, value: str) -> Arrived:
    headers = [(k, v) for k, v in request.headers if k.lower() != name.lower()]
    return replace(request, headers=[*headers, (name, value)])


def test_content_sha256_passes_when_it_is_the_bodys_hash_and_signed() -> None:
    body = b'{"a": 1}'
    request = signed(body=body, headers={"X-Amz-Content-SHA256": _sha(body)})
    assert VERIFIER.verify(request, T) == KEY


def _refusal(request: Arrived, now: float = T) -> errors.AuthError:
    with pytest.raises(errors.AuthError) as info:
        VERIFIER.verify(request, now)
    return info.value


Case = tuple[Callable[[], Arrived], float, type[errors.AuthError], str]

REFUSED: dict[str, Case] = {
    "wrong secret": (
        lambda: signed(secret="wJalrXUtnFEMI/K7MDENG/bPxRfiCYWRONGKEY0"),
        T,
        errors.InvalidSignatureException,
        MISMATCH,
    ),
    "stale date": (
        signed,
        T + 301,
        errors.InvalidSignatureException,
        "Signature expired: 20261205T120000Z is now earlier than 20261205T120001Z "
        "(20261205T120501Z - 5 min.)",
    ),
    "date in the future": (
        signed,
        T - 301,
        errors.InvalidSignatureException,
        "Signature not yet current: 20261205T120000Z is still later than 20261205T115959Z "
        "(20261205T115459Z + 5 min.)",
    ),
    "unknown key": (
        lambda: signed(key="AKIANOBODYKNOWS00000"),
        T,
        errors.UnrecognizedClientException,
        "The security token included in the request is invalid.",
    ),
    "session token": (
        lambda: signed(token="FQoGZXIvYXdzEXAMPLE"),
        T,
        errors.UnrecognizedClientException,
        "The security token included in the request is invalid.",
    ),
    "other region": (
        lambda: signed(region="us-east-1"),
        T,
        errors.InvalidSignatureException,
        "Credential should be scoped to a valid region, not 'us-east-1'. ",
    ),
    "other service": (
        lambda: signed(service="sqs"),
        T,
        errors.InvalidSignatureException,
        "Credential should be scoped to correct service: 'lambda'. ",
    ),
    "presigned URL expired": (
        lambda: signed("/2015-03-31/functions/", method="GET", body=b"", presign=60),
        T + 61,
        errors.InvalidSignatureException,
        "Signature expired: 20261205T120000Z is now earlier than 20261205T120001Z "
        "(20261205T120101Z - 60 sec.)",
    ),
}


@pytest.mark.parametrize("case", REFUSED.values(), ids=list(REFUSED))
def test_refused_with_awss_error(case: Case) -> None:
    make, now, cls, message = case
    exc = _refusal(make(), now)
    assert type(exc) is cls
    assert exc.message.startswith(message)
    assert SECRET not in exc.message


def test_no_signature_at_all_is_a_missing_token() -> None:
    request = Arrived("GET", "/2015-03-31/functions/", "", [("Host", "127.0.0.1:3001")], b"")
    exc = _refusal(request)
    assert (type(exc), exc.status, exc.message) == (
        errors.MissingAuthenticationTokenException,
        403,
        "Missing Authentication Token",
    )


@pytest.mark.parametrize(
    "change",
    [
        lambda r: replace(r, body=r.body.replace(b"1", b"2")),
        lambda r: replace(r, path=r.path.replace("orders", "payments")),
        lambda r: replace(r, query="Qualifier=prod"),
        lambda r: replace(r, method="PUT"),
        lambda r: _with_header(r, "X-Amz-Invocation-Type", "RequestResponse"),
        lambda r: _with_header(r, "Host", "esm.example.com:3001"),
    ],
    ids=["body", "path", "query", "method", "signed-header", "host"],
)
def test_any_change_after_signing_is_a_mismatch_showing_the_canonical_request(
    change: Callable[[Arrived], Arrived],
) -> None:
    request = signed(headers={"X-Amz-Invocation-Type": "Event"})
    exc = _refusal(change(request))
    assert type(exc) is errors.InvalidSignatureException and exc.status == 403
    assert exc.message.startswith(MISMATCH + "\n\nThe Canonical String for this request")
    assert "The String-to-Sign should have been\n'AWS4-HMAC-SHA256\n20261205T120000Z\n" in (
        exc.message
    )


def test_an_unsigned_x_amz_header_is_refused() -> None:
    """A captured synchronous Invoke replayed with ``X-Amz-Invocation-Type: Event`` added."""
    exc = _refusal(_with_header(signed(), "X-Amz-Invocation-Type", "Event"))
    assert type(exc) is errors.InvalidSignatureException
    assert "x-amz-invocation-type" in exc.message


@pytest.mark.parametrize("claimed", ["UNSIGNED-PAYLOAD", "0" * 64])
def test_content_sha256_must_be_the_bodys(claimed: str) -> None:
    request = signed(headers={"X-Amz-Content-SHA256": claimed})
    exc = _refusal(request)
    assert type(exc) is errors.InvalidSignatureException
    assert "x-amz-content-sha256" in exc.message


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (
            "AWS4-HMAC-SHA256 Credential=AKIAESMTESTKEY000001/20261205/eu-west-1/lambda/"
            "aws4_request",
            "Authorization header requires 'Signature' parameter. Authorization header requires "
            "'SignedHeaders' parameter.",
        ),
        ("Bearer eyJhbGciOi", "Unsupported AWS 'algorithm': 'Bearer'"),
        (
            "AWS4-HMAC-SHA256 Credential=AKIAESMTESTKEY000001/20261205/eu-west-1, "
            "SignedHeaders=host;x-amz-date, Signature=00",
            "Credential must have exactly 5 slash-delimited elements",
        ),
        (
            "AWS4-HMAC-SHA256 Credential AKIA/x, SignedHeaders=host, Signature=00",
            "'Credential AKIA/x' not a valid key=value pair (missing equal-sign)",
        ),
    ],
)
def test_an_incomplete_authorization_header_is_a_400(authorization: str, message: str) -> None:
    request = Arrived(
        "GET",
        "/2015-03-31/functions/",
        "",
        [("Host", "h"), ("X-Amz-Date", "20261205T120000Z"), ("Authorization", authorization)],
        b"",
    )
    exc = _refusal(request)
    assert (type(exc), exc.status) == (errors.IncompleteSignatureException, 400)
    assert exc.message.startswith(message)


def test_host_must_be_signed_and_the_dates_must_agree() -> None:
    request = signed()
    auth = dict(request.headers)["Authorization"]
    no_host = auth.replace("SignedHeaders=host;", "SignedHeaders=")
    exc = _refusal(_with_header(request, "Authorization", no_host))
    assert exc.message == "'Host' must be a 'SignedHeader' in the AWS Authorization."
    other_day = auth.replace("/20261205/", "/20261204/")
    exc = _refusal(_with_header(request, "Authorization", other_day))
    assert exc.message == (
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
        "HTTP: '20261204' != '20261205', from '20261205T120000Z'."
    )


def test_a_date_that_is_not_iso_basic_format_is_incomplete() -> None:
    request = _with_header(signed(), "X-Amz-Date", "2026-12-05T12:00:00Z")
    exc = _refusal(request)
    assert type(exc) is errors.IncompleteSignatureException
    assert exc.message.startswith("Date must be in ISO-8601 'basic format'.")


def test_header_and_query_signatures_together_are_refused() -> None:
    request = signed()
    exc = _refusal(replace(request, query="X-Amz-Signature=00"))
    assert type(exc) is errors.IncompleteSignatureException


def test_a_presigned_url_lasts_at_most_a_week() -> None:
    request = signed("/2015-03-31/functions/", method="GET", body=b"", presign=60)
    query = request.query.replace("X-Amz-Expires=60", "X-Amz-Expires=604801")
    exc = _refusal(replace(request, query=query))
    assert type(exc) is errors.IncompleteSignatureException
    assert "604800" in exc.message


def test_the_secret_is_not_in_the_verifiers_repr() -> None:
    assert SECRET not in repr(VERIFIER) and SECRET not in str(VERIFIER)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", "/"),
        ("/", "/"),
        ("/a/./b/../c", "/a/c"),
        ("/a//b/", "/a/b/"),
        ("/functions/arn%3Aaws/invocations", "/functions/arn%253Aaws/invocations"),
        ("/functions/a~b", "/functions/a~b"),
    ],
)
def test_the_canonical_path_is_normalised_and_encoded_twice(path: str, expected: str) -> None:
    assert canonical_uri(path) == expected


def test_remove_dot_segments_keeps_a_relative_path_relative() -> None:
    assert remove_dot_segments("a/b/../c") == "a/c"

"""esm's one error tree.

::

    EsmError
     ├── ConfigError            a config file or mapping definition breaks a rule; names the
     │                          file, the field path and the rule (one or many problems)
     ├── LambdaApiError         an error Lambda's API would return: AWS error name + HTTP status
     │    ├── InvalidParameterValueException (400)
     │    ├── ResourceNotFoundException      (404)
     │    ├── ResourceConflictException      (409)
     │    ├── ResourceInUseException         (400)
     │    ├── InvalidRequestContentException (400)
     │    ├── RequestTooLargeException       (413)
     │    ├── TooManyRequestsException       (429)
     │    ├── ResourceNotReadyException      (502) the function's target cannot be reached
     │    ├── ServiceException               (500)
     │    │    └── ServiceUnavailable        (503, named ServiceException on the wire) the
     │    │                                  store (Redis) does not answer, or the API is at
     │    │                                  its connection cap
     │    └── AwsCommonError                 AWS's common errors, answered at the HTTP level
     │         ├── UnknownOperationException       (404) no operation at that method + path
     │         ├── OperationNotSupported           (501, named InternalFailure on the wire) a
     │         │                                   Lambda operation esm does not implement
     │         ├── MalformedHttpRequestException   (400) not HTTP/1.1 a server may accept
     │         ├── RequestTimeoutException         (408) the request body stalled
     │         ├── RequestEntityTooLargeException  (413) a control-plane body over its limit
     │         └── AuthError                       (403) Settings.ApiAuth refused the caller:
     │              ├── MissingAuthenticationTokenException  no signature at all
     │              ├── IncompleteSignatureException   (400) a signature missing a part
     │              ├── UnrecognizedClientException          an access key esm does not know
     │              └── InvalidSignatureException            a wrong, stale or altered signature
     └── SourceError            talking to an event source failed (``retriable`` says whether
                                polling again may help); botocore errors become this in
                                :func:`esm.connectors.base.translate_aws_errors`

A handler's exception is never an ``EsmError``: it is a function error, carried as data in an
``Outcome`` (see :mod:`esm.functions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class EsmError(Exception):
    """Root of every error esm raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One broken rule: where (``path``, e.g. ``EventSourceMappings[0].BatchSize``) and which."""

    path: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}: {self.rule}" if self.path else self.rule


class ConfigError(EsmError):
    """A configuration breaks one or more rules. ``str()`` lists every problem, one per line."""

    def __init__(self, problems: Sequence[Problem], source: str = "") -> None:
        self.problems = tuple(problems)
        self.source = source
        super().__init__(self._render())

    SHOWN = 100  # problems rendered; a hostile file can break a rule a hundred thousand times

    def _render(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        lines = [f"{prefix}{p}" for p in self.problems[: self.SHOWN]]
        if len(self.problems) > self.SHOWN:
            lines.append(f"{prefix}… and {len(self.problems) - self.SHOWN} more problem(s)")
        return "\n".join(lines)


class LambdaApiError(EsmError):
    """An error with Lambda's name and HTTP status, as the Lambda API returns it."""

    status = 400
    retriable = False

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    @property
    def name(self) -> str:
        return type(self).__name__

    def body(self) -> dict[str, str]:
        return {"Type": "User", "message": self.message}


class InvalidParameterValueException(LambdaApiError):
    status = 400


class ResourceNotFoundException(LambdaApiError):
    status = 404


class ResourceConflictException(LambdaApiError):
    status = 409


class ResourceInUseException(LambdaApiError):
    status = 400


class InvalidRequestContentException(LambdaApiError):
    status = 400


class RequestTooLargeException(LambdaApiError):
    status = 413


class TooManyRequestsException(LambdaApiError):
    status = 429
    retriable = True


class ResourceNotReadyException(LambdaApiError):
    """Lambda's 502 for a function it cannot run now; esm's answer to ``InvokeFailed``."""

    status = 502
    retriable = True

    def body(self) -> dict[str, str]:
        return {"Type": "Service", "message": self.message}


class ServiceException(LambdaApiError):
    status = 500
    retriable = True

    def body(self) -> dict[str, str]:
        return {"Type": "Service", "message": self.message}


class ServiceUnavailable(ServiceException):
    """Lambda's ``ServiceException`` answered with 503 rather than 500: esm's store (Redis) does
    not answer, so nothing that needs it can be done now; or the API is serving its
    ``ApiMaxConnections``. SDKs catch it by its Lambda name, and their retry modes retry a 503."""

    status = 503

    def __init__(
        self,
        message: str = "The service is unavailable: esm's store does not answer. Try again later.",
    ) -> None:
        super().__init__(message)

    @property
    def name(self) -> str:
        return "ServiceException"


class AwsCommonError(LambdaApiError):
    """One of AWS's common errors: any AWS API may answer them and no service's model lists them
    (botocore raises a plain ``ClientError`` with the name as ``Error.Code``). esm answers them
    where the request never reached a Lambda operation."""


class ValidationException(AwsCommonError):
    """A parameter outside its model's constraints (an enum, a length), worded as AWS's
    request validation words it: ``1 validation error detected: Value 'x' at 'field' …``.
    Lambda's model does not list it; AWS answers it, and botocore raises it by name."""

    status = 400

    def body(self) -> dict[str, str]:
        return {"message": self.message}


class UnknownOperationException(AwsCommonError):
    status = 404


class OperationNotSupported(AwsCommonError):
    """A Lambda operation (botocore's model knows its method and path) that esm does not
    implement: 501, named ``InternalFailure`` as LocalStack names an operation it does not
    emulate, so tools written against emulators recognise it; ``Type: Service`` (the request is
    right, esm cannot do it). No SDK retries a 501, which is right: it will never succeed."""

    status = 501

    @property
    def name(self) -> str:
        return "InternalFailure"

    def body(self) -> dict[str, str]:
        return {"Type": "Service", "message": self.message}


class MalformedHttpRequestException(AwsCommonError):
    status = 400


class RequestTimeoutException(AwsCommonError):
    status = 408
    retriable = True  # botocore's standard retry mode retries it by name


class RequestEntityTooLargeException(AwsCommonError):
    status = 413


class AuthError(AwsCommonError):
    """The caller is not let in (``Settings.ApiAuth``): AWS's authentication errors, 403 (400
    for a signature missing a part), as AWS's Common Errors list them (:mod:`esm.sigv4`)."""

    status = 403


class MissingAuthenticationTokenException(AuthError):
    pass


class IncompleteSignatureException(AuthError):
    status = 400  # AWS's Common Errors: IncompleteSignature is a 400


class UnrecognizedClientException(AuthError):
    pass


class InvalidSignatureException(AuthError):
    pass


class SourceError(EsmError):
    """Reading from or acknowledging to an event source failed."""

    def __init__(self, message: str, *, code: str = "", retriable: bool = True) -> None:
        self.code = code
        self.retriable = retriable
        super().__init__(message)

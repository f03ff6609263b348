"""CreateEventSourceMapping's and UpdateEventSourceMapping's checks as AWS makes them: in AWS's
order, with AWS's error names and words (as recorded on AWS), so code that catches them by name
or matches their text behaves as it does against Lambda.

These run before esm's own rules (:meth:`esm.config.MappingConfig.problems`, which name the field
and the rule for esm.yaml), so an API caller sees what AWS would have said. Order, as AWS checks:
``DestinationConfig.OnSuccess`` → the event source → ``StartingPosition`` (enum, then presence and
source) → SQS's batch window → filter patterns → the function → the source exists (the pollers'
``check``) → duplicates (409).
"""

from __future__ import annotations

from typing import Any

from esm.arns import SourceKind, source_kind
from esm.errors import InvalidParameterValueException, ValidationException
from esm.filtering import FilterPatternError, compile_filter_criteria

STARTING_POSITIONS = ("LATEST", "AT_TIMESTAMP", "TRIM_HORIZON")
NO_SUCH_FUNCTION = "Function does not exist"
UNRECOGNIZED_SOURCE = "Unrecognized event source."
NO_ON_SUCCESS = "Unsupported DestinationConfig parameter for given event source mapping type."
BATCH_WINDOW = (
    "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater "
    "than 10"
)
BAD_FILTER = "Invalid filter pattern definition."


def _value(v: Any) -> str:
    return "null" if v is None else f"'{v}'"


def check_mapping_request(params: dict[str, Any], *, create: bool) -> None:
    """AWS's checks of a mapping's parameters (an Update's merged with the mapping's own)."""
    dests = params.get("DestinationConfig")
    if isinstance(dests, dict) and "OnSuccess" in dests:
        raise InvalidParameterValueException(NO_ON_SUCCESS)
    arn = params.get("EventSourceArn")
    if not isinstance(arn, str) or not arn:
        raise InvalidParameterValueException(UNRECOGNIZED_SOURCE)
    try:
        kind = source_kind(arn)
    except ValueError:
        return  # a service esm does not poll: esm's own rule names it
    position = params.get("StartingPosition")
    if create:
        _check_starting_position(kind, arn, position, params.get("StartingPositionTimestamp"))
    if kind == "sqs" and not arn.endswith(".fifo"):  # FIFO: at most 10 (esm's rule says so)
        batch = params.get("BatchSize")
        window = params.get("MaximumBatchingWindowInSeconds") or 0
        if isinstance(batch, int) and batch > 10 and window == 0:
            raise InvalidParameterValueException(BATCH_WINDOW)
    _check_filters(params.get("FilterCriteria"), kind)


def _check_starting_position(kind: SourceKind, arn: str, position: Any, timestamp: Any) -> None:
    if position is not None and position not in STARTING_POSITIONS:
        raise ValidationException(
            f"1 validation error detected: Value {_value(position)} at 'startingPosition' failed "
            "to satisfy constraint: Member must satisfy enum value set: "
            "[LATEST, AT_TIMESTAMP, TRIM_HORIZON]"
        )
    if kind == "sqs":
        if position is not None:
            raise InvalidParameterValueException(
                "StartingPosition is not valid for SQS event sources."
            )
        return
    if position is None:
        raise InvalidParameterValueException(
            "1 validation error detected: Value null at 'startingPosition' failed to satisfy "
            "constraint: Member must not be null."
        )
    if kind == "dynamodb" and position == "AT_TIMESTAMP":
        raise InvalidParameterValueException(f"Unsupported starting position for arn type: {arn}")
    if timestamp is not None and position != "AT_TIMESTAMP":
        raise InvalidParameterValueException(
            "Timestamp only valid with StartingPosition AT_TIMESTAMP"
        )


def _check_filters(criteria: Any, kind: SourceKind) -> None:
    if not isinstance(criteria, dict):
        return
    filters = criteria.get("Filters")
    if not isinstance(filters, list):
        return
    patterns = []
    for f in filters:
        pattern = f.get("Pattern") if isinstance(f, dict) else None
        if not isinstance(pattern, str) or not pattern:
            raise InvalidParameterValueException(BAD_FILTER)
        patterns.append(pattern)
    try:
        compile_filter_criteria(patterns, kind)
    except FilterPatternError:
        raise InvalidParameterValueException(BAD_FILTER) from None

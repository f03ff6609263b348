"""esm's testing library: AWS-exact event factories and an in-process harness on a virtual clock.

::

    from esm.testing import Harness, sqs_event, lambda_context

    def test_handler_alone():                      # the handler, with an exact event
        assert handler(sqs_event("a", "b"), lambda_context()) == {"batchItemFailures": []}

    async def test_around_the_handler():           # what happens around it: the same engine
        async with Harness("esm.yaml") as h:        # as ``esm run``, in milliseconds
            h.put_sqs_messages("orders", ["a", "poison"])
            await h.run_until_idle()
            assert h.queue("orders-dlq").bodies() == ["poison"]

Modules: :mod:`~esm.testing.factories` (records, events, the context), :mod:`~esm.testing.
harness` (:class:`Harness`; :class:`SyncHarness` in :mod:`~esm.testing.sync` for code without an
event loop), :mod:`~esm.testing.views` (what a test reads), :mod:`~esm.testing.idle` (when the
harness is idle), :mod:`~esm.testing.destinations` (where records land), :mod:`~esm.testing.loading`
(the config, SAM template and the test's handlers), :mod:`~esm.testing.inprocess` (Python
functions in process: their environment variables, their own modules). The pytest plugin
(:mod:`esm.testing.plugin`, registered on install) adds the ``esm_harness``,
``esm_sync_harness`` and ``lambda_context`` fixtures.
"""

from esm.testing.factories import (
    deep_merge,
    dynamodb_event,
    dynamodb_json,
    dynamodb_record,
    dynamodb_value,
    kinesis_event,
    kinesis_record,
    lambda_context,
    message_attribute,
    sqs_event,
    sqs_record,
    window_event,
)
from esm.testing.handlers import HarnessClock
from esm.testing.harness import Harness, NotIdleError
from esm.testing.sync import SyncHarness
from esm.testing.views import Invocation, Message, QueueView

__all__ = [
    "Harness",
    "HarnessClock",
    "Invocation",
    "Message",
    "NotIdleError",
    "QueueView",
    "SyncHarness",
    "deep_merge",
    "dynamodb_event",
    "dynamodb_json",
    "dynamodb_record",
    "dynamodb_value",
    "kinesis_event",
    "kinesis_record",
    "lambda_context",
    "message_attribute",
    "sqs_event",
    "sqs_record",
    "window_event",
]

"""A shard's life in a stream mapping, as one state and the events that move it. Pure.

The stream poller (:mod:`esm.stream_poller`) says where every shard of the last listing stands;
the shard consumer (:mod:`esm.shard_consumer`) moves the life of a shard it holds the lease of.
Both read a shard's state from here and nowhere else::

    where a shard stands, derived from the listing and the checkpoints on every discovery tick
    (the store is the truth: a checkpoint it lost puts the shard back where its data says):

      WaitingOnParents ──parents finished──> Ready ──lease refused──> LeasedElsewhere
       (a parent listed,                     (free, or past this       (another daemon holds an
        not at SHARD_END)                     daemon's fair share)      unexpired lease)
                                               │                          │
                                               └──leased──> Starting <──leased (it expired)

    a shard's life here, while this daemon holds its lease (one ShardConsumer):

      Starting ──checkpoint read──> Processing ──read to its end──> Draining ──SHARD_END saved──┐
       │ (reading the checkpoint      ↺ iterator expired: reopened    (the shard is closed: the  │
       │  and the window state)         at once after the last read    batches left finish)     │
       │                              ↺ read failed: reopened after a backoff                   v
       ├──checkpoint at SHARD_END──────────────────────────────────────────────────────> ShardEnded
       └──store unavailable (while the lease lasted)──> Stopped

      Starting / Processing / Draining ──stop requested──> Stopping ──loops ended──> Stopped
        (a hand-back past the fair share, or shutdown: in-flight batches finish, checkpointed)
      Draining ──loops ended (records left not done)──> Stopped
      any live state ──lease lost──> LeaseLost   (renewal refused, or a checkpoint write fenced)
      any live state ──aborted──> Stopped        (an error or a cancellation ended the loops)

The live states are Starting, Processing, Draining and Stopping; ShardEnded, LeaseLost and
Stopped are ends (the poller reaps the consumer, releases the lease unless it is shutting down,
and looks again: a ShardEnded shard lets its children start). Stopping absorbs what the reader
and the start still report while the loops wind down (checkpoint read, read failed, iterator
expired, read to its end, a second stop request); SHARD_END ends the shard even then, found at
the start (the consumer returns at once) or saved (the stop came while it was being written).

The first diagram's arrows are how a shard's standing changes from one tick to the next;
:func:`standing` derives it afresh each time (so a lost checkpoint needs no arrow) and
:func:`advance` records what a tick learns (the lease refused, or taken here).

:func:`advance` refuses every other pair with :class:`ImpossibleTransition` (a bug in esm, not
bad input). A caller that may race with the end of a life (the poller asking a consumer that
just finished to stop) asks :func:`is_live` first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from enum import StrEnum
from typing import Final, Protocol

SHARD_END: Final = "SHARD_END"
"""The checkpoint of a shard read to its end and done (the store keeps it, :mod:`esm.store`)."""


class ShardState(StrEnum):
    WAITING_ON_PARENTS = "WaitingOnParents"
    READY = "Ready"
    LEASED_ELSEWHERE = "LeasedElsewhere"
    STARTING = "Starting"
    PROCESSING = "Processing"
    DRAINING = "Draining"
    STOPPING = "Stopping"
    SHARD_ENDED = "ShardEnded"
    LEASE_LOST = "LeaseLost"
    STOPPED = "Stopped"


class ShardEvent(StrEnum):
    PARENTS_FINISHED = "parents finished"
    LEASE_REFUSED = "lease refused"
    LEASED = "leased"
    CHECKPOINT_READ = "checkpoint read"
    FOUND_SHARD_END = "checkpoint at SHARD_END"
    STORE_UNAVAILABLE = "store unavailable"
    ITERATOR_EXPIRED = "iterator expired"
    READ_FAILED = "read failed"
    READ_TO_END = "read to its end"
    SHARD_END_SAVED = "SHARD_END saved"
    STOP_REQUESTED = "stop requested"
    LOOPS_ENDED = "loops ended"
    LEASE_LOST = "lease lost"
    ABORTED = "aborted"


S, E = ShardState, ShardEvent

LIVE = frozenset({S.STARTING, S.PROCESSING, S.DRAINING, S.STOPPING})
ENDS = frozenset({S.SHARD_ENDED, S.LEASE_LOST, S.STOPPED})

TRANSITIONS: Mapping[tuple[ShardState, ShardEvent], ShardState] = {
    # where a shard stands
    (S.WAITING_ON_PARENTS, E.PARENTS_FINISHED): S.READY,
    (S.READY, E.LEASE_REFUSED): S.LEASED_ELSEWHERE,
    (S.READY, E.LEASED): S.STARTING,
    (S.LEASED_ELSEWHERE, E.LEASED): S.STARTING,
    # starting
    (S.STARTING, E.CHECKPOINT_READ): S.PROCESSING,
    (S.STARTING, E.FOUND_SHARD_END): S.SHARD_ENDED,
    (S.STARTING, E.STORE_UNAVAILABLE): S.STOPPED,
    # processing
    (S.PROCESSING, E.ITERATOR_EXPIRED): S.PROCESSING,
    (S.PROCESSING, E.READ_FAILED): S.PROCESSING,
    (S.PROCESSING, E.READ_TO_END): S.DRAINING,
    (S.DRAINING, E.SHARD_END_SAVED): S.SHARD_ENDED,
    # stopping: what the reader and the start still report while the loops wind down
    (S.STOPPING, E.CHECKPOINT_READ): S.STOPPING,
    (S.STOPPING, E.FOUND_SHARD_END): S.SHARD_ENDED,
    (S.STOPPING, E.STORE_UNAVAILABLE): S.STOPPED,
    (S.STOPPING, E.ITERATOR_EXPIRED): S.STOPPING,
    (S.STOPPING, E.READ_FAILED): S.STOPPING,
    (S.STOPPING, E.READ_TO_END): S.STOPPING,
    (S.STOPPING, E.STOP_REQUESTED): S.STOPPING,
    (S.STOPPING, E.LOOPS_ENDED): S.STOPPED,
    (S.STOPPING, E.SHARD_END_SAVED): S.SHARD_ENDED,  # the stop came during that last write
    # the loops ended with records of a closed shard not done (an end the loops do not reach
    # today without a stop request: said as Stopped, no SHARD_END written)
    (S.DRAINING, E.LOOPS_ENDED): S.STOPPED,
    # from every live state
    **{(s, E.STOP_REQUESTED): S.STOPPING for s in (S.STARTING, S.PROCESSING, S.DRAINING)},
    **{(s, E.LEASE_LOST): S.LEASE_LOST for s in LIVE},
    **{(s, E.ABORTED): S.STOPPED for s in LIVE},
}


class ImpossibleTransition(RuntimeError):
    """An event the state cannot take: a bug in esm's loops."""

    def __init__(self, state: ShardState, event: ShardEvent) -> None:
        self.state = state
        self.event = event
        super().__init__(f"a shard in {state} cannot take '{event}'")


def advance(state: ShardState, event: ShardEvent) -> ShardState:
    """The state after ``event``; :class:`ImpossibleTransition` when the table has no such
    pair."""
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise ImpossibleTransition(state, event) from None


def is_live(state: ShardState) -> bool:
    """A consumer's loops may still run (the state can still change)."""
    return state in LIVE


class ListedShard(Protocol):
    @property
    def shard_id(self) -> str: ...

    @property
    def parent_ids(self) -> tuple[str, ...]: ...


def standing(shard: ListedShard, listed: Set[str], checkpoints: Mapping[str, str]) -> ShardState:
    """Where a shard of the listing stands before any daemon's lease is asked: ShardEnded at
    SHARD_END; WaitingOnParents while a parent that is still listed is not at SHARD_END (a
    parent gone from the stream, trimmed, counts as finished); otherwise Ready."""
    if checkpoints.get(shard.shard_id) == SHARD_END:
        return S.SHARD_ENDED
    if any(p in listed and checkpoints.get(p) != SHARD_END for p in shard.parent_ids):
        return S.WAITING_ON_PARENTS
    return S.READY


def standings(
    shards: Iterable[ListedShard], checkpoints: Mapping[str, str]
) -> dict[str, ShardState]:
    """:func:`standing` of every listed shard, by shard id."""
    listed = list(shards)
    ids = {s.shard_id for s in listed}
    return {s.shard_id: standing(s, ids, checkpoints) for s in listed}


def ready(states: Mapping[str, ShardState]) -> list[str]:
    """The shards a daemon may lease now, in a stable order."""
    return sorted(sid for sid, st in states.items() if st is S.READY)

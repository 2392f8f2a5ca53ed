"""Routing metadata: ChangeEvent.profile survives every encoding; ProfileFilter selects on it."""

from __future__ import annotations

import pickle

import msgspec
import pytest

from cdcflow.core.routing import KNOWN_PROFILES, ProfileFilter
from cdcflow.schemas.canonical import event_dict
from cdcflow.schemas.model import (
    ChangeEvent,
    DeadLetter,
    EventBatch,
    Heartbeat,
    Op,
    Position,
    TableId,
)


def _event(offset: int, profile: str | None) -> ChangeEvent:
    return ChangeEvent(
        op=Op.UPDATE,
        table=TableId("shop", "public", "articles"),
        position=Position("shop.public.articles", 0, offset),
        key={"id": offset},
        after={"id": offset},
        profile=profile,
    )


def _batch(*profiles: str | None) -> EventBatch:
    return EventBatch(
        stream="shop.public.articles",
        partition=0,
        last_offset=100,
        events=[_event(i, p) for i, p in enumerate(profiles)],
        markers=[Heartbeat(position=Position("shop.public.articles", 0, 99))],
        dead_letters=[DeadLetter(step="decode", reason="bad", error_type="E", position=None)],
    )


def test_profile_is_optional_and_defaults_to_none() -> None:
    plain = ChangeEvent(op=Op.CREATE, table=TableId(table="t"), position=Position("t", 0, 1))
    assert plain.profile is None
    assert "profile" not in event_dict(plain)  # canonical output unchanged for unrouted events
    assert event_dict(_event(1, "index_only"))["profile"] == "index_only"


@pytest.mark.parametrize("profile", [*KNOWN_PROFILES, "custom-profile", None])
def test_profile_survives_pickle_and_msgpack(profile: str | None) -> None:
    batch = _batch(profile)
    assert pickle.loads(pickle.dumps(batch)).events[0].profile == profile
    event = batch.events[0]
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(event), type=ChangeEvent) == event
    assert msgspec.json.decode(msgspec.json.encode(event), type=ChangeEvent).profile == profile


def test_profile_survives_the_beam_batch_coder() -> None:
    from cdcflow.beam.coders import EventBatchCoder

    coder = EventBatchCoder()
    batch = _batch("archive", None, "full")
    assert [e.profile for e in coder.decode(coder.encode(batch)).events] == [
        "archive",
        None,
        "full",
    ]


def test_none_accepts_everything_and_returns_the_batch_itself() -> None:
    accept_all = ProfileFilter(None)
    batch = _batch("full", None, "archive")
    assert accept_all.accepts_all
    assert accept_all.apply(batch) is batch
    assert all(accept_all(e) for e in batch.events)


def test_named_profiles_accept_only_those() -> None:
    search = ProfileFilter(["full", "index_only"])
    batch = _batch("full", "index_only", "archive", None, "custom")
    kept = search.apply(batch)
    assert [e.profile for e in kept.events] == ["full", "index_only"]
    assert [e.profile for e in search.filter(batch.events)] == ["full", "index_only"]
    assert not search.accepts_all
    # an unrouted event is refused unless asked for
    assert [e.profile for e in ProfileFilter("archive", unrouted=True).apply(batch).events] == [
        "archive",
        None,
    ]
    assert ProfileFilter("custom").apply(batch).events[0].profile == "custom"


def test_filtering_keeps_the_position_markers_and_dead_letters() -> None:
    batch = _batch("archive", "archive")
    kept = ProfileFilter("full").apply(batch)
    assert kept.events == []
    assert kept.last_offset == 100 and kept.partition_key == batch.partition_key
    assert kept.markers == batch.markers and kept.dead_letters == batch.dead_letters
    assert len(batch.events) == 2  # the input batch is not changed


def test_all_accepted_returns_the_same_batch() -> None:
    batch = _batch("full", "full")
    assert ProfileFilter("full").apply(batch) is batch


@pytest.mark.parametrize("bad", [[], [""], [" full"], ["full", 3]])
def test_bad_profile_names_are_refused(bad: list[object]) -> None:
    with pytest.raises(ValueError):
        ProfileFilter(bad)  # type: ignore[arg-type]

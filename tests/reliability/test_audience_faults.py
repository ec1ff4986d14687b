"""Customer state under faults: kill -9 during profile updates and during a re-segmentation,
a worker leaving its group. The compacted state topic, the lookups, the segment changes and
an offline fold of the events must agree: no change lost, none repeated (read_committed)."""

from __future__ import annotations

import json
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from confluent_kafka import Consumer, TopicPartition

from schemas import CustomerSignup, CustomerState, Gender, ProfileUpdate
from stream_app.scorer import Scorer
from tests.integration.test_audiences import (
    _manifest,
    _publish,
    _replay,
    _resegmented,
    _signup,
    _train,
    _update,
)
from tests.reliability.scenario import Scenario
from tests.reliability.test_faults import _owned
from tests.support import (
    Broker,
    Names,
    TopicRecord,
    WorkerProcess,
    poll,
    read_topic,
    run_segstream,
    segstream_env,
    start_segstream,
)
from training.generate import generate_signups

pytestmark = pytest.mark.reliability

Event = CustomerSignup | ProfileUpdate
Features = tuple[float, float, str]


def _label(scorer: Scorer, features: Features) -> int:
    """The segment index scorer gives one customer's features (manifest feature order)."""
    by_name = {
        "age": features[0],
        "annual_income": features[1],
        "gender_female": 1.0 if features[2] == Gender.FEMALE.value else 0.0,
    }
    row = np.array([[by_name[name] for name in scorer.manifest.features]], dtype=np.float64)
    return int(scorer.score(row).labels[0])


@dataclass
class _Fold:
    """Each customer's state and segment changes, folded offline from its events in order.

    An event older than the state is ignored; an event that changes neither features, segment,
    model version nor the time of the state leaves the state as it is; a revision that enters
    another segment is a change.
    """

    scorer: Scorer
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    changes: dict[str, list[tuple[object, ...]]] = field(default_factory=dict)
    stale: int = 0

    def add(self, event: Event) -> None:
        state = self.states.get(event.customer_id)
        if isinstance(event, CustomerSignup):
            moment, reason = event.signed_up_at, "signup"
            features: Features = (event.age, event.annual_income, event.gender.value)
        else:
            assert state is not None, "every customer signs up before it is updated"
            moment, reason = event.updated_at, "profile_update"
            features = (
                event.age if event.age is not None else state["age"],
                event.annual_income if event.annual_income is not None else state["annual_income"],
                event.gender.value if event.gender is not None else state["gender"],
            )
        if state is not None and state["updated_at"] > moment:
            self.stale += 1
            return
        manifest = self.scorer.manifest
        segment = manifest.segments[_label(self.scorer, features)]
        same = state is not None and state["segment_id"] == segment.id
        if (
            state is not None
            and same
            and state["model_version"] == manifest.version
            and (state["age"], state["annual_income"], state["gender"]) == features
            and state["updated_at"] == moment
        ):
            return
        revision = state["revision"] + 1 if state is not None else 1
        self.states[event.customer_id] = {
            "customer_id": event.customer_id,
            "age": features[0],
            "annual_income": features[1],
            "gender": features[2],
            "segment_id": segment.id,
            "segment_name": segment.name,
            "model_version": manifest.version,
            "since": state["since"] if same and state is not None else moment,
            "updated_at": moment,
            "revision": revision,
            "source_event_id": event.event_id,
        }
        if not same:
            exited = state["segment_id"] if state is not None else None
            self.changes.setdefault(event.customer_id, []).append(
                (revision, exited, segment.id, reason, event.event_id)
            )


def _profile_updates(
    signups: list[CustomerSignup], n: int, seed: int
) -> Iterator[dict[str, object]]:
    """n updates of random customers: new features drawn like signups', in time order, except
    one in twenty dated before every earlier update of the stream (stale once a customer has
    had an update). One in twenty-five repeats the signup's income: it changes nothing but the
    state's time while the customer has had no other update."""
    rng = random.Random(seed)
    fresh = [CustomerSignup.model_validate_json(v) for v in generate_signups(n, seed=seed)]
    start = max(s.signed_up_at for s in signups) + timedelta(days=30)
    for i, drawn in enumerate(fresh):
        customer = rng.choice(signups)
        at = start + timedelta(seconds=i)
        if rng.random() < 0.05:
            at -= timedelta(days=3)
        kind = rng.random()
        features: dict[str, object] = {"annual_income": drawn.annual_income}
        if kind < 0.3:
            features["age"] = drawn.age
        elif kind < 0.4:
            features["gender"] = rng.choice(["female", "male"])
        elif kind < 0.44:
            features["annual_income"] = customer.annual_income
        yield {
            "kind": "profile_update",
            "event_id": f"update-{i}",
            "customer_id": customer.customer_id,
            "updated_at": at.isoformat(),
            **features,
        }


def _write_events(path: Path, values: list[bytes]) -> None:
    path.write_bytes(b"".join(v + b"\n" for v in values))


def _everything_consumed(kafka: Broker, names: Names) -> bool:
    """Whether the group's committed offsets have reached the end of every input partition."""
    config = {"bootstrap.servers": kafka.bootstrap, "group.id": names.app_id}
    consumer = Consumer({**config, "enable.auto.commit": False})
    try:
        topic = consumer.list_topics(names.input_topic, timeout=10).topics[names.input_topic]
        tps = [TopicPartition(names.input_topic, p) for p in topic.partitions]
        for tp in consumer.committed(tps, timeout=10):
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            if high > 0 and tp.offset < high:
                return False
        return True
    finally:
        consumer.close()


def _last_states(kafka: Broker, names: Names) -> tuple[dict[str, CustomerState], dict[str, int]]:
    """The last record of each customer on the state topic, and each customer's partition."""
    states: dict[str, CustomerState] = {}
    partitions: dict[str, int] = {}
    for record in read_topic(kafka.bootstrap, names.state_topic):
        assert record.key is not None
        assert record.value is not None
        state = CustomerState.model_validate_json(record.value)
        assert record.key.decode() == state.customer_id
        states[state.customer_id] = state
        partitions[state.customer_id] = record.partition
    return states, partitions


def _segment_changes(kafka: Broker, names: Names) -> list[dict[str, Any]]:
    return [r.json() for r in read_topic(kafka.bootstrap, names.changes_topic)]


def _lookups(worker: WorkerProcess, customers: list[str]) -> dict[str, dict[str, Any]]:
    """GET /customers/{id} of each customer on worker; every answer must be 200."""
    answers: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{worker.web_port}", timeout=10) as client:
        for customer_id in customers:
            response = client.get(f"/customers/{customer_id}")
            assert response.status_code == 200, (customer_id, response.text)
            answers[customer_id] = response.json()
    return answers


def _as_state(answer: dict[str, Any]) -> CustomerState:
    return CustomerState.model_validate({k: v for k, v in answer.items() if k != "answered_by"})


def _committed_count(worker: WorkerProcess, what: str) -> float:
    """A figure of the worker's /health (`consumed`) or a counter of its /metrics."""
    if what == "consumed":
        consumed: float = worker.health("/health").json()["consumed"]
        return consumed
    found = re.search(rf"^{what} (\S+)$", worker.health("/metrics").text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


#: A killed worker leaves the group after 6 s (the broker's least) instead of 10.
_QUICK_REJOIN = {"SEGSTREAM_SESSION_TIMEOUT_MS": "6000"}


def _at_least(kafka: Broker, topic: str, n: int, timeout: float) -> list[TopicRecord]:
    """The records of topic once it holds at least n (read_committed)."""

    def enough() -> list[TopicRecord] | None:
        records = read_topic(kafka.bootstrap, topic)
        return records if len(records) >= n else None

    return poll(enough, f"{n} records on {topic}", timeout)


def _progress(
    worker: WorkerProcess, counter: str, target: int, done_at: str | None = None
) -> Callable[[], bool]:
    """A condition: the worker's counter reached target (or its re-segmentation to done_at
    is complete)."""

    def reached() -> bool:
        if done_at is not None and _resegmented(worker, done_at):
            return True
        return _committed_count(worker, counter) >= target

    return reached


def _kill_9(worker: WorkerProcess) -> None:
    worker.process.kill()  # SIGKILL: no shutdown code runs
    assert worker.process.wait(timeout=10) == -signal.SIGKILL


def test_three_kill_9s_during_signups_and_profile_updates(
    kafka: Broker,
    names: Names,
    trained_model: Path,
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
    report: list[dict[str, object]],
) -> None:
    began = time.monotonic()
    raw_signups = list(generate_signups(5_000, seed=31))
    signups = [CustomerSignup.model_validate_json(v) for v in raw_signups]
    updates = list(_profile_updates(signups, 10_000, seed=32))
    path = tmp_path / "events.jsonl"
    _write_events(path, raw_signups + [json.dumps(u).encode() for u in updates])
    fold = _Fold(Scorer(_manifest(trained_model)))
    events: list[CustomerSignup | ProfileUpdate] = [
        *signups,
        *(ProfileUpdate.model_validate(u) for u in updates),
    ]
    for event in events:
        fold.add(event)
    moves = sum(len(c) - 1 for c in fold.changes.values())
    assert moves > 2_000, "the updates must move many customers between segments"
    assert fold.stale > 100

    # One data directory for every incarnation: each restart restores from its checkpoint.
    data = {"SEGSTREAM_DATA_DIR": str(tmp_path / "worker-data"), **_QUICK_REJOIN}
    worker = worker_factory(trained_model, **data)
    worker.wait_ready()
    # 15,000 events at 400/s outlast three kills and restarts: each lands mid-stream.
    replay = start_segstream(
        ["replay", str(path), "--rate", "400"], segstream_env(kafka, names), tmp_path / "replay.log"
    )
    scenario = Scenario(kafka, names, [worker], {s.event_id for s in signups}, 0, replay)
    moments = random.Random(7)
    kills_mid_stream = 0
    for _ in range(3):
        # Each incarnation commits some of the stream before it dies, at a random moment.
        target = moments.randint(300, 1_500)
        poll(_progress(worker, "consumed", target), "progress", 60)
        kills_mid_stream += replay.process.poll() is None
        _kill_9(worker)
        worker = worker_factory(trained_model, **data)
        scenario.workers.append(worker)
        worker.wait_ready()

    figures = scenario.finish("3x kill -9, updates", "exactly_once", report)
    poll(lambda: _everything_consumed(kafka, names), "every event committed", 60)
    states, _partitions = _last_states(kafka, names)
    changes = _segment_changes(kafka, names)
    customers = sorted(fold.states)
    answers = _lookups(worker, customers)

    expected = {c: CustomerState.model_validate(s) for c, s in fold.states.items()}
    wrong_topic = [c for c in customers if states.get(c) != expected[c]]
    wrong_lookup = [c for c in customers if _as_state(answers[c]) != expected[c]]
    by_customer: dict[str, list[tuple[object, ...]]] = {}
    for change in changes:
        by_customer.setdefault(change["customer_id"], []).append(
            (
                change["revision"],
                change["exited_segment_id"],
                change["entered_segment_id"],
                change["reason"],
                change["source_event_id"],
            )
        )
    ids = Counter(c["event_id"] for c in changes)
    expected_changes = sum(len(c) for c in fold.changes.values())
    lost = sum(len(set(fold.changes[c]) - set(by_customer.get(c, []))) for c in fold.changes)
    assert (figures["missing"], figures["duplicates"]) == (0, 0), figures  # assignments
    # The row counts every event in, and the segment changes out.
    figures.update(
        {
            "in": len(raw_signups) + len(updates),
            "assigned": len(changes),
            "duplicates": sum(k - 1 for k in ids.values()),
            "missing": lost,
            "note": f"{expected_changes} changes expected, {len(wrong_topic)} wrong states, "
            f"{fold.stale} stale updates, {kills_mid_stream}/3 kills mid-replay, "
            f"{time.monotonic() - began:.0f} s",
        }
    )
    assert set(states) == set(customers)
    assert wrong_topic == [], (len(wrong_topic), wrong_topic[:3])
    assert wrong_lookup == [], (len(wrong_lookup), wrong_lookup[:3])
    assert all(a["answered_by"] == f"http://127.0.0.1:{worker.web_port}" for a in answers.values())
    assert (figures["missing"], figures["duplicates"]) == (0, 0), figures
    assert by_customer == fold.changes, figures
    assert len(changes) == expected_changes
    assert Counter(c["reason"] for c in changes)["profile_update"] == moves, (
        "every move after a signup is a profile update's"
    )
    assert worker.stop() == 0, worker.log_tail()


def test_three_kill_9s_during_a_resegmentation(
    kafka: Broker,
    names: Names,
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
    report: list[dict[str, object]],
) -> None:
    began = time.monotonic()
    n = 20_000
    # A fifth segment in v2 moves about one customer in seven.
    v1, v2 = _train(tmp_path, 1, "v1"), _train(tmp_path, 5, "v2", k=5)
    env = segstream_env(kafka, names)
    _publish(env, str(v1))
    # Slices of 200 customers between batches of a 100 ms window: the re-segmentation of
    # 20,000 customers runs for seconds, long enough to be killed in.
    data = {
        **_QUICK_REJOIN,
        "SEGSTREAM_DATA_DIR": str(tmp_path / "worker-data"),
        "SEGSTREAM_RESEGMENT_BATCH_SIZE": "200",
        "SEGSTREAM_BATCH_WINDOW_MS": "100",
    }
    worker = worker_factory(None, **data)
    worker.wait_ready()
    raw_signups = list(generate_signups(n, seed=11))
    signups = [CustomerSignup.model_validate_json(v) for v in raw_signups]
    path = tmp_path / "signups.jsonl"
    _write_events(path, raw_signups)
    replayed = run_segstream(["replay", str(path)], env=env)
    assert replayed.returncode == 0, replayed.stderr
    poll(lambda: _everything_consumed(kafka, names), "every signup committed", 60)

    scorers = {"v1": Scorer(_manifest(v1)), "v2": Scorer(_manifest(v2))}
    offline = {
        version: {
            s.customer_id: scorer.manifest.segments[
                _label(scorer, (s.age, s.annual_income, s.gender.value))
            ].id
            for s in signups
        }
        for version, scorer in scorers.items()
    }
    moved = {c for c in offline["v1"] if offline["v1"][c] != offline["v2"][c]}
    assert len(moved) > 1_000, "the two models must disagree on many customers"

    _publish(env, str(v2))
    kills_mid_resegment = 0
    moments = random.Random(11)
    for _ in range(3):
        # Killed once this incarnation has committed part of the re-segmentation.
        target = moments.randint(200, 1_500)
        poll(
            _progress(worker, "segstream_customers_rescored_total", target, done_at="v2"),
            "re-segmentation progress",
            60,
        )
        kills_mid_resegment += not _resegmented(worker, "v2")
        _kill_9(worker)
        worker = worker_factory(None, **data)
        worker.wait_ready()
    poll(lambda: _resegmented(worker, "v2"), "re-segmentation for v2 complete", 90)

    changes = [r.json() for r in _at_least(kafka, names.changes_topic, n + len(moved), 60)]
    model_changes = [c for c in changes if c["reason"] == "model_change"]
    ids = Counter(c["event_id"] for c in changes)
    per_customer = Counter(c["customer_id"] for c in model_changes)
    states, _partitions = _last_states(kafka, names)
    sample = sorted(offline["v1"])[:: n // 500]
    answers = _lookups(worker, sample)
    report.append(
        {
            "fault": "3x kill -9, re-segment",
            "guarantee": "exactly_once",
            "in": n,
            "assigned": len(model_changes),
            "dead_lettered": 0,
            "duplicates": sum(n - 1 for n in ids.values())
            + sum(k - 1 for k in per_customer.values()),
            "missing": len(moved - set(per_customer)),
            "note": f"{len(moved)} customers move v1 -> v2, {kills_mid_resegment}/3 kills "
            f"mid-re-segmentation, {time.monotonic() - began:.0f} s",
        }
    )
    assert kills_mid_resegment == 3, "every kill must land while the re-segmentation runs"
    assert Counter(c["reason"] for c in changes)["signup"] == n
    assert len(ids) == len(changes), "no event id twice"
    assert per_customer == Counter(moved)
    for change in model_changes:
        customer_id = change["customer_id"]
        assert change["exited_segment_id"] == offline["v1"][customer_id], change
        assert change["entered_segment_id"] == offline["v2"][customer_id], change
        assert (change["previous_model_version"], change["model_version"]) == ("v1", "v2")
    assert set(states) == set(offline["v2"])
    for customer_id, state in states.items():
        assert (state.model_version, state.segment_id) == ("v2", offline["v2"][customer_id])
    for customer_id, answer in answers.items():
        assert _as_state(answer) == states[customer_id]
    assert worker.stop() == 0, worker.log_tail()


def _restored(log: str, topic: str) -> dict[int, tuple[int, float]]:
    """Per partition, the records its state was restored with and the seconds it took, as the
    log says (the last time)."""
    pattern = rf"state of {re.escape(topic)}\[(\d+)\] ready: (\d+) records replayed in (\S+) s"
    return {int(p): (int(n), float(t)) for p, n, t in re.findall(pattern, log)}


def test_a_worker_leaves_and_the_other_restores_its_customers_and_answers_for_them(
    kafka: Broker,
    names: Names,
    trained_model: Path,
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
    report: list[dict[str, object]],
) -> None:
    n = 2_000
    # Started together: both create the topics, and both must find them.
    stayer, leaver = worker_factory(trained_model), worker_factory(trained_model)
    for worker in (stayer, leaver):
        worker.wait_ready()
    poll(lambda: len(_owned(stayer)) == 2 and len(_owned(leaver)) == 2, "2 + 2 split")
    path = tmp_path / "signups.jsonl"
    _write_events(path, list(generate_signups(n, seed=21)))
    replayed = run_segstream(["replay", str(path)], env=segstream_env(kafka, names))
    assert replayed.returncode == 0, replayed.stderr
    poll(lambda: _everything_consumed(kafka, names), "every signup committed", 60)
    states, partitions = _last_states(kafka, names)
    assert len(states) == n
    customers = sorted(states)

    # Before the leave: a customer of the leaver's, asked of the stayer, is routed.
    leaver_url, stayer_url = (f"http://127.0.0.1:{w.web_port}" for w in (leaver, stayer))
    theirs = {int(p.rsplit("[", 1)[1].rstrip("]")) for p in _owned(leaver)}
    routed = next(c for c in customers if partitions[c] in theirs)
    (answer,) = _lookups(stayer, [routed]).values()
    assert answer["answered_by"] == leaver_url
    assert _as_state(answer) == states[routed]
    mine = next(c for c in customers if partitions[c] not in theirs)
    assert _lookups(stayer, [mine])[mine]["answered_by"] == stayer_url

    log_before = len(stayer.log_path.read_text(errors="replace"))
    assert leaver.stop() == 0, leaver.log_tail()
    poll(lambda: len(_owned(stayer)) == 4, "the stayer owns all 4 partitions")
    log_after = stayer.log_path.read_text(errors="replace")[log_before:]
    restored = _restored(log_after, names.input_topic)
    per_partition = Counter(partitions.values())
    assert set(restored) == theirs, stayer.log_tail()
    for partition in theirs:
        # Its store was empty (or checkpointed before these customers): all are replayed.
        assert restored[partition][0] >= per_partition[partition], (restored, per_partition)

    answers = _lookups(stayer, customers)
    wrong = [c for c in customers if _as_state(answers[c]) != states[c]]
    report.append(
        {
            "fault": "worker leaves (state)",
            "guarantee": "exactly_once",
            "in": n,
            "assigned": len(answers) - len(wrong),
            "dead_lettered": 0,
            "duplicates": 0,
            "missing": len(wrong),
            "note": "restored "
            + ", ".join(f"[{p}] {k} records in {t} s" for p, (k, t) in sorted(restored.items())),
        }
    )
    assert {a["answered_by"] for a in answers.values()} == {stayer_url}
    assert wrong == []
    assert stayer.stop() == 0, stayer.log_tail()


def test_an_update_that_repeats_the_features_dates_the_state_however_the_events_are_batched(
    kafka: Broker,
    names: Names,
    trained_model: Path,
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    # A restarted worker reads the same events again, in other batches: the state they leave
    # must not depend on where a batch ends. An update that repeats a customer's features is
    # still the newest word on them, so an update dated before it is stale, in one batch or two.
    worker = worker_factory(trained_model)
    worker.wait_ready()
    env = segstream_env(kafka, names)

    def events(customer_id: str) -> list[dict[str, object]]:
        return [
            _signup(customer_id, 30.0, 40_000.0, "2026-01-01T00:00:00Z"),
            _update(customer_id, 1, "2026-03-01T00:00:00Z", annual_income=40_000.0),
            _update(customer_id, 2, "2026-02-01T00:00:00Z", annual_income=150_000.0),
        ]

    split, together = events("c-split"), events("c-together")
    _replay(env, tmp_path / "first.jsonl", split[:2])
    poll(lambda: _everything_consumed(kafka, names), "the first two events committed", 60)
    _replay(env, tmp_path / "second.jsonl", split[2:])
    _replay(env, tmp_path / "together.jsonl", together)
    poll(lambda: _everything_consumed(kafka, names), "every event committed", 60)

    fold = _Fold(Scorer(_manifest(trained_model)))
    for event in split + together:
        fold.add(
            ProfileUpdate.model_validate(event)
            if event.get("kind")
            else CustomerSignup.model_validate(event)
        )
    states, _partitions = _last_states(kafka, names)
    for customer_id in ("c-split", "c-together"):
        expected = CustomerState.model_validate(fold.states[customer_id])
        assert states[customer_id] == expected
        assert _as_state(_lookups(worker, [customer_id])[customer_id]) == expected
    assert worker.stop() == 0, worker.log_tail()

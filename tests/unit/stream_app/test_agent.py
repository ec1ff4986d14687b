"""The scoring agent under Faust's test_context: decode, score, send, dead-letter, count."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Callable

import pytest

from stream_app.app import create_app
from stream_app.settings import Settings
from tests.unit.stream_app.toy import capture_sends, toy_manifest

# Constructing a faust.App outside its worker opens an event loop and a socket pair of its own
# that Faust never closes; that leak is Faust's, not the agent's.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

GOOD = json.dumps(
    {
        "event_id": "e-1",
        "customer_id": "c-1",
        "age": 50,
        "annual_income": 60_000,
        "signed_up_at": "2026-01-01T00:00:00Z",
    }
).encode()


async def _wait_for(predicate: Callable[[], bool]) -> None:
    """Poll predicate for up to 60 s (a busy machine is slow); the caller's assertions judge."""
    for _ in range(6_000):
        if predicate():
            return
        await asyncio.sleep(0.01)


def test_agent_sends_assignments_and_dead_letters_and_keeps_going() -> None:
    async def scenario() -> None:
        segmentation = create_app(
            Settings(app_id="agent-test", batch_window_ms=5, processing_guarantee="at_least_once")
        )
        segmentation.state.use(
            toy_manifest([40.0, 50_000.0], [10.0, 10_000.0], [[-1.0, 0.0], [1.0, 1.0]])
        )
        sent = capture_sends(segmentation.app)
        async with segmentation.agent.test_context() as agent:
            await agent.put(b"{broken", key=b"c-0")
            await agent.put(GOOD, key=b"c-1")
            await agent.put(GOOD, key=b"not-c-1")
            await _wait_for(lambda: segmentation.state.consumed == 3)
        state = segmentation.state
        assert (state.consumed, state.assigned, state.dead_lettered) == (3, 1, 2)
        assert dict(state.dead_letter_reasons) == {"not_json": 1, "key_mismatch": 1}
        settings = segmentation.settings
        assert set(sent) == {settings.output_topic, settings.dlq_topic}
        (assignment,) = sent[settings.output_topic]
        assert assignment.key == b"c-1"
        assert json.loads(assignment.value or b"")["segment_id"] == "segment-1"
        reasons = [
            dict(letter.headers)["__connect.errors.reason"] for letter in sent[settings.dlq_topic]
        ]
        assert reasons == [b"not_json", b"key_mismatch"]

    asyncio.run(scenario())
    gc.collect()  # surface Faust's leak here, under this module's filter


def test_agent_consumes_nothing_until_a_model_is_loaded() -> None:
    async def scenario() -> None:
        segmentation = create_app(
            Settings(app_id="agent-test-2", batch_window_ms=5, processing_guarantee="at_least_once")
        )
        sent = capture_sends(segmentation.app)
        async with segmentation.agent.test_context() as agent:
            # wait=False: the agent must not process it yet, so nothing would ever return.
            await agent.put(GOOD, key=b"c-1", wait=False)
            await asyncio.sleep(0.2)
            assert segmentation.state.consumed == 0
            assert sent == {}
            segmentation.state.use(
                toy_manifest([40.0, 50_000.0], [10.0, 10_000.0], [[-1.0, 0.0], [1.0, 1.0]])
            )
            await _wait_for(lambda: segmentation.state.consumed == 1)
        assert segmentation.state.assigned == 1
        assert len(sent[segmentation.settings.output_topic]) == 1

    asyncio.run(scenario())
    gc.collect()  # surface Faust's leak here, under this module's filter

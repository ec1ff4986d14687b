"""Which segment is a customer in now: answered by the worker that owns the customer.

Each worker holds the state of the partitions it owns. A lookup on a worker that does not
hold the customer is routed to the others: the consumer group itself is the directory (each
worker's consumer joins with its web address in its client.id, and the group's description
lists the members), so no extra topic or registry has to be kept right. Routing, rather than
reading the compacted state topic, answers from the store that is current to the last
commit, in milliseconds, and without scanning a topic to find one key.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from typing import Any

import aiohttp
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from stream_app.settings import Settings

__all__ = ["MEMBER_PREFIX", "Lookup", "LookupAnswer", "group_worker_ids", "member_client_id"]

log = logging.getLogger(__name__)

_PEER_TIMEOUT = 3.0

#: Prefix of the client.id of a worker's consumer; the rest is its worker id and web URL.
MEMBER_PREFIX = "segstream|"


def member_client_id(worker: str, url: str) -> str:
    """The client.id a worker's consumer joins the group with: how peers reach its views."""
    return f"{MEMBER_PREFIX}{worker}|{url}"


#: (HTTP status, body): 200 with the state, 404 when no worker holds it, 503 when the
#: workers that might hold it could not be asked.
LookupAnswer = tuple[int, dict[str, Any]]


def _group_members(settings: Settings) -> list[tuple[str, str]]:
    """(worker id, web URL) of each worker in the consumer group now, from the client ids
    its members joined with; KafkaException when the group cannot be read."""
    admin = AdminClient(settings.librdkafka_options())
    futures = admin.describe_consumer_groups([settings.app_id], request_timeout=_PEER_TIMEOUT)
    description = futures[settings.app_id].result(_PEER_TIMEOUT)
    members = []
    for member in description.members:
        client_id = member.client_id or ""
        if client_id.startswith(MEMBER_PREFIX):
            _prefix, worker, url = client_id.split("|", 2)
            members.append((worker, url))
    return members


def group_worker_ids(settings: Settings) -> set[str] | None:
    """The worker ids of the consumer group's members now; None when it cannot be read."""
    try:
        return {worker for worker, _url in _group_members(settings)}
    except KafkaException:
        return None


def _peer_urls(settings: Settings, own_url: str) -> list[str]:
    """The web addresses of the group's other workers, from the group's member list."""
    return sorted({url for _worker, url in _group_members(settings) if url != own_url})


class Lookup:
    """Answers GET /customers/{id} from the local stores, or from the worker that owns it."""

    def __init__(self, settings: Settings, local: Any) -> None:
        self.settings = settings
        self.local = local  # Audiences, or None when customer state is off

    async def find(self, customer_id: str, route: bool = True) -> LookupAnswer:
        """The customer's state, asking the other workers when route and it is not here."""
        customer_id = unicodedata.normalize("NFC", customer_id)
        own_url = self.settings.web_url()
        if self.local is None:
            return 404, {"error": "this worker keeps no customer state (SEGSTREAM_CUSTOMER_STATE)"}
        state = self.local.lookup(customer_id)
        if state is not None:
            return 200, {**state, "answered_by": own_url}
        if not route:
            return 404, {"error": f"customer {customer_id!r} is not in this worker's partitions"}
        loop = asyncio.get_running_loop()
        try:
            peers = await loop.run_in_executor(None, _peer_urls, self.settings, own_url)
        except KafkaException as exc:
            return 503, {"error": f"cannot list the other workers: {exc}"}
        unreachable = []
        timeout = aiohttp.ClientTimeout(total=_PEER_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for url in peers:
                try:
                    async with session.get(
                        f"{url}/customers/{customer_id}", params={"local": "1"}
                    ) as response:
                        if response.status == 200:
                            body: dict[str, Any] = await response.json()
                            return 200, body
                        if response.status != 404:
                            unreachable.append(f"{url} answered {response.status}")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    unreachable.append(f"{url}: {exc or type(exc).__name__}")
        if unreachable:
            return 503, {
                "error": f"customer {customer_id!r} not found here; could not ask "
                + "; ".join(unreachable)
            }
        return 404, {"error": f"customer {customer_id!r} is not known to any worker"}

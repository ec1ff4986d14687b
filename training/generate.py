"""Generate realistic sample data: customer tables with the seed's four groups, signup streams."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

__all__ = ["GROUPS", "generate_customers", "generate_signups", "invalid_payloads"]


@dataclass(frozen=True)
class _Group:
    share: float
    age_mean: float
    age_sd: float
    income_mean: float
    income_sd: float


#: The seed's four profiles as generating distributions (income in dollars). The groups are
#: far enough apart in standardised age/income that K-Means with k=4 recovers them and the
#: catalogue names land in the seed's places, also on bootstrap resamples of a few hundred
#: customers: seniors earn clearly more than the budget group (otherwise older budget
#: customers are absorbed by the seniors), and the budget group's ages are wide but centred.
GROUPS: dict[str, _Group] = {
    "traditional-seniors": _Group(0.24, 60, 5.0, 58_000, 8_000),
    "vip-luxury": _Group(0.22, 40, 5.0, 105_000, 12_000),
    "budget-conscious": _Group(0.26, 38, 10.0, 22_000, 5_000),
    "young-professionals": _Group(0.28, 29, 4.0, 70_000, 8_000),
}
_AGE_RANGE = (18.0, 70.0)
_INCOME_RANGE = (15_000.0, 140_000.0)


def _draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    names = list(GROUPS)
    shares = np.array([GROUPS[g].share for g in names])
    group = rng.choice(len(names), size=n, p=shares / shares.sum())
    age = np.empty(n)
    income = np.empty(n)
    for index, name in enumerate(names):
        spec = GROUPS[name]
        members = group == index
        count = int(members.sum())
        age[members] = rng.normal(spec.age_mean, spec.age_sd, size=count)
        income[members] = rng.normal(spec.income_mean, spec.income_sd, size=count)
    age = np.clip(np.rint(age), *_AGE_RANGE)
    income = np.clip(np.round(income, -2), *_INCOME_RANGE)
    return group, age, income


def generate_customers(n: int, seed: int, first_id: int = 1) -> pd.DataFrame:
    """A customer table (customer_id, gender, age, annual_income in dollars) of n rows.

    Ids run from C{first_id:07d}, so large tables can be written in chunks with distinct ids.
    """
    rng = np.random.default_rng(seed)
    _, age, income = _draw(rng, n)
    gender = rng.choice(["Female", "Male"], size=n, p=[0.56, 0.44])
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:07d}" for i in range(first_id, first_id + n)],
            "gender": gender,
            "age": age.astype(int),
            "annual_income": income.astype(int),
        }
    )


def invalid_payloads() -> list[bytes]:
    """One example of each kind of broken signup value, in a fixed order."""
    base = {
        "event_id": "bad",
        "customer_id": "bad",
        "age": 30,
        "annual_income": 50_000,
        "gender": "female",
        "signed_up_at": "2026-01-01T00:00:00+00:00",
    }

    def variant(**changes: object) -> bytes:
        body = {**base, **changes}
        return json.dumps({k: v for k, v in body.items() if v is not _DROP}).encode()

    return [
        b"\xff\xfe not utf-8 \xc3\x28",
        b"this is not json",
        b'["a", "json", "array"]',
        variant(age=_DROP),
        variant(age="thirty"),
        variant(age=-4),
        variant(age=240),
        variant(annual_income=-10),
        variant(annual_income=5e12),
        variant(gender=7),  # not text (an unknown spelling is read as unknown)
        b'{"event_id": "bad", "customer_id": "bad", "age": NaN, "annual_income": 1,'
        b' "signed_up_at": "2026-01-01T00:00:00+00:00"}',
        b'{"event_id": "bad", "customer_id": "bad", "age": 30, "annual_income": Infinity,'
        b' "signed_up_at": "2026-01-01T00:00:00+00:00"}',
        variant(signed_up_at="yesterday"),
    ]


_DROP = object()


def generate_signups(
    n: int, seed: int, invalid_share: float = 0.0, start: datetime | None = None
) -> Iterator[bytes]:
    """Yield n signup events as JSON bytes; about invalid_share of them are broken on purpose.

    Exactly round(n * invalid_share) events are invalid, spread at random positions, so tests
    can count them. Invalid events get unique event ids where they have one.
    """
    rng = np.random.default_rng(seed)
    _, age, income = _draw(rng, n)
    gender = rng.choice(
        ["female", "male", "F", "M", "other", "unknown"], size=n, p=[0.4, 0.3, 0.1, 0.1, 0.05, 0.05]
    )
    n_invalid = round(n * invalid_share)
    invalid_at = set(rng.choice(n, size=n_invalid, replace=False).tolist()) if n_invalid else set()
    broken = invalid_payloads()
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    id_rng = np.random.default_rng(seed + 1)
    for i in range(n):
        event_id = str(uuid.UUID(bytes=id_rng.bytes(16), version=4))
        if i in invalid_at:
            payload = broken[i % len(broken)]
            yield payload.replace(b'"event_id": "bad"', f'"event_id": "{event_id}"'.encode())
            continue
        yield json.dumps(
            {
                "event_id": event_id,
                "customer_id": f"S{seed}-{i:08d}",
                "age": int(age[i]),
                "annual_income": float(income[i]),
                "gender": str(gender[i]),
                "signed_up_at": (start + timedelta(seconds=i)).isoformat(),
            }
        ).encode()

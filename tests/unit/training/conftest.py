"""Factories for training tests: generated customer tables on disk and loaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from training.data import CustomerTable, load_customers
from training.generate import generate_customers


@pytest.fixture
def customers_csv(tmp_path: Path) -> Callable[[int, int], Path]:
    """Write n generated customers (the seed's four groups) with a seed; return the CSV path."""

    def write(n: int, seed: int) -> Path:
        path = tmp_path / f"customers-{n}-{seed}.csv"
        generate_customers(n, seed).to_csv(path, index=False)
        return path

    return write


@pytest.fixture
def seed_table(customers_csv: Callable[[int, int], Path]) -> Callable[[int], CustomerTable]:
    """A loaded table of 400 generated customers, shaped like the seed's population."""

    def load(seed: int) -> CustomerTable:
        return load_customers(customers_csv(400, seed))

    return load

"""The model features: their names and how a customer's fields become one row of them.

Training (from a customer table) and scoring (from signup events) both build their matrix
here, so a model sees the same numbers for the same customer on either side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

__all__ = ["KNOWN_FEATURES", "Feature", "build_features"]

Feature = Literal["age", "annual_income", "gender_female"]

#: Every feature a model may use, in the order they are listed to people.
KNOWN_FEATURES: tuple[str, ...] = get_args(Feature)


def build_features(
    features: Sequence[str],
    age: npt.ArrayLike,
    annual_income: npt.ArrayLike,
    gender: Callable[[], npt.ArrayLike],
) -> npt.NDArray[np.float64]:
    """The raw feature matrix: one row per customer, one column per feature in order.

    `gender` gives the customers' genders (Gender members or their values) and is called
    only when a feature needs it; `gender_female` is 1.0 for "female", else 0.0.
    """
    columns: list[npt.NDArray[np.float64]] = []
    for feature in features:
        if feature == "age":
            columns.append(np.asarray(age, dtype=np.float64))
        elif feature == "annual_income":
            columns.append(np.asarray(annual_income, dtype=np.float64))
        elif feature == "gender_female":
            columns.append((np.asarray(gender()) == "female").astype(np.float64))
        else:
            raise KeyError(feature)
    return np.column_stack(columns) if columns else np.empty((0, 0), dtype=np.float64)

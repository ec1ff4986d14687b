"""Fitting: the seed's names in the seed's places, parity with the worker, reproducibility."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sklearn.cluster import KMeans

from schemas import DataError
from stream_app.scorer import Scorer
from training import fit
from training.data import CustomerTable, load_customers
from training.fit import fit_model, parse_features
from training.naming import Profile, load_catalogue

AGE_INCOME = ["age", "annual_income"]
WHEN = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_k4_on_a_seed_shaped_population_gives_the_seeds_names_in_the_seeds_places(
    seed_table: Callable[[int], CustomerTable], seed: int
) -> None:
    table = seed_table(seed)
    # The population the seed describes: a few hundred customers, 18-70, $15k-$140k.
    assert table.frame["age"].between(18, 70).all()
    assert table.frame["annual_income"].between(15_000, 140_000).all()
    model = fit_model(table, 4, AGE_INCOME, load_catalogue(), resamples=0)
    centroid = {s.id: s.centroid for s in model.manifest.segments}
    assert set(centroid) == {
        "traditional-seniors",
        "vip-luxury",
        "budget-conscious",
        "young-professionals",
    }
    vip, budget = centroid["vip-luxury"], centroid["budget-conscious"]
    seniors, young = centroid["traditional-seniors"], centroid["young-professionals"]
    assert 35 <= vip["age"] <= 45
    assert 90_000 <= vip["annual_income"] <= 115_000
    assert budget["annual_income"] < 40_000
    assert seniors["age"] == max(c["age"] for c in centroid.values())
    assert budget["annual_income"] < seniors["annual_income"] < vip["annual_income"]
    assert young["age"] == min(c["age"] for c in centroid.values())
    assert seniors["annual_income"] < young["annual_income"] < vip["annual_income"]
    # No group is swallowed: the seed's four groups are of similar size.
    assert min(s.size for s in model.manifest.segments) >= 60


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auto_chooses_four_segments_on_the_seed_shaped_population(
    seed_table: Callable[[int], CustomerTable], seed: int
) -> None:
    model = fit_model(seed_table(seed), None, AGE_INCOME, load_catalogue(), resamples=0)
    selection = model.manifest.k_selection
    assert selection is not None
    assert (selection.mode, selection.chosen_k, len(model.manifest.segments)) == ("auto", 4, 4)
    assert [s.k for s in selection.scores] == list(range(2, 11))


def test_a_forced_k_still_stores_the_curves(seed_table: Callable[[int], CustomerTable]) -> None:
    model = fit_model(seed_table(0), 6, AGE_INCOME, load_catalogue(), resamples=0)
    selection = model.manifest.k_selection
    assert selection is not None
    assert (selection.mode, selection.chosen_k, len(selection.scores)) == ("fixed", 6, 9)
    # Two clusters more than the catalogue: both get generated, distinct names.
    generated = [s for s in model.manifest.segments if s.description.startswith("Generated")]
    assert len(generated) == 2
    assert len({s.id for s in model.manifest.segments}) == 6


def _assert_pipeline_matches_the_worker(model: fit.TrainedModel, x: np.ndarray) -> None:
    expected = model.pipeline.predict(x)
    assert np.array_equal(Scorer(model.manifest).score(x).labels, expected)
    scaler = model.pipeline.named_steps["scale"]
    # Manifest centroids are in scaled units; segment centroids in raw units.
    raw = scaler.inverse_transform(np.array(model.manifest.centroids))
    for segment, centroid in zip(model.manifest.segments, raw, strict=True):
        assert list(segment.centroid.values()) == pytest.approx(centroid.tolist())


def test_the_saved_pipeline_and_the_worker_assign_the_same_segments(
    seed_table: Callable[[int], CustomerTable],
) -> None:
    table = seed_table(1)
    model = fit_model(table, 4, AGE_INCOME, load_catalogue(), resamples=0)
    rng = np.random.default_rng(0)
    probes = np.column_stack([rng.uniform(0, 120, 5_000), rng.uniform(0, 300_000, 5_000)])
    x = np.vstack([fit.feature_frame(table.frame, AGE_INCOME), probes])
    _assert_pipeline_matches_the_worker(model, x)


def test_large_tables_search_on_a_sample_and_finish_on_every_row(
    monkeypatch: pytest.MonkeyPatch, customers_csv: Callable[[int, int], Path]
) -> None:
    monkeypatch.setattr(fit, "FULL_FIT_ROWS", 300)
    monkeypatch.setattr(fit, "EVALUATION_ROWS", 300)
    table = load_customers(customers_csv(3_000, 5))
    model = fit_model(table, 4, AGE_INCOME, load_catalogue(), resamples=2)
    kmeans = model.pipeline.named_steps["kmeans"]
    # The final K-Means ran once on all 3,000 rows, started from the sample's centres.
    assert isinstance(kmeans.init, np.ndarray)
    assert kmeans.labels_.shape == (3_000,)
    assert sum(s.size for s in model.manifest.segments) == 3_000
    assert {s.id for s in model.manifest.segments} >= {"vip-luxury", "budget-conscious"}
    assert model.manifest.k_selection is not None
    assert model.manifest.k_selection.sample_rows == 300
    _assert_pipeline_matches_the_worker(model, fit.feature_frame(table.frame, AGE_INCOME))


def test_same_table_options_and_seed_give_the_same_model(
    seed_table: Callable[[int], CustomerTable],
) -> None:
    table = seed_table(3)
    first = fit_model(table, None, AGE_INCOME, load_catalogue(), random_state=7, resamples=3)
    again = fit_model(table, None, AGE_INCOME, load_catalogue(), random_state=7, resamples=3)
    assert first.manifest.centroids == again.manifest.centroids
    assert [s.id for s in first.manifest.segments] == [s.id for s in again.manifest.segments]
    # Everything but the training time (and the version, which carries its date) is equal.
    unstamped = {"created_at", "version"}
    assert first.manifest.model_dump(exclude=unstamped) == again.manifest.model_dump(
        exclude=unstamped
    )
    assert first.plot_sample.equals(again.plot_sample)
    stamped = fit_model(table, None, AGE_INCOME, load_catalogue(), 7, created_at=WHEN, resamples=3)
    assert stamped.manifest.version == f"20260101-{first.manifest.version[-8:]}"


def test_a_retrain_told_the_previous_model_keeps_its_ids(
    seed_table: Callable[[int], CustomerTable],
) -> None:
    # A catalogue where every profile sits in the same place: naming alone is arbitrary.
    ambiguous = [
        Profile(id=i, name=i.title(), description="", action=f"act {i}", position={"age": 0})
        for i in ("alpha", "beta", "gamma", "delta")
    ]
    table = seed_table(0)
    first = fit_model(table, 4, AGE_INCOME, ambiguous, random_state=0, resamples=0)
    resampled = CustomerTable(
        frame=table.frame.sample(frac=1.0, replace=True, random_state=11).reset_index(drop=True),
        mapping=table.mapping,
        income_unit=table.income_unit,
        bad_rows=table.bad_rows,
        fingerprint="sha256:resample",
    )
    second = fit_model(
        resampled, 4, AGE_INCOME, ambiguous, random_state=5, previous=first.manifest, resamples=0
    )
    unguided = fit_model(resampled, 4, AGE_INCOME, ambiguous, random_state=5, resamples=0)
    assert second.manifest.previous_version == first.manifest.version
    before = {s.id: np.array(list(s.centroid.values())) for s in first.manifest.segments}
    scale = np.array(second.manifest.scaler.scale)
    for segment in second.manifest.segments:
        here = np.array(list(segment.centroid.values()))
        nearest = min(before, key=lambda i: float(np.sum(((before[i] - here) / scale) ** 2)))
        assert segment.id == nearest
        assert segment.action == f"act {segment.id}"
    # Without --previous the same retrain hands the ambiguous names out differently.
    assert [s.id for s in unguided.manifest.segments] != [s.id for s in second.manifest.segments]


def test_gender_can_be_added_as_a_feature(customers_csv: Callable[[int, int], Path]) -> None:
    table = load_customers(customers_csv(400, 0), require_gender=True)
    features = parse_features("age, annual_income, gender")
    assert features == ["age", "annual_income", "gender_female"]
    model = fit_model(table, 4, features, load_catalogue(), resamples=0)
    assert model.manifest.features == features
    assert all(len(c) == 3 for c in model.manifest.centroids)
    assert all(0 <= s.centroid["gender_female"] <= 1 for s in model.manifest.segments)
    _assert_pipeline_matches_the_worker(model, fit.feature_frame(table.frame, features))


def test_segments_describe_their_customers(seed_table: Callable[[int], CustomerTable]) -> None:
    model = fit_model(seed_table(2), 4, AGE_INCOME, load_catalogue(), resamples=0)
    for segment in model.manifest.segments:
        low_age, high_age = segment.ranges["age"]
        assert low_age <= segment.centroid["age"] <= high_age
        assert sum(segment.gender_mix.values()) == pytest.approx(1.0, abs=1e-3)
    assert len(model.plot_sample) == 400
    assert set(model.plot_sample["segment"]) == {s.id for s in model.manifest.segments}


@pytest.mark.parametrize(
    ("spec", "message"), [("age,height", "unknown feature 'height'"), (" , ", "no feature")]
)
def test_unknown_features_are_refused(spec: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_features(spec)


def test_more_segments_than_customers_is_refused(
    seed_table: Callable[[int], CustomerTable],
) -> None:
    table = seed_table(0)
    table.frame = table.frame.head(3)
    with pytest.raises(DataError, match="3 usable rows cannot make 4 segments"):
        fit_model(table, 4, AGE_INCOME, load_catalogue(), resamples=0)


def test_kmeans_is_refit_with_ten_restarts_on_small_tables(
    seed_table: Callable[[int], CustomerTable],
) -> None:
    model = fit_model(seed_table(0), 4, AGE_INCOME, load_catalogue(), resamples=0)
    kmeans: KMeans = model.pipeline.named_steps["kmeans"]
    assert (kmeans.n_init, kmeans.init) == (10, "k-means++")

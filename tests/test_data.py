"""Tests for fisherbook.data: bundled datasets, splits, task sequences and synthetic generators."""

from __future__ import annotations

import math

import pytest
import torch

from fisherbook.data import (
    Task,
    load_breast_cancer_tensors,
    load_digits_tensors,
    make_linear_regression,
    make_logistic_regression,
    permuted_digits,
    split_digits,
    standardize,
    train_test_split,
)


# --------------------------------------------------------------------------- loaders
def test_digits_raw_scaling_and_shapes():
    X, y = load_digits_tensors()
    assert X.shape == (1797, 64) and y.shape == (1797,)
    assert X.dtype == torch.float32 and y.dtype == torch.int64
    assert float(X.min()) == 0.0 and float(X.max()) == 1.0
    assert torch.equal(y.bincount(), torch.tensor([178, 182, 177, 183, 181, 182, 181, 179, 174, 180]))
    # pixel values are k/16 for integers k: scaling introduces no other values
    assert torch.allclose(X * 16, (X * 16).round())


def test_digits_standardized_moments_and_dtype():
    X, _ = load_digits_tensors(standardize=True, dtype=torch.float64)
    assert X.dtype == torch.float64
    std = X.std(dim=0)
    constant = std < 1e-12  # border pixels that are 0 in every image
    assert constant.sum() >= 1
    assert torch.allclose(X.mean(dim=0), torch.zeros(64, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(std[~constant], torch.ones(int((~constant).sum()), dtype=torch.float64), atol=1e-12)


def test_breast_cancer_bias_column_and_labels():
    X, y = load_breast_cancer_tensors(bias=True)
    assert X.shape == (569, 31) and X.dtype == torch.float64
    assert torch.equal(X[:, -1], torch.ones(569, dtype=torch.float64))
    assert int(y.sum()) == 357 and set(y.tolist()) == {0, 1}
    Xs, _ = load_breast_cancer_tensors(standardize=True)
    assert torch.allclose(Xs.mean(0), torch.zeros(30, dtype=torch.float64), atol=1e-10)


@pytest.mark.parametrize("loader", [load_digits_tensors, load_breast_cancer_tensors])
def test_loaders_reject_integer_dtype(loader):
    with pytest.raises(TypeError, match="dtype"):
        loader(dtype=torch.int64)


# --------------------------------------------------------------------------- splits
def test_split_is_a_partition_stratified_and_seeded():
    n = 200
    X = torch.arange(n, dtype=torch.float64).reshape(n, 1).repeat(1, 2)
    y = torch.arange(n) % 4
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, seed=1)
    ids = torch.cat([X_tr[:, 0], X_te[:, 0]]).long()
    assert torch.equal(ids.sort().values, torch.arange(n))  # disjoint and complete
    assert torch.equal(y_te.bincount(), torch.full((4,), 15))  # round(50 * 0.3) per class
    assert torch.equal(y[X_te[:, 0].long()], y_te)  # labels travel with their rows
    again = train_test_split(X, y, test_size=0.3, seed=1)
    assert all(torch.equal(a, b) for a, b in zip((X_tr, X_te, y_tr, y_te), again))
    other = train_test_split(X, y, test_size=0.3, seed=2)
    assert not torch.equal(other[1], X_te)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_bad_test_size(bad):
    with pytest.raises(ValueError, match="test_size"):
        train_test_split(torch.zeros(10, 2), torch.zeros(10, dtype=torch.int64), test_size=bad)


def test_split_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same n"):
        train_test_split(torch.zeros(10, 2), torch.zeros(9, dtype=torch.int64))


def test_standardize_uses_training_statistics_only():
    g = torch.Generator().manual_seed(0)
    train = torch.randn(50, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1], dtype=torch.float64) + 3
    test = torch.randn(20, 3, generator=g, dtype=torch.float64)
    a, b = standardize(train, test)
    assert torch.allclose(a.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(a.std(0), torch.ones(3, dtype=torch.float64), atol=1e-12)
    expected = (test - train.mean(0)) / train.std(0)
    assert torch.allclose(b, expected)
    with pytest.raises(ValueError, match="others"):
        standardize(train, torch.zeros(4, 2))


# --------------------------------------------------------------------------- task sequences
def test_permuted_digits_tasks_are_pixel_permutations_of_one_another():
    tasks = permuted_digits(n_tasks=4, seed=3, dtype=torch.float64)
    base = tasks[0]
    X, y = load_digits_tensors(dtype=torch.float64)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, seed=3)
    X_tr, X_te = standardize(X_tr, X_te)
    assert torch.equal(base.X_train, X_tr) and torch.equal(base.y_test, y_te)  # identity first
    assert torch.equal(base.permutation, torch.arange(64))
    for t in tasks[1:]:
        assert torch.equal(t.y_train, base.y_train) and torch.equal(t.y_test, base.y_test)
        # the same column permutation maps the base task onto task t, in train and test alike
        assert torch.equal(base.X_train[:, t.permutation], t.X_train)
        assert torch.equal(base.X_test[:, t.permutation], t.X_test)
        assert torch.equal(t.permutation.sort().values, torch.arange(64))
    assert not torch.equal(tasks[1].X_train, tasks[2].X_train)


def test_permuted_digits_seeded_and_named():
    a, b = permuted_digits(3, seed=5), permuted_digits(3, seed=5)
    assert [t.name for t in a] == ["P1", "P2", "P3"]
    assert all(torch.equal(s.X_train, t.X_train) for s, t in zip(a, b))
    c = permuted_digits(3, seed=5, identity_first=False)
    assert not torch.equal(c[0].X_train, a[0].X_train)
    assert a[0].X_train.dtype == torch.float32


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError)])
def test_permuted_digits_rejects_bad_n_tasks(bad, error):
    with pytest.raises(error, match="n_tasks"):  # a float or bool is the wrong type for a count
        permuted_digits(bad)


def test_split_digits_classes_and_relabel():
    tasks = split_digits()
    assert [t.name for t in tasks] == ["0/1", "2/3", "4/5", "6/7", "8/9"]
    for k, t in enumerate(tasks):
        assert set(t.y_train.tolist()) == {2 * k, 2 * k + 1} == set(t.y_test.tolist())
    assert sum(t.n_train + t.n_test for t in tasks) == 1797
    rel = split_digits(classes=((3, 1, 4),), relabel=True)[0]
    orig = split_digits(classes=((3, 1, 4),))[0]
    lookup = {3: 0, 1: 1, 4: 2}
    assert rel.y_train.tolist() == [lookup[c] for c in orig.y_train.tolist()]
    assert torch.equal(rel.X_train, orig.X_train)


@pytest.mark.parametrize("bad", [((0, 1), (1, 2)), ((0, 10),), ((),), ()])
def test_split_digits_rejects_bad_classes(bad):
    with pytest.raises(ValueError, match="classes"):
        split_digits(classes=bad)


def test_task_validates_shapes():
    with pytest.raises(ValueError, match="X_train"):
        Task("bad", torch.zeros(3, 2), torch.zeros(4, dtype=torch.int64), torch.zeros(1, 2), torch.zeros(1))
    with pytest.raises(ValueError, match="same number of features"):
        Task("bad", torch.zeros(3, 2), torch.zeros(3), torch.zeros(1, 3), torch.zeros(1))


# --------------------------------------------------------------------------- synthetic generators
def test_linear_regression_ols_recovers_theta_within_standard_errors():
    g = torch.Generator().manual_seed(0)
    theta = torch.tensor([2.0, 2.0], dtype=torch.float64)
    X, y = make_linear_regression(n=4000, theta=theta.tolist(), generator=g)
    assert torch.equal(X[:, 0], torch.ones(4000, dtype=torch.float64))
    logz = X[:, 1].log()
    assert abs(logz.std().item() - 0.75) < 0.05  # sd of a sample sd ≈ 0.75/sqrt(2n) ≈ 0.008
    beta = torch.linalg.solve(X.T @ X, X.T @ y)
    se = torch.linalg.inv(X.T @ X).diagonal().sqrt()  # unit noise
    assert ((beta - theta).abs() < 4 * se).all()


def test_logistic_regression_calibrated_and_seeded():
    g = torch.Generator().manual_seed(1)
    theta = (0.5, 2.0, -1.0)
    X, y = make_logistic_regression(n=20000, theta=theta, generator=g)
    p = torch.sigmoid(X @ torch.tensor(theta, dtype=torch.float64))
    se = math.sqrt(float((p * (1 - p)).sum())) / 20000
    assert abs(float(y.double().mean() - p.mean())) < 4 * se
    X2, y2 = make_logistic_regression(n=20000, theta=theta, generator=torch.Generator().manual_seed(1))
    assert torch.equal(X, X2) and torch.equal(y, y2)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"n": 0}, "n"), ({"noise_scale": 0.0}, "noise_scale"), ({"lognormal_sigma": -1.0}, "lognormal_sigma"), ({"theta": []}, "theta")],
)
def test_linear_regression_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_linear_regression(**kwargs)

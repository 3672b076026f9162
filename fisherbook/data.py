r"""Datasets shipped with scikit-learn, synthetic generators and continual-learning task sequences.

Nothing here downloads: the real datasets are the small ones bundled with scikit-learn
(:func:`sklearn.datasets.load_digits`, :func:`sklearn.datasets.load_breast_cancer`), and the
synthetic ones are drawn from a :class:`torch.Generator` so a seed fixes them exactly.

Every loader returns torch tensors: features as ``dtype`` (float32 unless asked otherwise),
class labels as ``int64``. Task sequences for continual learning are lists of :class:`Task`,
each a train/test split of one task:

- :func:`permuted_digits`: every task is the ten-class digits problem with its 64 pixels
  shuffled by a fixed permutation of its own (the first task keeps the identity), the small
  cousin of permuted MNIST (Goodfellow et al. 2013; Kirkpatrick et al. 2017, Fig. 3);
- :func:`split_digits`: every task holds the images of a few classes (pairs by default),
  the small cousin of split MNIST (Zenke et al. 2017).

Bad arguments raise the :mod:`fisherbook.errors` classes (NumPy scalars are accepted where Python
numbers are).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._validate import check_finite, check_int, check_real
from .errors import ArgumentTypeError, InvalidArgumentError, ShapeError

__all__ = [
    "Task",
    "load_digits_tensors",
    "load_breast_cancer_tensors",
    "train_test_split",
    "standardize",
    "permuted_digits",
    "split_digits",
    "make_linear_regression",
    "make_logistic_regression",
]


@dataclass(frozen=True)
class Task:
    r"""One task of a continual-learning sequence: a train/test split and a name.

    Attributes
    ----------
    name : str
        Short label used in figures, e.g. ``"P1"`` or ``"0/1"``.
    X_train, y_train : Tensor
        Training features, shape ``(n_train, d)``, and integer labels, shape ``(n_train,)``.
    X_test, y_test : Tensor
        Held-out features and labels, same layout.
    permutation : Tensor or None
        For a permuted task, the feature permutation :math:`\pi` it applies: column ``k`` of
        ``X_train`` is column ``permutation[k]`` of the unpermuted data. ``None`` otherwise.

    Examples
    --------
    >>> t = Task("toy", torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]), torch.ones(2, 2), torch.tensor([1, 0]))
    >>> t.n_features, t.n_train, t.n_test
    (2, 4, 2)
    """

    name: str
    X_train: Tensor
    y_train: Tensor
    X_test: Tensor
    y_test: Tensor
    permutation: Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ArgumentTypeError(f"name must be a str, got {type(self.name).__name__}")
        for split in ("train", "test"):
            X, y = getattr(self, f"X_{split}"), getattr(self, f"y_{split}")
            if not isinstance(X, Tensor) or not isinstance(y, Tensor):
                raise ArgumentTypeError(f"X_{split} and y_{split} must be torch tensors, got {type(X).__name__} "
                                        f"and {type(y).__name__}")
            if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
                raise ShapeError(
                    f"X_{split} must be (n, d) and y_{split} (n,) with the same n; "
                    f"got {tuple(X.shape)} and {tuple(y.shape)}"
                )
            check_finite(X, f"X_{split}")
        if self.X_train.shape[1] != self.X_test.shape[1]:
            raise ShapeError(
                f"X_train and X_test must have the same number of features, "
                f"got {self.X_train.shape[1]} and {self.X_test.shape[1]}"
            )

    @property
    def n_features(self) -> int:
        """Number of input features ``d``."""
        return int(self.X_train.shape[1])

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return int(self.X_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test examples."""
        return int(self.X_test.shape[0])


def _check_dtype(dtype: Any) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ArgumentTypeError(f"dtype must be a floating torch.dtype (torch.float32, torch.float64), got {dtype!r}")


def _check_fraction(name: str, value: Any) -> float:
    return check_real(value, name, low=0.0, high=1.0, open_low=True, open_high=True)


def _check_generator(generator: Any) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ArgumentTypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def _check_theta(theta: Any) -> Tensor:
    try:
        th = torch.as_tensor(theta, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ArgumentTypeError(f"theta must be a sequence of real numbers, got {type(theta).__name__}") from None
    if th.ndim != 1 or th.numel() < 1:
        raise ShapeError(f"theta must be a non-empty 1-d sequence, got {theta!r}")
    return check_finite(th, "theta")


def standardize(train: Tensor, *others: Tensor, eps: float = 1e-8) -> tuple[Tensor, ...]:
    r"""Z-score features with the mean and standard deviation of ``train``.

    Each column becomes :math:`(x - \bar x_{\text{train}}) / s_{\text{train}}`; a column that is
    constant in ``train`` (``s < eps``, e.g. a digits border pixel that is always 0) is only
    centred. The same statistics are applied to every tensor in ``others`` (test sets), so no
    information leaks from them.

    Parameters
    ----------
    train : Tensor
        Shape ``(n, d)``.
    *others : Tensor
        Further tensors of shape ``(m, d)``.
    eps : float
        Threshold below which a standard deviation counts as zero.

    Returns
    -------
    tuple of Tensor
        ``train`` standardised, followed by each of ``others``.

    Examples
    --------
    >>> a, b = standardize(torch.tensor([[0.0, 1.0], [2.0, 1.0]]), torch.tensor([[1.0, 3.0]]))
    >>> a
    tensor([[-0.7071,  0.0000],
            [ 0.7071,  0.0000]])
    >>> b
    tensor([[0., 2.]])
    """
    if not isinstance(train, Tensor) or not train.is_floating_point():
        raise ArgumentTypeError(f"train must be a floating-point torch.Tensor, got "
                                f"{type(train).__name__ if not isinstance(train, Tensor) else train.dtype}")
    if train.ndim != 2 or train.shape[0] < 2:
        raise ShapeError(f"train must have shape (n, d) with n >= 2 (a standard deviation needs two rows), "
                         f"got {tuple(train.shape)}")
    check_finite(train, "train")
    eps = check_real(eps, "eps", low=0.0)
    for i, other in enumerate(others):
        if not isinstance(other, Tensor):
            raise ArgumentTypeError(f"others[{i}] must be a torch.Tensor, got {type(other).__name__}")
        if other.ndim != 2 or other.shape[1] != train.shape[1]:
            raise ShapeError(f"others[{i}] must have shape (m, {train.shape[1]}), got {tuple(other.shape)}")
    mean = train.mean(dim=0)
    std = train.std(dim=0)
    std = torch.where(std < eps, torch.ones_like(std), std)
    return tuple((x - mean) / std for x in (train, *others))


_standardize = standardize  # loaders take a ``standardize`` flag that shadows the function


def train_test_split(
    X: Tensor, y: Tensor, test_size: float = 0.25, seed: int = 0, stratify: bool = True
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""Split ``(X, y)`` into train and test parts with a seeded permutation.

    With ``stratify=True`` each class is split separately, so both parts keep the class
    proportions (up to rounding: class :math:`c` contributes
    :math:`\operatorname{round}(n_c \cdot \text{test\_size})` test examples).

    Parameters
    ----------
    X : Tensor
        Features, shape ``(n, d)``.
    y : Tensor
        Integer labels, shape ``(n,)``.
    test_size : float
        Fraction of examples held out, in ``(0, 1)``.
    seed : int
        Seed of the permutation.
    stratify : bool
        Split each class separately.

    Returns
    -------
    X_train, X_test, y_train, y_test : Tensor
        In scikit-learn's order. Within each part examples keep their original relative order.

    Examples
    --------
    >>> X = torch.arange(20.0).reshape(10, 2); y = torch.tensor([0] * 6 + [1] * 4)
    >>> X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.5)
    >>> y_te.bincount().tolist()
    [3, 2]
    """
    if not isinstance(X, Tensor) or not isinstance(y, Tensor):
        raise ArgumentTypeError(f"X and y must be torch tensors, got {type(X).__name__} and {type(y).__name__}")
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ShapeError(f"X must be (n, d) and y (n,) with the same n, got {tuple(X.shape)} and {tuple(y.shape)}")
    test_size = _check_fraction("test_size", test_size)
    seed = check_int(seed, "seed", minimum=0)
    g = torch.Generator().manual_seed(seed)
    n = X.shape[0]
    groups = [torch.nonzero(y == c).flatten() for c in torch.unique(y)] if stratify else [torch.arange(n)]
    test_mask = torch.zeros(n, dtype=torch.bool)
    for idx in groups:
        k = int(round(len(idx) * test_size))
        test_mask[idx[torch.randperm(len(idx), generator=g)[:k]]] = True
    if test_mask.all() or not test_mask.any():
        raise InvalidArgumentError(f"test_size={test_size} leaves an empty train or test part for n={n}")
    return X[~test_mask], X[test_mask], y[~test_mask], y[test_mask]


def load_digits_tensors(standardize: bool = False, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    r"""The scikit-learn digits: 1797 images of 8×8 pixels, ten classes.

    Pixels are integers 0–16 in the raw data. By default they are scaled to ``[0, 1]`` (divided
    by 16), a transformation that uses no statistics of the data; with ``standardize=True`` each
    pixel is z-scored over the whole set instead (for a train/test protocol prefer
    :func:`standardize` on the training part, as :func:`permuted_digits` does).

    Parameters
    ----------
    standardize : bool
        Z-score every pixel over all 1797 images (constant pixels are only centred).
    dtype : torch.dtype
        Floating dtype of the features.

    Returns
    -------
    X : Tensor
        Shape ``(1797, 64)``, ``dtype``.
    y : Tensor
        Labels 0–9, shape ``(1797,)``, int64.

    Examples
    --------
    >>> X, y = load_digits_tensors()
    >>> X.shape, y.shape, float(X.max())
    (torch.Size([1797, 64]), torch.Size([1797]), 1.0)
    """
    from sklearn.datasets import load_digits

    _check_dtype(dtype)
    data = load_digits()
    X = torch.as_tensor(data.data, dtype=torch.float64)
    y = torch.as_tensor(data.target, dtype=torch.int64)
    X = _standardize(X)[0] if standardize else X / 16.0
    return X.to(dtype), y


def load_breast_cancer_tensors(
    standardize: bool = False, bias: bool = False, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor]:
    r"""The Wisconsin breast-cancer data: 569 examples, 30 features, binary labels.

    Kunstner et al. (2019, Fig. 3) fit a logistic regression to these data *without* feature
    scaling and with a bias column; ``standardize=False, bias=True`` reproduces that design.

    Parameters
    ----------
    standardize : bool
        Z-score every feature over the whole set.
    bias : bool
        Append a column of ones (after standardising).
    dtype : torch.dtype
        Floating dtype of the features (float64 by default: the raw features span five orders
        of magnitude).

    Returns
    -------
    X : Tensor
        Shape ``(569, 30)``, or ``(569, 31)`` with ``bias=True``.
    y : Tensor
        Labels in ``{0, 1}`` (1 = benign, scikit-learn's coding), int64.

    Examples
    --------
    >>> X, y = load_breast_cancer_tensors(bias=True)
    >>> X.shape, int(y.sum())
    (torch.Size([569, 31]), 357)
    """
    from sklearn.datasets import load_breast_cancer

    _check_dtype(dtype)
    data = load_breast_cancer()
    X = torch.as_tensor(data.data, dtype=torch.float64)
    y = torch.as_tensor(data.target, dtype=torch.int64)
    if standardize:
        X = _standardize(X)[0]
    if bias:
        X = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], dim=1)
    return X.to(dtype), y


def permuted_digits(
    n_tasks: int = 5,
    test_size: float = 0.25,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    identity_first: bool = True,
) -> list[Task]:
    r"""Permuted digits: ``n_tasks`` ten-class tasks, each with its own fixed pixel permutation.

    The digits are split once into train and test parts (stratified, ``test_size``), the pixels
    are z-scored with the training statistics, and task :math:`t` shows every image with its 64
    pixels reordered by a permutation :math:`\pi_t` drawn from ``seed``. The tasks share labels
    and difficulty but need different input weights, which is what makes sequential training
    forget.

    Parameters
    ----------
    n_tasks : int
        Number of tasks, at least 1.
    test_size : float
        Fraction of images held out for testing, in ``(0, 1)``.
    seed : int
        Seed of the split and of the permutations.
    dtype : torch.dtype
        Floating dtype of the features.
    identity_first : bool
        Let the first task keep the original pixel order.

    Returns
    -------
    list of Task
        Named ``"P1"``, ``"P2"``, …, each with its ``permutation``.

    Examples
    --------
    >>> tasks = permuted_digits(n_tasks=3)
    >>> [t.name for t in tasks], tasks[0].n_train, tasks[0].n_test
    (['P1', 'P2', 'P3'], 1347, 450)
    >>> bool(torch.equal(tasks[1].y_train, tasks[0].y_train))
    True
    """
    n_tasks = check_int(n_tasks, "n_tasks", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    _check_dtype(dtype)
    X, y = load_digits_tensors(standardize=False, dtype=torch.float64)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_size, seed=seed)
    X_tr, X_te = standardize(X_tr, X_te)
    g = torch.Generator().manual_seed(seed + 1)
    tasks = []
    for t in range(n_tasks):
        perm = torch.arange(X.shape[1]) if (t == 0 and identity_first) else torch.randperm(X.shape[1], generator=g)
        tasks.append(Task(f"P{t + 1}", X_tr[:, perm].to(dtype), y_tr, X_te[:, perm].to(dtype), y_te, perm))
    return tasks


def split_digits(
    classes: Sequence[Sequence[int]] = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9)),
    relabel: bool = False,
    test_size: float = 0.25,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> list[Task]:
    r"""Split digits: task :math:`t` contains only the images of the classes ``classes[t]``.

    With ``relabel=False`` labels stay the digits 0–9 (a single ten-way head: the
    *class-incremental* setting); with ``relabel=True`` the classes of each task become
    ``0, 1, …`` in the order given (a shared small head: the *domain-incremental* setting).

    Parameters
    ----------
    classes : Sequence of Sequence of int
        The digit classes of each task; each class in 0–9 and used at most once.
    relabel : bool
        Map each task's classes to ``0, 1, …``.
    test_size : float
        Fraction held out (stratified over all ten classes), in ``(0, 1)``.
    seed : int
        Seed of the split.
    dtype : torch.dtype
        Floating dtype of the features (z-scored with the training statistics of all classes).

    Returns
    -------
    list of Task
        Named by their classes, e.g. ``"0/1"``.

    Examples
    --------
    >>> tasks = split_digits(relabel=True)
    >>> [t.name for t in tasks][:2], sorted(set(tasks[1].y_train.tolist()))
    (['0/1', '2/3'], [0, 1])
    """
    _check_dtype(dtype)
    if isinstance(classes, str | bytes) or not isinstance(classes, Sequence) or any(
            isinstance(group, str | bytes) or not isinstance(group, Sequence) for group in classes):
        raise ArgumentTypeError(f"classes must be a sequence of sequences of digits, got {classes!r}")
    if not classes or any(len(group) == 0 for group in classes):
        raise InvalidArgumentError("classes must be a non-empty sequence of non-empty class groups")
    flat = [check_int(c, "classes entry", minimum=0, maximum=9) for group in classes for c in group]
    if len(set(flat)) != len(flat):
        raise InvalidArgumentError(f"classes must hold distinct digits in 0..9, got {classes!r}")
    classes = [[int(c) for c in group] for group in classes]
    X, y = load_digits_tensors(standardize=False, dtype=torch.float64)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_size, seed=seed)
    X_tr, X_te = standardize(X_tr, X_te)
    tasks = []
    for group in classes:
        group_t = torch.tensor(list(group))
        m_tr, m_te = torch.isin(y_tr, group_t), torch.isin(y_te, group_t)
        yt_tr, yt_te = y_tr[m_tr], y_te[m_te]
        if relabel:
            lookup = torch.full((10,), -1, dtype=torch.int64)
            lookup[group_t] = torch.arange(len(group))
            yt_tr, yt_te = lookup[yt_tr], lookup[yt_te]
        name = "/".join(str(c) for c in group)
        tasks.append(Task(name, X_tr[m_tr].to(dtype), yt_tr, X_te[m_te].to(dtype), yt_te))
    return tasks


def make_linear_regression(
    n: int = 1000,
    theta: Sequence[float] = (2.0, 2.0),
    noise_scale: float = 1.0,
    lognormal_sigma: float = 0.75,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor]:
    r"""Linear regression with a bias column and log-normal features.

    :math:`x_n = (1, z_{n1}, \dots, z_{n,k-1})` with :math:`z \sim \operatorname{LogNormal}(0,
    \sigma^2)` and :math:`y_n = x_n^\top \theta + \varepsilon_n`,
    :math:`\varepsilon_n \sim N(0, \text{noise\_scale}^2)`. The defaults are the design of
    Kunstner et al. (2019, Fig. 1): :math:`\theta = (2, 2)`, :math:`\sigma = 0.75`, unit noise,
    :math:`N = 1000`.

    Parameters
    ----------
    n : int
        Number of examples, at least 1.
    theta : Sequence of float
        True coefficients; the first multiplies the bias column.
    noise_scale : float
        Standard deviation of the noise, positive.
    lognormal_sigma : float
        Scale of the log-normal features, positive.
    generator : torch.Generator, optional
        Source of randomness.
    dtype : torch.dtype
        Floating dtype of the results.

    Returns
    -------
    X : Tensor
        Shape ``(n, len(theta))``, first column ones.
    y : Tensor
        Shape ``(n,)``.

    Examples
    --------
    >>> X, y = make_linear_regression(n=5, generator=torch.Generator().manual_seed(0))
    >>> X.shape, X[:, 0].tolist()
    (torch.Size([5, 2]), [1.0, 1.0, 1.0, 1.0, 1.0])
    """
    n = check_int(n, "n", minimum=1)
    noise_scale = check_real(noise_scale, "noise_scale", low=0.0, open_low=True)
    lognormal_sigma = check_real(lognormal_sigma, "lognormal_sigma", low=0.0, open_low=True)
    _check_dtype(dtype)
    _check_generator(generator)
    th = _check_theta(theta)
    z = torch.exp(lognormal_sigma * torch.randn(n, th.numel() - 1, generator=generator, dtype=torch.float64))
    X = torch.cat([torch.ones(n, 1, dtype=torch.float64), z], dim=1)
    y = X @ th + noise_scale * torch.randn(n, generator=generator, dtype=torch.float64)
    return X.to(dtype), y.to(dtype)


def make_logistic_regression(
    n: int = 500,
    theta: Sequence[float] = (0.5, 2.0, -1.0),
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor]:
    r"""Logistic regression with a bias column and standard-normal features.

    :math:`x_n = (1, z_n)` with :math:`z_n \sim N(0, I_{k-1})` and
    :math:`y_n \sim \operatorname{Bernoulli}(\sigma(x_n^\top \theta))`.

    Parameters
    ----------
    n : int
        Number of examples, at least 1.
    theta : Sequence of float
        True coefficients; the first multiplies the bias column.
    generator : torch.Generator, optional
        Source of randomness.
    dtype : torch.dtype
        Floating dtype of ``X``.

    Returns
    -------
    X : Tensor
        Shape ``(n, len(theta))``, first column ones.
    y : Tensor
        Labels in ``{0, 1}``, int64.

    Examples
    --------
    >>> X, y = make_logistic_regression(n=4, generator=torch.Generator().manual_seed(0))
    >>> X.shape, y.dtype
    (torch.Size([4, 3]), torch.int64)
    """
    n = check_int(n, "n", minimum=1)
    _check_dtype(dtype)
    _check_generator(generator)
    th = _check_theta(theta)
    z = torch.randn(n, th.numel() - 1, generator=generator, dtype=torch.float64)
    X = torch.cat([torch.ones(n, 1, dtype=torch.float64), z], dim=1)
    p = torch.sigmoid(X @ th)
    y = torch.bernoulli(p, generator=generator).to(torch.int64)
    return X.to(dtype), y

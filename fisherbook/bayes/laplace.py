r"""Last-layer Laplace approximation of a trained network, and calibration metrics.

The last ``nn.Linear`` layer of a trained classifier, :math:`f(x) = W \phi(x) + b` with fixed
features :math:`\phi`, gets a Gaussian posterior around its trained (MAP) weights
:math:`\hat\theta` (Daxberger et al. 2021, "Laplace Redux"):

.. math::

   q(\theta) = \mathcal N(\hat\theta, \Sigma), \qquad
   \Sigma^{-1} = N F(\hat\theta) + \tau I,

where :math:`F` is the Fisher information (the generalised Gauss–Newton matrix) of the last
layer, mean over the :math:`N` training examples, from ``fisherbook.curvature.fisher`` in a
chosen representation (``"kfac"``, ``"diagonal"``, ``"dense"``, ...), and :math:`\tau` is the
precision of an isotropic Gaussian prior. The logits are then Gaussian,
:math:`f(x) \sim \mathcal N(\hat f(x), J_x \Sigma J_x^\top)` with :math:`J_x = \partial f(x)/\partial\theta`,
and the predictive :math:`\int \operatorname{softmax}(f)\, q(f)\, df` is approximated by the
probit approximation :math:`\operatorname{softmax}\big(\hat f_c / \sqrt{1 + \tfrac\pi8 \Sigma_{f,cc}}\big)`
or by Monte-Carlo sampling of :math:`f`. The prior precision can be chosen by maximising
the Laplace evidence

.. math::

   \log p(D \mid \tau) \approx \log p(D \mid \hat\theta) - \tfrac\tau2 \lVert\hat\theta\rVert^2
   + \tfrac P2 \log\tau - \tfrac12 \log\det(N F + \tau I).

:func:`expected_calibration_error` and :func:`calibration_curve` measure how well predicted
confidences match accuracies.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from ..curvature import fisher as _fisher

__all__ = ["LastLayerLaplace", "calibration_curve", "expected_calibration_error"]

_LIKELIHOODS = ("categorical", "bernoulli")
_METHODS = ("probit", "mc", "map")


def _positive(value: float, name: str) -> float:
    if isinstance(value, Tensor) and value.numel() == 1:
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive float, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite float > 0, got {value}")
    return float(value)


class LastLayerLaplace:
    r"""Laplace approximation over the last ``nn.Linear`` layer of a trained classifier.

    Parameters
    ----------
    model : torch.nn.Module
        A trained network whose output is the output of its last registered ``nn.Linear`` module
        applied to the features (``nn.Sequential(..., nn.Linear)`` for example); outputs are
        ``C`` logits for ``"categorical"``, one logit for ``"bernoulli"``.
    likelihood : str
        ``"categorical"`` (softmax cross-entropy) or ``"bernoulli"`` (a single sigmoid output).
    representation : str
        Representation of the last-layer Fisher passed to ``fisherbook.curvature.fisher``
        (``"kfac"``, ``"diagonal"``, ``"dense"``, ``"block_diagonal"``); it needs ``solve`` and
        ``logdet``.
    prior_precision : float
        :math:`\tau > 0`.

    Notes
    -----
    After :meth:`fit`, the attribute ``fisher`` holds the mean last-layer Fisher over the
    training data (a curvature-engine matrix with ``solve`` and ``logdet``) and ``n_data`` the
    number :math:`N` of training examples.

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    >>> X = torch.randn(40, 2, dtype=torch.float64); y = torch.randint(0, 3, (40,))
    >>> la = LastLayerLaplace(net, representation="kfac", prior_precision=1.0).fit(X, y)
    >>> p = la.predict(X[:5])
    >>> p.shape, bool(torch.allclose(p.sum(1), torch.ones(5, dtype=torch.float64)))
    (torch.Size([5, 3]), True)
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        likelihood: str = "categorical",
        representation: str = "kfac",
        prior_precision: float = 1.0,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if likelihood not in _LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {_LIKELIHOODS}, got {likelihood!r}")
        if not isinstance(representation, str):
            raise TypeError(f"representation must be a string, got {type(representation).__name__}")
        if representation == "matrix_free":
            raise ValueError("representation 'matrix_free' has no logdet; use 'kfac', 'diagonal', 'dense' "
                             "or 'block_diagonal'")
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError("model must contain an nn.Linear layer (its last one is made Bayesian)")
        self.model = model
        self.last = linears[-1]
        self.likelihood = likelihood
        self.representation = representation
        self.prior_precision = _positive(prior_precision, "prior_precision")
        self.fisher = None
        self.n_data = 0
        self._map_loglik: Tensor | None = None

    # -- features and last-layer parameters -------------------------------------------------
    @property
    def theta_map(self) -> Tensor:
        """The trained last-layer parameters, flat in ``last.parameters()`` order."""
        return torch.cat([p.detach().reshape(-1) for p in self.last.parameters()])

    @property
    def num_params(self) -> int:
        """Number :math:`P` of last-layer parameters."""
        return self.theta_map.numel()

    def features(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs to the last layer and the model's outputs, without gradient tracking."""
        if not isinstance(inputs, Tensor):
            raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
        if inputs.dim() == 0 or inputs.shape[0] == 0:
            raise ValueError(f"inputs must have at least one example along dim 0, got shape {tuple(inputs.shape)}")
        p0 = next(self.last.parameters())
        if inputs.is_floating_point():
            inputs = inputs.to(dtype=p0.dtype, device=p0.device)
        captured: list[Tensor] = []
        handle = self.last.register_forward_hook(lambda m, args, out: captured.append(args[0]))
        try:
            with torch.no_grad():
                out = self.model(inputs)
        finally:
            handle.remove()
        if not captured:
            raise ValueError("the model's last nn.Linear was not called in forward")
        phi = captured[-1]
        with torch.no_grad():
            direct = self.last(phi)
        if direct.shape != out.shape or not torch.allclose(direct, out):
            raise ValueError("the model's output must be its last nn.Linear applied to the features")
        if self.likelihood == "bernoulli" and out.reshape(out.shape[0], -1).shape[1] != 1:
            raise ValueError(f"likelihood 'bernoulli' needs one output per example, got shape {tuple(out.shape)}")
        return phi, out

    def _check_fitted(self) -> None:
        if self.fisher is None:
            raise RuntimeError("call fit(inputs, targets) first")

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, inputs: Tensor, targets: Tensor) -> LastLayerLaplace:
        r"""Compute the last-layer Fisher :math:`F` (mean over the training data) and :math:`\log p(D \mid \hat\theta)`.

        Parameters
        ----------
        inputs : Tensor
            Training inputs, ``N`` examples along dim 0.
        targets : Tensor
            Class indices (``"categorical"``) or 0/1 labels (``"bernoulli"``), ``N`` of them.

        Returns
        -------
        LastLayerLaplace
            ``self``.
        """
        phi, out = self.features(inputs)
        if not isinstance(targets, Tensor) or targets.shape[0] != phi.shape[0]:
            raise ValueError(f"targets must be a tensor with {phi.shape[0]} entries (one per input)")
        out = out.reshape(out.shape[0], -1)
        if self.likelihood == "categorical":
            if targets.is_floating_point() or targets.min() < 0 or targets.max() >= out.shape[1]:
                raise ValueError(f"targets must be class indices in [0, {out.shape[1]})")
            ll = -nn.functional.cross_entropy(out, targets.to(out.device), reduction="sum")
        else:
            t = targets.reshape(-1).to(out)
            if not torch.all((t == 0) | (t == 1)):
                raise ValueError("targets must be 0/1 labels for likelihood 'bernoulli'")
            ll = -nn.functional.binary_cross_entropy_with_logits(out[:, 0], t, reduction="sum")
        self.fisher = _fisher(self.last, phi, likelihood=self.likelihood, kind="true",
                              representation=self.representation)
        self.n_data = int(phi.shape[0])
        self._map_loglik = ll.detach()
        return self

    def log_marginal_likelihood(self, prior_precision: float | None = None) -> Tensor:
        r"""Laplace approximation of :math:`\log p(D \mid \tau)` for the last layer.

        .. math::

           \log p(D \mid \hat\theta) - \tfrac\tau2 \lVert\hat\theta\rVert^2 + \tfrac P2 \log\tau
           - \tfrac12 \log\det(N F + \tau I)

        (the Gaussian normalising constants :math:`(2\pi)^{\pm P/2}` cancel). Exact up to the
        quadratic expansion around :math:`\hat\theta`, which is the MAP only when :math:`\tau`
        equals the weight decay used in training.

        Parameters
        ----------
        prior_precision : float, optional
            :math:`\tau`; defaults to ``self.prior_precision``.

        Returns
        -------
        Tensor
            A scalar in the model's dtype.
        """
        self._check_fitted()
        tau = self.prior_precision if prior_precision is None else _positive(prior_precision, "prior_precision")
        n, theta = self.n_data, self.theta_map
        P = theta.numel()
        logdet = P * math.log(n) + self.fisher.logdet(damping=tau / n)
        return self._map_loglik - 0.5 * tau * (theta @ theta) + 0.5 * P * math.log(tau) - 0.5 * logdet

    def optimize_prior_precision(self, grid: Tensor | None = None) -> float:
        r"""Set :math:`\tau` to the maximiser of :meth:`log_marginal_likelihood` over a grid.

        Parameters
        ----------
        grid : Tensor, optional
            Positive candidate values; default ``logspace(-4, 4, 81)``.

        Returns
        -------
        float
            The chosen :math:`\tau` (also stored in ``self.prior_precision``).
        """
        self._check_fitted()
        if grid is None:
            grid = torch.logspace(-4, 4, 81, dtype=torch.float64)
        if not isinstance(grid, Tensor) or grid.dim() != 1 or grid.numel() == 0:
            raise ValueError("grid must be a non-empty 1-D tensor of positive values")
        if not bool((grid > 0).all()) or not bool(torch.isfinite(grid).all()):
            raise ValueError("grid must hold finite values > 0")
        values = torch.stack([self.log_marginal_likelihood(float(t)) for t in grid])
        self.prior_precision = float(grid[int(values.argmax())])
        return self.prior_precision

    # -- prediction -------------------------------------------------------------------------------
    def _jacobian(self, phi: Tensor) -> Tensor:
        params = {k: v.detach() for k, v in self.last.named_parameters()}

        def single(p: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self.last, p, (x.unsqueeze(0),)).reshape(-1)

        jac = vmap(jacrev(single), in_dims=(None, 0))(params, phi)
        return torch.cat([jac[k].reshape(phi.shape[0], jac[k].shape[1], -1) for k in params], dim=-1)

    def logit_distribution(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        r"""Mean :math:`\hat f(x)` and covariance :math:`J_x \Sigma J_x^\top` of the logits.

        Parameters
        ----------
        inputs : Tensor
            ``n`` examples along dim 0.

        Returns
        -------
        tuple of Tensor
            Means of shape ``(n, C)`` and covariances of shape ``(n, C, C)``.
        """
        self._check_fitted()
        phi, out = self.features(inputs)
        out = out.reshape(out.shape[0], -1)
        J = self._jacobian(phi)  # (n, C, P)
        n, C, P = J.shape
        tau = self.prior_precision
        cols = J.reshape(n * C, P).T  # (P, nC)
        sol = self.fisher.solve(cols, damping=tau / self.n_data) / self.n_data
        cov = torch.einsum("ncp,ndp->ncd", J, sol.T.reshape(n, C, P))
        return out, 0.5 * (cov + cov.transpose(1, 2))

    def predict(
        self,
        inputs: Tensor,
        *,
        method: str = "probit",
        n_samples: int = 100,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        r"""Predictive class probabilities.

        ``"probit"``: :math:`\operatorname{softmax}_c\big(\hat f_c / \sqrt{1 + \tfrac\pi8 \Sigma_{f,cc}}\big)`
        (for ``"bernoulli"``, :math:`\sigma(\hat f / \sqrt{1 + \pi\sigma_f^2/8})`);
        ``"mc"``: the average of :math:`\operatorname{softmax}(f^{(s)})` over ``n_samples`` draws
        :math:`f^{(s)} \sim \mathcal N(\hat f, \Sigma_f)`; ``"map"``: :math:`\operatorname{softmax}(\hat f)`.

        Parameters
        ----------
        inputs : Tensor
            ``n`` examples along dim 0.
        method : str
            Approximation of the predictive integral: ``"probit"``, ``"mc"`` or ``"map"``.
        n_samples : int
            Draws for ``"mc"``.
        generator : torch.Generator, optional
            Random generator for ``"mc"``.

        Returns
        -------
        Tensor
            ``(n, C)`` probabilities for ``"categorical"``, ``(n,)`` probabilities of class 1 for
            ``"bernoulli"``.
        """
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        link = (lambda f: torch.softmax(f, -1)) if self.likelihood == "categorical" else torch.sigmoid
        if method == "map":
            _, out = self.features(inputs)
            probs = link(out.reshape(out.shape[0], -1))
        else:
            mean, cov = self.logit_distribution(inputs)
            if method == "probit":
                var = torch.diagonal(cov, dim1=1, dim2=2)
                probs = link(mean / torch.sqrt(1 + math.pi / 8 * var))
            else:
                evals, evecs = torch.linalg.eigh(cov)
                root = evecs * evals.clamp_min(0).sqrt().unsqueeze(1)  # (n, C, C): cov = root root^T
                z = torch.randn((n_samples,) + mean.shape, dtype=mean.dtype, device=mean.device, generator=generator)
                f = mean + torch.einsum("ncd,snd->snc", root, z)
                probs = link(f).mean(0)
        return probs if self.likelihood == "categorical" else probs[:, 0]


def _check_probs_targets(probs: Tensor, targets: Tensor, n_bins: int) -> tuple[Tensor, Tensor, Tensor]:
    if not isinstance(probs, Tensor) or not isinstance(targets, Tensor):
        raise TypeError("probs and targets must be torch tensors")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    if probs.dim() == 1:
        probs = torch.stack([1 - probs, probs], dim=1)
    if probs.dim() != 2 or probs.shape[0] == 0:
        raise ValueError(f"probs must have shape (n,) or (n, C) with n >= 1, got {tuple(probs.shape)}")
    if targets.shape != (probs.shape[0],):
        raise ValueError(f"targets must have shape ({probs.shape[0]},), got {tuple(targets.shape)}")
    if not bool(torch.isfinite(probs).all()) or bool((probs < 0).any()) or bool((probs > 1).any()):
        raise ValueError("probs must lie in [0, 1]")
    if not torch.allclose(probs.sum(1), torch.ones(1, dtype=probs.dtype), atol=1e-4):
        raise ValueError("probs must sum to 1 over classes")
    targets = targets.reshape(-1)
    if targets.is_floating_point():
        if not bool(((targets == 0) | (targets == 1)).all()):
            raise ValueError("floating-point targets must be 0/1 labels")
        targets = targets.long()
    if bool((targets < 0).any()) or bool((targets >= probs.shape[1]).any()):
        raise ValueError(f"targets must be class indices in [0, {probs.shape[1]})")
    conf, pred = probs.max(1)
    correct = (pred == targets).to(probs.dtype)
    bins = torch.clamp((conf * n_bins).ceil().long() - 1, 0, n_bins - 1)  # bin b covers (b/B, (b+1)/B]
    return conf, correct, bins


def calibration_curve(probs: Tensor, targets: Tensor, n_bins: int = 15) -> tuple[Tensor, Tensor, Tensor]:
    r"""Reliability-diagram data: mean confidence, accuracy and count per confidence bin.

    The confidence of a prediction is its largest class probability; bins are equal-width on
    :math:`(0, 1]`. Empty bins report NaN confidence and accuracy with count 0.

    Parameters
    ----------
    probs : Tensor
        ``(n, C)`` class probabilities, or ``(n,)`` probabilities of class 1 (binary).
    targets : Tensor
        ``(n,)`` class indices (0/1 for binary).
    n_bins : int
        Number of bins, >= 1.

    Returns
    -------
    tuple of Tensor
        ``confidence``, ``accuracy`` (each shape ``(n_bins,)``) and ``counts`` (int64).

    Examples
    --------
    >>> import torch
    >>> conf, acc, cnt = calibration_curve(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 0]), n_bins=5)
    >>> cnt.tolist()
    [0, 0, 0, 1, 1]
    >>> acc[3:].tolist(), [round(c, 2) for c in conf[3:].tolist()]
    ([0.0, 1.0], [0.8, 0.9])
    """
    conf, correct, bins = _check_probs_targets(probs, targets, n_bins)
    counts = torch.bincount(bins, minlength=n_bins)
    sum_conf = torch.zeros(n_bins, dtype=conf.dtype).index_add_(0, bins, conf)
    sum_acc = torch.zeros(n_bins, dtype=conf.dtype).index_add_(0, bins, correct)
    denom = counts.to(conf.dtype)
    nan = torch.full_like(denom, float("nan"))
    return (torch.where(counts > 0, sum_conf / denom.clamp_min(1), nan),
            torch.where(counts > 0, sum_acc / denom.clamp_min(1), nan), counts)


def expected_calibration_error(probs: Tensor, targets: Tensor, n_bins: int = 15) -> Tensor:
    r"""Expected calibration error (Naeini et al. 2015; Guo et al. 2017).

    .. math::

       \mathrm{ECE} = \sum_{b=1}^B \frac{|B_b|}{n}\, \big|\operatorname{acc}(B_b) - \operatorname{conf}(B_b)\big|,

    with predictions grouped into :math:`B` equal-width bins of confidence (largest class
    probability).

    Parameters
    ----------
    probs : Tensor
        ``(n, C)`` class probabilities, or ``(n,)`` probabilities of class 1 (binary).
    targets : Tensor
        ``(n,)`` class indices (0/1 for binary).
    n_bins : int
        Number of bins :math:`B \ge 1`.

    Returns
    -------
    Tensor
        A scalar in :math:`[0, 1]`.

    Examples
    --------
    Always 90 % confident, right 60 % of the time:

    >>> import torch
    >>> probs = torch.tensor([[0.9, 0.1]] * 10, dtype=torch.float64)
    >>> targets = torch.tensor([0] * 6 + [1] * 4)
    >>> round(expected_calibration_error(probs, targets).item(), 6)
    0.3
    """
    conf, correct, bins = _check_probs_targets(probs, targets, n_bins)
    n = conf.shape[0]
    gap = torch.zeros(n_bins, dtype=conf.dtype).index_add_(0, bins, conf - correct)
    return gap.abs().sum() / n

"""Scores, Monte-Carlo Fisher estimates, observed / empirical / conditional information."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm
from torch.distributions import (
    Bernoulli,
    Beta,
    Binomial,
    Categorical,
    Cauchy,
    Dirichlet,
    Exponential,
    Gamma,
    Geometric,
    HalfNormal,
    Laplace,
    LogNormal,
    MultivariateNormal,
    NegativeBinomial,
    Normal,
    Poisson,
    StudentT,
)

import fisherbook as fb

SETTINGS = settings(max_examples=4, deadline=None, derandomize=True)
N_MC = 4000


def t(v: float | list) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float64)


def log_uniform(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda e: 10.0**e)


locs = st.floats(-100, 100)
scales = log_uniform(1e-2, 1e2)
# Monte Carlo needs the events that carry the information to occur in N_MC draws: with
# n p < ~50 the sample of s s^T is a handful of distinct values and its standard error
# means nothing (n = 4000, p = 1e-6 gives all zeros and stderr 0). Ranges stay where n p >= 40
# and where s s^T has a finite fourth moment (Gamma/Beta concentrations away from 0).
mc_probs = st.floats(0.01, 0.99)

MC_FAMILIES: dict[str, st.SearchStrategy] = {
    "Normal": st.builds(lambda a, b: Normal(t(a), t(b)), locs, scales),
    "LogNormal": st.builds(lambda a, b: LogNormal(t(a), t(b)), st.floats(-5, 5), log_uniform(0.05, 5)),
    "Cauchy": st.builds(lambda a, b: Cauchy(t(a), t(b)), locs, scales),
    "StudentT": st.builds(
        lambda n, a, b: StudentT(t(n), t(a), t(b)), log_uniform(1.0, 30), locs, scales
    ),
    "Laplace-scale": st.builds(lambda a, b: Laplace(t(a), t(b)), locs, scales),
    "HalfNormal": st.builds(lambda b: HalfNormal(t(b)), scales),
    "Exponential": st.builds(lambda b: Exponential(t(b)), scales),
    "Gamma": st.builds(lambda a, b: Gamma(t(a), t(b)), log_uniform(0.5, 100), scales),
    "Beta": st.builds(lambda a, b: Beta(t(a), t(b)), log_uniform(0.5, 50), log_uniform(0.5, 50)),
    "Poisson": st.builds(lambda r: Poisson(t(r)), log_uniform(0.05, 1e3)),
    "Bernoulli": st.builds(lambda p: Bernoulli(t(p)), mc_probs),
    "Bernoulli-logits": st.builds(lambda e: Bernoulli(logits=t(e)), st.floats(-4, 4)),
    "Geometric": st.builds(lambda p: Geometric(t(p)), mc_probs),
    "Binomial": st.builds(lambda n, p: Binomial(n, t(p)), st.integers(1, 100), mc_probs),
    "NegativeBinomial": st.builds(
        lambda r, p: NegativeBinomial(t(r), t(p)), log_uniform(0.5, 50), st.floats(0.05, 0.9)
    ),
    "Categorical": st.lists(st.floats(0.05, 1.0), min_size=2, max_size=5).map(
        lambda w: Categorical(probs=t(w) / sum(w))
    ),
    "Categorical-logits": st.lists(st.floats(-2, 2), min_size=2, max_size=5).map(
        lambda w: Categorical(logits=t(w))
    ),
    "Dirichlet": st.lists(log_uniform(0.5, 20), min_size=2, max_size=4).map(
        lambda a: Dirichlet(t(a))
    ),
}


def exact(d: torch.distributions.Distribution) -> torch.Tensor:
    try:
        return fb.fisher_information(d, params=params_for(d))
    except ValueError:
        return fb.fisher_information(d, params=params_for(d), method="quadrature")


def params_for(d: torch.distributions.Distribution) -> tuple[str, ...] | None:
    # Laplace: loc is handled separately (log p is not twice differentiable in it).
    return ("scale",) if isinstance(d, Laplace) else None


def assert_within_se(est: fb.FisherEstimate, ref: torch.Tensor, k: float = 5.0) -> None:
    # k standard errors, plus rounding slack for entries whose per-sample value is constant
    # (their standard error is 0: e.g. the Hessian of a Gaussian in loc).
    diag = torch.diagonal(ref, dim1=-2, dim2=-1).abs()
    slack = 1e-9 * torch.sqrt(diag.unsqueeze(-1) * diag.unsqueeze(-2))
    bad = (est.value - ref).abs() > k * est.stderr + slack
    assert not bad.any(), f"\nestimate {est.value}\nstderr {est.stderr}\nexact {ref}"


@pytest.mark.parametrize("method", ["score", "hessian"])
@pytest.mark.parametrize("family", sorted(MC_FAMILIES))
def test_monte_carlo_within_five_standard_errors(family: str, method: str) -> None:
    @SETTINGS
    @given(MC_FAMILIES[family], st.integers(0, 2**31))
    def check(d: torch.distributions.Distribution, seed: int) -> None:
        est = fb.fisher_information(
            d, params=params_for(d), method=method, n_samples=N_MC, generator=seed
        )
        ref = exact(d)
        assert est.value.shape == ref.shape == est.stderr.shape
        assert est.n_samples == N_MC
        assert_within_se(est, ref)

    check()


def test_monte_carlo_covers_multivariate_normal() -> None:
    lower = t([[1.0, 0.0, 0.0], [0.5, 2.0, 0.0], [-0.3, 0.2, 0.7]])
    for kw, m in (("covariance_matrix", lower @ lower.mT), ("scale_tril", lower)):
        d = MultivariateNormal(t([1.0, 2.0, 3.0]), **{kw: m})
        for method in ("score", "hessian"):
            est = fb.fisher_information(d, method=method, n_samples=3000, generator=11)
            assert_within_se(est, fb.fisher_information(d))


def test_monte_carlo_standard_error_is_honest() -> None:
    # Over independent replications, the z-scores of the score-method estimate are ~ N(0, 1).
    d = Gamma(t(2.0), t(3.0))
    ref = fb.fisher_information(d)
    g = torch.Generator().manual_seed(5)
    z = torch.stack(
        [
            (lambda e: (e.value - ref) / e.stderr)(
                fb.fisher_information(d, method="score", n_samples=2000, generator=g)
            )
            for _ in range(60)
        ]
    )
    assert z.mean().abs() < 0.5  # mean of 60 x 4 correlated N(0,1): sd < 0.13 each entry
    assert 0.6 < z.std().item() < 1.5


def test_monte_carlo_shapes_batches_and_reproducibility() -> None:
    d = Normal(t([0.0, 1.0, 2.0]), t([1.0, 2.0, 4.0]))
    a = fb.fisher_information(d, method="score", n_samples=500, generator=3)
    b = fb.fisher_information(d, method="score", n_samples=500, generator=3)
    assert a.value.shape == (3, 2, 2) and torch.equal(a.value, b.value)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    c = fb.fisher_information(d, method="hessian", n_samples=500, generator=g1)
    e = fb.fisher_information(d, method="hessian", n_samples=500, generator=g2)
    assert torch.equal(c.value, e.value)
    # the global RNG is untouched when a generator is given
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    fb.fisher_information(d, method="score", n_samples=100, generator=4)
    assert torch.equal(torch.rand(3), before)
    # chunked accumulation (> one chunk of 2**15) agrees with the exact value
    big = fb.fisher_information(Poisson(t(3.0)), method="score", n_samples=70_000, generator=1)
    assert big.n_samples == 70_000
    assert_within_se(big, fb.fisher_information(Poisson(t(3.0))))


# --------------------------------------------------------------------------- score


@settings(max_examples=8, deadline=None, derandomize=True)
@given(st.sampled_from(sorted(MC_FAMILIES)), st.data())
def test_score_has_mean_zero(family: str, data: st.DataObject) -> None:
    d = data.draw(MC_FAMILIES[family])
    est_seed = data.draw(st.integers(0, 2**31))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(est_seed)
        x = d.sample((N_MC,))
    s = fb.score(d, x)
    assert s.shape == (N_MC,) + d.batch_shape + (len(fb.coordinate_names(d)),)
    se = s.std(0) / math.sqrt(N_MC)
    assert (s.mean(0).abs() <= 5 * se + 1e-12).all()


def test_score_matches_analytic_gradients() -> None:
    x = t([-1.0, 0.5, 3.0])
    mu, sigma = 0.5, 2.0
    s = fb.score(Normal(t(mu), t(sigma)), x)
    z = (x - mu) / sigma
    assert torch.allclose(s[:, 0], z / sigma)
    assert torch.allclose(s[:, 1], (z**2 - 1) / sigma)
    k = t([0.0, 2.0, 5.0])
    assert torch.allclose(fb.score(Poisson(t(2.0)), k)[:, 0], k / 2.0 - 1.0)
    y = t([0.0, 1.0])
    assert torch.allclose(fb.score(Bernoulli(logits=t(0.0)), y)[:, 0], y - 0.5)
    # subsets and order
    s2 = fb.score(Normal(t(mu), t(sigma)), x, params=("scale", "loc"))
    assert torch.equal(s2, s.flip(-1))


def test_score_shapes_and_broadcasting() -> None:
    d = Normal(t([0.0, 1.0]), t([1.0, 2.0]))
    assert fb.score(d, t([0.3, 0.4])).shape == (2, 2)
    assert fb.score(d, torch.zeros(5, 2, dtype=torch.float64)).shape == (5, 2, 2)
    assert fb.score(d, torch.zeros(5, 1, dtype=torch.float64)).shape == (5, 2, 2)
    mvn = MultivariateNormal(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    assert fb.score(mvn, torch.zeros(7, 2, dtype=torch.float64)).shape == (7, 5)
    assert fb.score(Categorical(probs=t([0.2, 0.3, 0.5])), t([0, 1, 2, 2])).shape == (4, 2)
    assert fb.score(Normal(0.0, 1.0), np.array([0.1, 0.2])).dtype == torch.float64


def test_score_rejects_bad_data() -> None:
    with pytest.raises(ValueError, match="finite"):
        fb.score(Normal(0.0, 1.0), t([0.0, math.nan]))
    with pytest.raises(ValueError, match="finite"):
        fb.score(Normal(0.0, 1.0), t([math.inf]))
    with pytest.raises(ValueError, match="support"):
        fb.score(Poisson(t(2.0)), t([1.5]))
    with pytest.raises(ValueError, match="support"):
        fb.score(Exponential(t(2.0)), t([-1.0]))
    with pytest.raises(ValueError, match="event shape"):
        fb.score(MultivariateNormal(torch.zeros(2), torch.eye(2)), torch.zeros(3))
    with pytest.raises(ValueError, match="broadcast"):
        fb.score(Normal(t([0.0, 1.0]), t(1.0)), torch.zeros(3, dtype=torch.float64))


# --------------------------------------------------------------------------- bad input


def test_monte_carlo_bad_input() -> None:
    d = Normal(0.0, 1.0)
    with pytest.raises(ValueError, match="n_samples"):
        fb.fisher_information(d, method="score", n_samples=1)
    with pytest.raises(TypeError, match="n_samples"):
        fb.fisher_information(d, method="score", n_samples=10.5)
    with pytest.raises(ValueError, match="n_samples"):
        fb.fisher_information(d, method="quadrature", n_samples=100)
    with pytest.raises(TypeError, match="generator"):
        fb.fisher_information(d, method="score", n_samples=10, generator="seed")
    with pytest.raises(ValueError, match="twice differentiable"):
        fb.fisher_information(Laplace(0.0, 1.0), method="hessian", n_samples=10)
    with pytest.raises(ValueError, match="multivariate"):
        fb.fisher_information(
            MultivariateNormal(torch.zeros(2), torch.eye(2)), method="quadrature"
        )


def test_laplace_location_score_method_is_right_hessian_is_not() -> None:
    # The score identity needs one derivative (a.e.); the Hessian identity needs two: for the
    # Laplace location the curvature is a point mass at x = loc that samples never see.
    d = Laplace(t(0.0), t(2.0))
    est = fb.fisher_information(d, params="loc", method="score", n_samples=2000, generator=0)
    assert est.value.item() == pytest.approx(0.25, abs=1e-12)  # s^2 = 1/b^2 for every x


# --------------------------------------------------------------------------- observed information


def logistic_data(seed: int, n: int = 200, k: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.ones(n, 1), torch.randn(n, k - 1, generator=g)], dim=1).double()
    beta = torch.randn(k, generator=g, dtype=torch.float64)
    y = torch.bernoulli(torch.sigmoid(x @ beta), generator=g)
    return x, y, beta


@SETTINGS
@given(st.integers(0, 10_000))
def test_observed_equals_expected_for_logistic_regression(seed: int) -> None:
    x, y, beta = logistic_data(seed)
    theta = beta + 0.3  # any theta, not only the MLE: the Hessian does not involve y

    def loglik(b: torch.Tensor) -> torch.Tensor:
        return Bernoulli(logits=x @ b).log_prob(y).sum()

    observed = fb.observed_information(loglik, theta)
    expected = fb.conditional_fisher(lambda b: Bernoulli(logits=x @ b), theta)
    p = torch.sigmoid(x @ theta)
    by_hand = x.mT @ (x * (p * (1 - p))[:, None])
    assert torch.allclose(observed, expected, rtol=1e-10, atol=1e-12)
    assert torch.allclose(expected, by_hand, rtol=1e-12, atol=1e-12)


def test_logistic_information_matches_statsmodels() -> None:
    sm = pytest.importorskip("statsmodels.api")
    x, y, beta = logistic_data(1)
    model = sm.Logit(y.numpy(), x.numpy())
    h = model.hessian(beta.numpy())
    expected = fb.conditional_fisher(lambda b: Bernoulli(logits=x @ b), beta)
    assert np.allclose(expected.numpy(), -h, rtol=1e-10)


@SETTINGS
@given(st.integers(0, 10_000))
def test_observed_differs_from_expected_for_probit(seed: int) -> None:
    x, y, beta = logistic_data(seed)
    std = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)

    def probs(b: torch.Tensor) -> torch.Tensor:
        return std.cdf(x @ b)

    def loglik_for(labels: torch.Tensor):  # noqa: ANN202
        return lambda b: Bernoulli(probs=probs(b)).log_prob(labels).sum()

    observed = fb.observed_information(loglik_for(y), beta)
    expected = fb.conditional_fisher(lambda b: Bernoulli(probs=probs(b)), beta)
    rel = (observed - expected).norm() / expected.norm()
    assert rel > 1e-3  # they differ for observed labels...
    # ...but agree on average: J is linear in y, so E_y[J] = J evaluated at y = p.
    p = probs(beta)
    eta = (x @ beta).numpy()
    w = torch.from_numpy(norm.pdf(eta) ** 2 / (p.numpy() * (1 - p.numpy())))
    assert torch.allclose(expected, x.mT @ (x * w[:, None]), rtol=1e-9)
    mean_observed = fb.observed_information(
        lambda b: (p * torch.log(probs(b)) + (1 - p) * torch.log1p(-probs(b))).sum(), beta
    )
    assert torch.allclose(mean_observed, expected, rtol=1e-9, atol=1e-12)


def test_observed_information_of_normal_sample() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, generator=g, dtype=torch.float64) * 2 + 1
    mu, sd = x.mean(), x.std(unbiased=False)
    j = fb.observed_information(lambda th: Normal(th[0], th[1]).log_prob(x).sum(), torch.stack([mu, sd]))
    # at the MLE the observed information equals n * I(mu_hat, sd_hat) = diag(n/s^2, 2n/s^2)
    assert torch.allclose(j, torch.diag(t([50 / sd**2, 100 / sd**2])), rtol=1e-10, atol=1e-10)


def test_observed_information_bad_input() -> None:
    f = lambda th: (th**2).sum()  # noqa: E731
    with pytest.raises(ValueError, match="1-D"):
        fb.observed_information(f, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="finite"):
        fb.observed_information(f, t([math.nan]))
    with pytest.raises(ValueError, match="scalar"):
        fb.observed_information(lambda th: th * 2, t([1.0, 2.0]))
    with pytest.raises(TypeError):
        fb.observed_information("f", t([1.0]))
    with pytest.raises(ValueError, match="not finite"):
        fb.observed_information(lambda th: torch.log(th).sum(), t([0.0]))


# --------------------------------------------------------------------------- empirical Fisher


def test_empirical_fisher_forms_agree_and_differ_from_fisher() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(400, generator=g, dtype=torch.float64) * 1.5 + 0.5
    theta = t([0.0, 1.0])  # not the data-generating parameter
    by_callable = fb.empirical_fisher(lambda th: Normal(th[0], th[1]).log_prob(x), theta)
    by_dist = fb.empirical_fisher(Normal(t(0.0), t(1.0)), x)
    assert torch.allclose(by_callable, by_dist, rtol=1e-12)
    # loc entry: mean (x - mu)^2 / sigma^4, exactly
    assert by_dist[0, 0].item() == pytest.approx((x**2).mean().item(), rel=1e-12)
    # away from the truth the empirical Fisher is not the Fisher (1 here)
    assert by_dist[0, 0].item() > 1.5
    # the Kunstner et al. identity: N * EF = sum of per-example g g^T = cov + mean mean^T
    s = fb.score(Normal(t(0.0), t(1.0)), x)
    mean = s.mean(0)
    cov = (s - mean).mT @ (s - mean) / s.shape[0]
    assert torch.allclose(by_dist, cov + torch.outer(mean, mean), rtol=1e-10)


def test_empirical_fisher_converges_to_fisher_under_the_model() -> None:
    d = Gamma(t(3.0), t(2.0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        x = d.sample((40_000,))
    ef = fb.empirical_fisher(d, x)
    s = fb.score(d, x)
    per = s.unsqueeze(-1) * s.unsqueeze(-2)
    se = per.std(0) / math.sqrt(x.shape[0])
    assert ((ef - fb.fisher_information(d)).abs() < 5 * se).all()


def test_empirical_fisher_bad_input() -> None:
    with pytest.raises(ValueError, match="1-D"):
        fb.empirical_fisher(lambda th: th.sum(), t([1.0]))
    with pytest.raises(ValueError, match="params"):
        fb.empirical_fisher(lambda th: th, t([1.0]), params="loc")
    with pytest.raises(ValueError, match="finite"):
        fb.empirical_fisher(Normal(0.0, 1.0), t([math.nan]))


# --------------------------------------------------------------------------- reparameterize


def test_reparameterize_chain_rule_composes() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, generator=g, dtype=torch.float64)
    fisher = a @ a.mT + torch.eye(3, dtype=torch.float64)
    j1 = torch.randn(3, 3, generator=g, dtype=torch.float64)
    j2 = torch.randn(3, 2, generator=g, dtype=torch.float64)
    step = fb.reparameterize(fb.reparameterize(fisher, j1), j2)
    assert torch.allclose(step, fb.reparameterize(fisher, j1 @ j2), rtol=1e-12)
    batched = fb.reparameterize(fisher.expand(4, 3, 3), j1)
    assert batched.shape == (4, 3, 3)


def test_reparameterize_bad_input() -> None:
    f = torch.eye(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="jacobian"):
        fb.reparameterize(f, torch.ones(3, 1))
    with pytest.raises(ValueError, match="square"):
        fb.reparameterize(torch.ones(2, 3), torch.ones(3, 1))
    with pytest.raises(ValueError, match="finite"):
        fb.reparameterize(f, t([[math.inf], [0.0]]))
    with pytest.raises(TypeError):
        fb.reparameterize([[1.0]], torch.ones(1, 1))


def test_conditional_fisher_mean_and_errors() -> None:
    x, _, beta = logistic_data(3, n=50)
    total = fb.conditional_fisher(lambda b: Bernoulli(logits=x @ b), beta)
    mean = fb.conditional_fisher(lambda b: Bernoulli(logits=x @ b), beta, reduction="mean")
    assert torch.allclose(total / 50, mean)
    with pytest.raises(ValueError, match="reduction"):
        fb.conditional_fisher(lambda b: Bernoulli(logits=x @ b), beta, reduction="max")
    with pytest.raises(ValueError, match="method"):
        fb.conditional_fisher(lambda b: Bernoulli(logits=x @ b), beta, method="score")
    # quadrature for the output family gives the same matrix (Student-t regression, df fixed)
    reg = lambda b: StudentT(t(5.0), x[:8] @ b, t(1.5))  # noqa: E731
    by_quad = fb.conditional_fisher(reg, beta, params="loc", method="quadrature")
    assert torch.allclose(by_quad, fb.conditional_fisher(reg, beta, params="loc"), rtol=1e-8)
    assert torch.allclose(by_quad, x[:8].mT @ x[:8] * 6 / (8 * 1.5**2), rtol=1e-8)
    # Poisson regression (canonical log link): observed = expected as well
    rate = lambda b: Poisson(torch.exp(x @ b / 3))  # noqa: E731
    y = t([float(k % 4) for k in range(50)])
    obs = fb.observed_information(lambda b: rate(b).log_prob(y).sum(), beta)
    assert torch.allclose(obs, fb.conditional_fisher(rate, beta), rtol=1e-10)

"""Closed-form Fisher information (fisherbook.stats.families) against independent references.

The reference for every closed form is ``method="quadrature"``: the expectation of the outer
product of autograd scores, by adaptive quadrature (continuous) or enumeration (discrete). The
two share nothing but torch's ``log_prob``.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
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
    Multinomial,
    MultivariateNormal,
    NegativeBinomial,
    Normal,
    Poisson,
    StudentT,
    Uniform,
)

import fisherbook as fb
from fisherbook.stats._params import _all_names
from fisherbook.stats.families import CLOSED_FORMS, find_closed_form

SETTINGS = settings(max_examples=6, deadline=None, derandomize=True)


def t(v: float | list) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float64)


def log_uniform(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda e: 10.0**e)


# Probabilities: the bulk plus both boundary layers.
probs = st.one_of(
    st.floats(1e-6, 1e-3), st.floats(1e-3, 1 - 1e-3), st.floats(1 - 1e-3, 1 - 1e-6)
)
locs = st.floats(-1e3, 1e3)
scales = log_uniform(1e-3, 1e3)

# Each family with a strategy over its parameters, boundary regions included. The ranges stop
# where the distribution itself stops being representable in float64 (quadrature checks that
# the density integrates to 1 and refuses otherwise): LogNormal mass beyond e^{±700};
# Beta(a, b) with b < ~0.6 puts > 1e-9 of its mass within 1e-16 of x = 1, where torch's
# log_prob evaluates 1 - x = 0; Gamma with concentration < 0.05 puts mass below 1e-308.
FAMILIES: dict[str, st.SearchStrategy] = {
    "Normal": st.builds(lambda a, b: Normal(t(a), t(b)), locs, scales),
    "LogNormal": st.builds(
        lambda a, b: LogNormal(t(a), t(b)), st.floats(-50, 50), log_uniform(1e-3, 30)
    ),
    "Laplace": st.builds(lambda a, b: Laplace(t(a), t(b)), locs, scales),
    "Cauchy": st.builds(lambda a, b: Cauchy(t(a), t(b)), locs, scales),
    "StudentT": st.builds(
        lambda n, a, b: StudentT(t(n), t(a), t(b)), log_uniform(0.3, 100), locs, scales
    ),
    "HalfNormal": st.builds(lambda b: HalfNormal(t(b)), scales),
    "Exponential": st.builds(lambda b: Exponential(t(b)), scales),
    "Gamma": st.builds(lambda a, b: Gamma(t(a), t(b)), log_uniform(0.05, 1e3), scales),
    "Beta": st.builds(
        lambda a, b: Beta(t(a), t(b)), log_uniform(0.05, 100), log_uniform(0.7, 100)
    ),
    "Poisson": st.builds(lambda r: Poisson(t(r)), log_uniform(1e-3, 1e4)),
    "Bernoulli": st.builds(lambda p: Bernoulli(probs=t(p)), probs),
    "Bernoulli-logits": st.builds(lambda e: Bernoulli(logits=t(e)), st.floats(-20, 20)),
    "Geometric": st.builds(lambda p: Geometric(probs=t(p)), st.floats(1e-3, 1 - 1e-6)),
    "Geometric-logits": st.builds(lambda e: Geometric(logits=t(e)), st.floats(-6, 12)),
    "Binomial": st.builds(
        lambda n, p: Binomial(n, probs=t(p)), st.integers(1, 200), probs
    ),
    "Binomial-logits": st.builds(
        lambda n, e: Binomial(n, logits=t(e)), st.integers(1, 200), st.floats(-15, 15)
    ),
    "NegativeBinomial": st.builds(
        lambda r, p: NegativeBinomial(t(r), probs=t(p)), log_uniform(0.1, 100), st.floats(1e-4, 0.99)
    ),
    "NegativeBinomial-logits": st.builds(
        lambda r, e: NegativeBinomial(t(r), logits=t(e)), log_uniform(0.1, 100), st.floats(-8, 4)
    ),
    "Categorical": st.lists(st.floats(1e-4, 1.0), min_size=2, max_size=6).map(
        lambda w: Categorical(probs=t(w) / sum(w))
    ),
    "Categorical-logits": st.lists(st.floats(-10, 10), min_size=2, max_size=6).map(
        lambda w: Categorical(logits=t(w))
    ),
}


def assert_entrywise_close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> None:
    """|a - b| <= rtol * sqrt(b_mm b_nn): relative on the diagonal, correlation-scaled off it."""
    diag = torch.diagonal(b, dim1=-2, dim2=-1).abs()
    scale = torch.sqrt(diag.unsqueeze(-1) * diag.unsqueeze(-2))
    err = ((a - b).abs() / scale).max().item()
    assert err <= rtol, f"max scaled error {err:.3e} > {rtol:.0e}\n{a}\n{b}"


def closed_params(d: torch.distributions.Distribution) -> tuple[str, ...] | None:
    # StudentT's closed form holds df fixed.
    return ("loc", "scale") if isinstance(d, StudentT) else None


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_closed_form_matches_quadrature(family: str) -> None:
    @SETTINGS
    @given(FAMILIES[family])
    def check(d: torch.distributions.Distribution) -> None:
        params = closed_params(d)
        closed = fb.fisher_information(d, params=params)
        quad = fb.fisher_information(d, params=params, method="quadrature")
        assert closed.dtype == torch.float64 and quad.dtype == torch.float64
        assert_entrywise_close(quad, closed, 1e-8)

    check()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_symmetric_positive_semidefinite(family: str) -> None:
    @settings(max_examples=10, deadline=None, derandomize=True)
    @given(FAMILIES[family])
    def check(d: torch.distributions.Distribution) -> None:
        f = fb.fisher_information(d, params=closed_params(d))
        assert torch.equal(f, f.mT)
        eig = torch.linalg.eigvalsh(f)
        assert eig.min() >= -1e-12 * eig.abs().max()
        # A regular family with identifiable parameters has a positive definite Fisher;
        # Categorical logits are over-parameterised (softmax is shift invariant): rank K-1.
        if isinstance(d, Categorical) and "logits" in fb.parameter_names(d):
            k = f.shape[-1]
            ones = torch.ones(k, dtype=torch.float64)
            assert torch.allclose(f @ ones, torch.zeros(k, dtype=torch.float64), atol=1e-12)
        else:
            assert eig.min() > 0

    check()


def test_studentt_df_block_by_quadrature() -> None:
    # The full 3x3 information, df free, has the df-fixed closed form as its (loc, scale) block,
    # zero loc-df coupling (symmetry), and the known df entries of Lange, Little & Taylor (1989).
    nu, s = 4.0, 2.0
    full = fb.fisher_information(StudentT(t(nu), t(1.0), t(s)), method="quadrature")
    block = fb.fisher_information(StudentT(t(nu), t(1.0), t(s)), params=("loc", "scale"))
    assert_entrywise_close(full[1:, 1:], block, 1e-9)
    assert abs(full[0, 1]) < 1e-10
    tg = lambda x: torch.polygamma(1, t(x)).item()  # noqa: E731
    i_nn = 0.25 * (tg(nu / 2) - tg((nu + 1) / 2)) - (nu + 5) / (2 * nu * (nu + 1) * (nu + 3))
    i_ns = -2.0 / (s * (nu + 1) * (nu + 3))
    assert full[0, 0].item() == pytest.approx(i_nn, rel=1e-8)
    assert full[0, 2].item() == pytest.approx(i_ns, rel=1e-8)


def test_reference_values() -> None:
    # REFERENCES.md, chapter 1 (per observation).
    assert fb.fisher_information(Normal(t(0.0), t(2.0))).tolist() == [[0.25, 0.0], [0.0, 0.5]]
    assert fb.fisher_information(Bernoulli(t(0.2))).item() == pytest.approx(1 / 0.16)
    assert fb.fisher_information(Binomial(10, t(0.2))).item() == pytest.approx(10 / 0.16)
    assert fb.fisher_information(Poisson(t(4.0))).item() == pytest.approx(0.25)
    assert fb.fisher_information(Exponential(t(3.0))).item() == pytest.approx(1 / 9)
    assert fb.fisher_information(Geometric(t(0.2))).item() == pytest.approx(1 / (0.04 * 0.8))
    assert torch.allclose(
        fb.fisher_information(Cauchy(t(0.0), t(3.0))), torch.eye(2, dtype=torch.float64) / 18
    )
    f = fb.fisher_information(StudentT(t(5.0), t(0.0), t(2.0)), params=("loc", "scale"))
    assert f[0, 0].item() == pytest.approx(6 / (8 * 4))
    assert f[1, 1].item() == pytest.approx(10 / (8 * 4))


def test_subset_and_order_select_the_block() -> None:
    d = Gamma(t(2.5), t(0.7))
    full = fb.fisher_information(d)
    swapped = fb.fisher_information(d, params=("rate", "concentration"))
    assert torch.equal(swapped, full.flip(0).flip(1))
    assert fb.fisher_information(d, params="rate").item() == full[1, 1].item()
    assert fb.fisher_information(d, params=["concentration"]).item() == full[0, 0].item()


def test_batched_distributions_give_batched_matrices() -> None:
    loc = t([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    scale = t([0.5, 1.0, 2.0])
    d = Normal(loc, scale)
    f = fb.fisher_information(d)
    assert f.shape == (2, 3, 2, 2)
    for i in range(2):
        for j in range(3):
            one = fb.fisher_information(Normal(loc[i, j], scale[j]))
            assert torch.equal(f[i, j], one)
    q = fb.fisher_information(Binomial(t([5.0, 20.0]), probs=t([0.1, 0.7])), method="quadrature")
    assert q.shape == (2, 1, 1)
    assert_entrywise_close(q, t([[[5 / 0.09]], [[20 / 0.21]]]), 1e-12)


def test_float32_input_gives_float64() -> None:
    f = fb.fisher_information(Normal(torch.tensor(0.0), torch.tensor(3.0)))
    assert f.dtype == torch.float64


# --------------------------------------------------------------------------- reparameterisation


@SETTINGS
@given(probs)
def test_bernoulli_probs_to_logits(p: float) -> None:
    d = Bernoulli(probs=t(p))
    i_p = fb.fisher_information(d)
    jac = t([[p * (1 - p)]])  # dp/d(eta)
    i_eta = fb.reparameterize(i_p, jac)
    assert_entrywise_close(i_eta, fb.fisher_information(d, params="logits"), 1e-9)
    assert_entrywise_close(i_eta, fb.fisher_information(d, params="logits", method="quadrature"), 1e-9)
    # and back: I_p = (d eta / dp)^2 I_eta
    assert_entrywise_close(fb.reparameterize(i_eta, 1 / jac), i_p, 1e-9)


@SETTINGS
@given(st.lists(st.floats(-5, 5), min_size=2, max_size=5))
def test_categorical_probs_to_logits(logits: list[float]) -> None:
    eta = t(logits)
    d = Categorical(logits=eta)
    i_logits = fb.fisher_information(d)
    i_probs = fb.fisher_information(d, params="probs")  # K-1 free probabilities
    jac = torch.autograd.functional.jacobian(lambda e: torch.softmax(e, -1)[:-1], eta)
    assert_entrywise_close(fb.reparameterize(i_probs, jac), i_logits, 1e-9)


@SETTINGS
@given(locs, scales)
def test_normal_scale_log_scale_variance(mu: float, sigma: float) -> None:
    d = Normal(t(mu), t(sigma))
    i_sigma = fb.fisher_information(d, params="scale")
    # sigma = exp(omega): d sigma / d omega = sigma  ->  I_omega = 2, whatever sigma
    i_log = fb.reparameterize(i_sigma, t([[sigma]]))
    assert i_log.item() == pytest.approx(2.0, rel=1e-12)
    # sigma = sqrt(v): d sigma / dv = 1 / (2 sigma)  ->  I_v = 1 / (2 sigma^4)
    i_var = fb.reparameterize(i_sigma, t([[1 / (2 * sigma)]]))
    assert i_var.item() == pytest.approx(1 / (2 * sigma**4), rel=1e-12)
    # the same numbers from the multivariate-normal formula in d = 1, an independent code path
    mvn_var = fb.fisher_information(
        MultivariateNormal(t([mu]), covariance_matrix=t([[sigma**2]])), params="covariance_matrix"
    )
    mvn_sd = fb.fisher_information(
        MultivariateNormal(t([mu]), scale_tril=t([[sigma]])), params="scale_tril"
    )
    assert mvn_var.item() == pytest.approx(i_var.item(), rel=1e-10)
    assert mvn_sd.item() == pytest.approx(i_sigma.item(), rel=1e-10)


def random_cholesky(seed: int, d: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    lower = torch.tril(a, -1) + torch.diag(torch.rand(d, generator=g, dtype=torch.float64) + 0.3)
    return lower


@SETTINGS
@given(st.integers(0, 10_000), st.integers(1, 4))
def test_mvn_parameterisations_related_by_jacobians(seed: int, d: int) -> None:
    lower = random_cholesky(seed, d)
    cov = lower @ lower.mT
    loc = torch.arange(d, dtype=torch.float64)
    i, j = torch.tril_indices(d, d)

    def vech(m: torch.Tensor) -> torch.Tensor:
        return m[i, j]

    def unvech(v: torch.Tensor, symmetric: bool) -> torch.Tensor:
        m = torch.zeros(d, d, dtype=v.dtype).index_put((i, j), v)
        return m + m.mT - torch.diag(torch.diag(m)) if symmetric else m

    i_cov = fb.fisher_information(MultivariateNormal(loc, covariance_matrix=cov))
    i_tril = fb.fisher_information(MultivariateNormal(loc, scale_tril=lower))
    i_prec = fb.fisher_information(MultivariateNormal(loc, precision_matrix=torch.linalg.inv(cov)))
    m = d * (d + 1) // 2
    assert i_cov.shape == (d + m, d + m)
    # vech(Sigma) as a function of vech(L), and of vech(P)
    j_tril = torch.autograd.functional.jacobian(
        lambda v: vech(unvech(v, False) @ unvech(v, False).mT), vech(lower)
    )
    j_prec = torch.autograd.functional.jacobian(
        lambda v: vech(torch.linalg.inv(unvech(v, True))), vech(torch.linalg.inv(cov))
    )
    block = lambda jac: torch.block_diag(torch.eye(d, dtype=torch.float64), jac)  # noqa: E731
    assert_entrywise_close(fb.reparameterize(i_cov, block(j_tril)), i_tril, 1e-9)
    assert_entrywise_close(fb.reparameterize(i_cov, block(j_prec)), i_prec, 1e-8)
    # loc block is the precision matrix
    assert torch.allclose(i_cov[:d, :d], torch.linalg.inv(cov), rtol=1e-10, atol=1e-12)


def test_mvn_diagonal_covariance_decouples_into_normals() -> None:
    # Independent coordinates: the MVN information on (loc_i, Sigma_ii) is the Normal one in
    # (loc, variance); off-diagonal covariance coordinates have 1/(s_i^2 s_j^2) (two entries move).
    sd = t([0.5, 2.0])
    d = MultivariateNormal(t([1.0, -1.0]), covariance_matrix=torch.diag(sd**2))
    f = fb.fisher_information(d)
    assert torch.allclose(torch.diag(f)[:2], 1 / sd**2)
    assert f[2, 2].item() == pytest.approx(1 / (2 * 0.5**4))
    assert f[4, 4].item() == pytest.approx(1 / (2 * 2.0**4))
    assert f[3, 3].item() == pytest.approx(1 / (0.5**2 * 2.0**2))


@SETTINGS
@given(st.floats(1e-3, 1 - 1e-3))
def test_geometric_and_negative_binomial_logits(p: float) -> None:
    for d, jac in (
        (Geometric(probs=t(p)), p * (1 - p)),
        (NegativeBinomial(t(3.0), probs=t(p)), p * (1 - p)),
        (Binomial(7, probs=t(p)), p * (1 - p)),
    ):
        i_p = fb.fisher_information(d)
        i_eta = fb.fisher_information(d, params="logits")
        assert_entrywise_close(fb.reparameterize(i_p, t([[jac]])), i_eta, 1e-9)


# --------------------------------------------------------------------------- additivity


@SETTINGS
@given(st.integers(1, 300), probs)
def test_binomial_is_n_bernoullis(n: int, p: float) -> None:
    one = fb.fisher_information(Bernoulli(t(p)))
    assert_entrywise_close(fb.fisher_information(Binomial(n, t(p)), method="quadrature"), n * one, 1e-9)


@SETTINGS
@given(st.integers(1, 50), log_uniform(1e-2, 1e2))
def test_sums_of_iid_observations(n: int, lam: float) -> None:
    # The sum of n Poisson(lam) is Poisson(n lam); its information about lam is n / lam.
    i_sum = fb.fisher_information(Poisson(t(n * lam)), method="quadrature")
    assert_entrywise_close(fb.reparameterize(i_sum, t([[float(n)]])), n * fb.fisher_information(Poisson(t(lam))), 1e-9)
    # The sum of n Exponential(lam) is Gamma(n, lam); information about the rate is n / lam^2.
    i_rate = fb.fisher_information(Gamma(t(float(n)), t(lam)), params="rate", method="quadrature")
    assert_entrywise_close(i_rate, n * fb.fisher_information(Exponential(t(lam))), 1e-9)


@pytest.mark.parametrize(
    "build",
    [
        lambda th, n: Normal(th[0].expand(n), th[1].expand(n)),
        lambda th, n: Gamma(th[0].expand(n), th[1].expand(n)),
        lambda th, n: Beta(th[0].expand(n), th[1].expand(n)),
    ],
)
def test_n_observations_give_n_times_information(build) -> None:  # noqa: ANN001
    theta = t([1.5, 2.5])
    n = 7
    one = fb.fisher_information(build(theta, 1))[0]
    total = fb.conditional_fisher(lambda th: build(th, n), theta)
    assert_entrywise_close(total, n * one, 1e-12)


# --------------------------------------------------------------------------- registry, names


@pytest.mark.parametrize("cf", CLOSED_FORMS, ids=lambda cf: f"{cf.family.__name__}-{cf.params[-1]}")
def test_every_closed_form_example(cf) -> None:  # noqa: ANN001
    d = cf.example()
    assert type(d) is cf.family
    assert set(cf.params) <= set(fb.parameter_names(d))
    assert find_closed_form(type(d), cf.params) is cf
    f = fb.fisher_information(d, params=cf.params)
    k = len(fb.coordinate_names(d, params=cf.params))
    assert f.shape == (k, k) and f.dtype == torch.float64
    if len(d.event_shape) == 0 or d.support.is_discrete and d.has_enumerate_support:
        assert_entrywise_close(fb.fisher_information(d, params=cf.params, method="quadrature"), f, 1e-9)
    else:  # multivariate continuous and Multinomial: Monte Carlo, 5 standard errors
        est = fb.fisher_information(d, params=cf.params, method="score", n_samples=20_000, generator=7)
        assert ((est.value - f).abs() <= 5 * est.stderr + 1e-12).all()


def test_registry_entries_carry_formulas() -> None:
    for cf in CLOSED_FORMS:
        assert cf.latex and cf.params
        names = _all_names(cf.family, cf.family.arg_constraints)
        assert all(p in names for p in cf.params)


def test_multinomial_and_dirichlet_against_monte_carlo() -> None:
    g = torch.Generator().manual_seed(1)
    for d in (Multinomial(6, t([0.2, 0.3, 0.5])), Dirichlet(t([0.8, 2.0, 3.0]))):
        exact = fb.fisher_information(d)
        est = fb.fisher_information(d, method="score", n_samples=20_000, generator=g)
        assert ((est.value - exact).abs() <= 5 * est.stderr + 1e-12).all()


def test_parameter_names() -> None:
    assert fb.parameter_names(Normal(0.0, 1.0)) == ("loc", "scale")
    assert fb.parameter_names(Beta(1.0, 2.0)) == ("concentration1", "concentration0")
    assert fb.parameter_names(Binomial(5, logits=t(0.0))) == ("logits",)
    assert fb.parameter_names(Multinomial(5, logits=t([0.0, 1.0]))) == ("logits",)
    b = Bernoulli(probs=t(0.3))
    _ = b.logits  # caches the lazy alternative on the object
    assert fb.parameter_names(b) == ("probs",)
    c = Categorical(logits=t([0.0, 1.0]))
    _ = c.probs
    assert fb.parameter_names(c) == ("logits",)
    for kw in ("covariance_matrix", "precision_matrix", "scale_tril"):
        d = MultivariateNormal(t([0.0, 0.0]), **{kw: torch.eye(2, dtype=torch.float64)})
        assert fb.parameter_names(d) == ("loc", kw)
    assert fb.coordinate_names(Dirichlet(t([1.0, 2.0]))) == ("concentration[0]", "concentration[1]")


def test_computing_does_not_mutate_the_distribution() -> None:
    d = MultivariateNormal(t([0.0, 0.0]), scale_tril=torch.eye(2, dtype=torch.float64))
    before = set(d.__dict__)
    fb.fisher_information(d, params=("loc", "covariance_matrix"))
    assert set(d.__dict__) == before
    assert fb.parameter_names(d) == ("loc", "scale_tril")


# --------------------------------------------------------------------------- bad input


def test_invalid_parameter_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="scale"):
        fb.fisher_information(Normal(t(0.0), t(-1.0), validate_args=False))
    with pytest.raises(ValueError, match="probs"):
        fb.fisher_information(Bernoulli(t(1.5), validate_args=False))
    with pytest.raises(ValueError, match="finite"):
        fb.fisher_information(Normal(t(math.nan), t(1.0), validate_args=False))
    with pytest.raises(ValueError, match="infinite"):
        fb.fisher_information(Bernoulli(t(0.0)))
    with pytest.raises(ValueError, match="infinite"):
        fb.fisher_information(Categorical(t([0.0, 0.5, 0.5])))


def test_bad_params_are_rejected() -> None:
    d = Normal(0.0, 1.0)
    with pytest.raises(ValueError, match="unknown parameter 'sigma'"):
        fb.fisher_information(d, params=("sigma",))
    with pytest.raises(ValueError, match="repeated"):
        fb.fisher_information(d, params=("loc", "loc"))
    with pytest.raises(ValueError, match="at least one"):
        fb.fisher_information(d, params=())
    with pytest.raises(TypeError):
        fb.fisher_information(d, params=(1,))
    with pytest.raises(ValueError, match="alternative"):
        fb.fisher_information(Bernoulli(0.3), params=("probs", "logits"))
    with pytest.raises(ValueError, match="fixed"):
        fb.fisher_information(Binomial(3, 0.3), params=("total_count",))
    with pytest.raises(ValueError, match="support"):
        fb.fisher_information(Uniform(0.0, 2.0))
    with pytest.raises(TypeError, match="Distribution"):
        fb.fisher_information("Normal")
    with pytest.raises(TypeError, match="no named constructor parameters"):
        fb.fisher_information(torch.distributions.Independent(Normal(torch.zeros(2), 1.0), 1))
    with pytest.raises(TypeError, match="batch shape"):
        fb.fisher_information(torch.distributions.LogisticNormal(torch.zeros(2), torch.ones(2)))
    with pytest.raises(ValueError, match="method"):
        fb.fisher_information(d, method="exact")


def test_missing_closed_form_suggests_quadrature() -> None:
    with pytest.raises(ValueError, match="quadrature"):
        fb.fisher_information(StudentT(t(3.0)))
    with pytest.raises(ValueError, match="quadrature"):
        fb.fisher_information(torch.distributions.Weibull(t(1.0), t(2.0)))
    # ...and quadrature does handle it
    f = fb.fisher_information(torch.distributions.Weibull(t(1.0), t(2.0)), method="quadrature")
    assert f.shape == (2, 2) and torch.isfinite(f).all()

"""Regression tests for issue 15 in fisherbook.stats and fisherbook.geometry: extreme inputs that used to
return a silently wrong answer or fail with an unclear error, and hypothesis properties over the
full parameter ranges (closed forms PSD at 1e+-300, closed form against quadrature, Fisher-Rao
distance axioms, the reparameterisation identity near the boundary, interval invariants)."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch.distributions import (
    Bernoulli,
    Beta,
    Binomial,
    Categorical,
    Dirichlet,
    Exponential,
    Gamma,
    Geometric,
    Normal,
    Poisson,
    Uniform,
    VonMises,
)

import fisherbook as fb
from fisherbook.errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    NonFiniteError,
    NotPositiveDefiniteError,
    OffManifoldError,
    ShapeError,
    SizeLimitError,
    UnsupportedError,
)
from fisherbook.stats.families import _trigamma_diff

D = torch.float64
EPS = torch.finfo(D).eps


def t(x):
    return torch.tensor(x, dtype=D)


# ----------------------------------------------------------------------------- van Trees


@pytest.mark.parametrize(
    "prior, info",
    [
        (Normal(t(7.0), t(0.1)), 100.0),  # narrow, far from 0: I(pi) = 1/sigma^2
        (Normal(t(100.0), t(1.0)), 1.0),
        (Gamma(t(1e4), t(1e2)), 1e4 / (1e4 - 2)),  # I(pi) = b^2/(a-2) for Gamma(a, rate b)
        (Beta(t(3.0), t(3.0)), 40.0),
        (Normal(t(0.0), t(1e-6)), 1e12),
    ],
)
def test_van_trees_integrates_the_prior_where_its_mass_is(prior, info):
    # the issue's reproducer gave 1.0 for Normal(7, 0.1); the bound is 1 / (1 + 100)
    assert torch.allclose(fb.van_trees(1.0, prior), t(1 / (1 + info)), rtol=1e-7)


def test_van_trees_von_mises_prior_over_one_period():
    # I(pi) of a von Mises(mu, kappa) prior is kappa * I1(kappa) / I0(kappa)
    kappa = 2.0
    info = kappa * float(mpmath.besseli(1, kappa) / mpmath.besseli(0, kappa))
    bound = fb.van_trees(1.0, VonMises(t(0.5), t(kappa)))
    assert abs(float(bound) - 1 / (1 + info)) < 1e-6  # torch's Bessel approximation is good to ~1e-8


@pytest.mark.parametrize(
    "prior",
    [Beta(t(1.0), t(1.0)), Exponential(t(1.0)), Uniform(t(0.0), t(1.0)), Uniform(t(-3.0), t(5.0)), Gamma(t(1.0), t(2.0))],
)
def test_van_trees_refuses_priors_that_do_not_vanish_at_their_ends(prior):
    with pytest.raises(InvalidArgumentError, match="must vanish at the ends of its support"):
        fb.van_trees(1.0, prior)


def test_van_trees_refused_prior_would_give_a_bound_a_constant_estimator_beats():
    """Why the validation matters: a Beta(1, 1) prior and Bernoulli data with n = 1. Quadrature of the
    formula would give I(pi) = 0, a "bound" 1 / (n E[I]) = 1/inf... here E[1/(p(1-p))] diverges,
    so take Normal data: the constant estimator 1/2 has Bayes risk 1/12 under Uniform(0, 1), below
    1 / (n / sigma^2) for sigma = 1, n = 1 (the formula with I(pi) = 0)."""
    assert 1 / 12 < 1 / (1 / 1.0**2)
    with pytest.raises(InvalidArgumentError, match="vanish"):
        fb.van_trees(1.0, Uniform(t(0.0), t(1.0)))


def test_van_trees_infinite_prior_information_is_reported():
    # Beta(1.5, 3) vanishes at 0, but pi'^2/pi ~ x^(a-3) is not integrable for a <= 2
    with pytest.raises(InvalidArgumentError, match="infinite"):
        fb.van_trees(1.0, Beta(t(1.5), t(3.0)))


# ----------------------------------------------------------------------------- Fisher-Rao distance


def test_normal_distance_extreme_scales():
    tiny = fb.fisher_rao_distance(Normal(t(1.0), t(1e-300)), Normal(t(1.0), t(1e-300)))
    assert tiny.item() == 0.0
    far = fb.fisher_rao_distance(Normal(t(0.0), t(1e-80)), Normal(t(0.0), t(1e80)))
    assert math.isclose(far.item(), math.sqrt(2) * math.log(1e160), rel_tol=1e-14)  # about 521
    wide = fb.fisher_rao_distance(Normal(t(-1e308), t(1.0)), Normal(t(1e308), t(1.0)))
    # 2 sqrt2 log(2x) with x = (2e308 / sqrt2) / 2, which is beyond the doubles itself
    assert math.isclose(wide.item(), 2 * math.sqrt(2) * (math.log(1e308) + 0.5 * math.log(2)), rel_tol=1e-14)


def _mp_normal_distance(m1, s1, m2, s2):
    # sqrt2 arccosh(1 + a) = 2 sqrt2 asinh(sqrt(a / 2)), in 50 digits (arccosh near 1 would lose them)
    m1, s1, m2, s2 = (mpmath.mpf(v) for v in (m1, s1, m2, s2))
    a = ((m1 - m2) ** 2 / 2 + (s1 - s2) ** 2) / (2 * s1 * s2)
    return float(2 * mpmath.sqrt(2) * mpmath.asinh(mpmath.sqrt(a / 2)))


scales = st.floats(1e-300, 1e300)
locs = st.floats(-1e300, 1e300)


@settings(max_examples=60, deadline=None)
@given(locs, scales, locs, scales)
def test_normal_distance_matches_high_precision(m1, s1, m2, s2):
    mpmath.mp.dps = 50
    got = fb.fisher_rao_distance(Normal(t(m1), t(s1)), Normal(t(m2), t(s2))).item()
    ref = _mp_normal_distance(m1, s1, m2, s2)
    assert math.isfinite(got)
    assert math.isclose(got, ref, rel_tol=1e-12, abs_tol=1e-300)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(1e-3, 1e3)), min_size=3, max_size=3))
def test_normal_distance_axioms(points):
    d = [Normal(t(m), t(s)) for m, s in points]
    dist = lambda a, b: fb.fisher_rao_distance(a, b).item()  # noqa: E731
    assert dist(d[0], d[0]) == 0.0
    assert math.isclose(dist(d[0], d[1]), dist(d[1], d[0]), rel_tol=1e-12, abs_tol=1e-300)
    assert dist(d[0], d[2]) <= (dist(d[0], d[1]) + dist(d[1], d[2])) * (1 + 1e-12) + 1e-300


probs3 = st.lists(st.floats(1e-6, 1.0), min_size=3, max_size=3).map(lambda v: np.array(v) / sum(v))


@settings(max_examples=40, deadline=None)
@given(probs3, probs3, probs3)
def test_categorical_distance_axioms(p, q, r):
    d = [Categorical(t(list(v))) for v in (p, q, r)]
    dist = lambda a, b: fb.fisher_rao_distance(a, b).item()  # noqa: E731
    assert dist(d[0], d[0]) == 0.0
    assert math.isclose(dist(d[0], d[1]), dist(d[1], d[0]), rel_tol=1e-12, abs_tol=1e-15)
    assert dist(d[0], d[2]) <= dist(d[0], d[1]) + dist(d[1], d[2]) + 1e-12
    assert dist(d[0], d[1]) <= math.pi + 1e-12  # diameter of the sphere of radius 2: pi


# ----------------------------------------------------------------------------- closed forms


def test_closed_form_boundary_is_refused_like_fisher_information():
    for d in (Bernoulli(probs=t(0.0)), Bernoulli(probs=t(1.0)), Binomial(5, probs=t(0.0)), Geometric(probs=t(1.0))):
        with pytest.raises(OffManifoldError, match="infinite"):
            fb.closed_form_fisher(d)
        with pytest.raises(OffManifoldError, match="infinite"):
            fb.fisher_information(d)


def _closed_form(d):
    """The closed form, or None where it is not representable (refused with OffManifoldError)."""
    try:
        return fb.closed_form_fisher(d)
    except OffManifoldError as err:
        assert "infinite" in str(err)
        return None


def _is_psd(F, tol=20):
    F = F.to(D)
    assert torch.equal(F, F.mT)
    eig = torch.linalg.eigvalsh(F)
    return bool((eig >= -tol * EPS * eig.abs().max()).all())


def test_gamma_and_beta_at_extreme_parameters_are_positive_semidefinite():
    # the issue's reproducers: a/b**2 overflowed, psi'(b) - psi'(a+b) cancelled
    g = fb.closed_form_fisher(Gamma(t(1.0), t(1e155)))
    assert g[1, 1].item() == pytest.approx(1e-310, rel=1e-10) and _is_psd(g)
    assert torch.linalg.det(g * 1e155).item() > 0  # det = (psi'(1) - 1) / b^2 > 0
    b = fb.closed_form_fisher(Beta(t(1.0), t(1e16)))
    assert b[1, 1].item() == pytest.approx(1e-32, rel=1e-12)  # psi'(b) - psi'(b + 1) = 1/b^2
    assert _is_psd(b)


@pytest.mark.parametrize("x, y", [(1.0, 1e16), (1e16, 1.0), (1e16, 1e16), (0.3, 1e-10), (25.0, 3.0), (5.0, 7.0), (1e300, 1e300), (1e-5, 2.0)])
def test_trigamma_difference_matches_high_precision(x, y):
    mpmath.mp.dps = 60
    ref = float(mpmath.psi(1, mpmath.mpf(x)) - mpmath.psi(1, mpmath.mpf(x) + mpmath.mpf(y)))
    assert math.isclose(_trigamma_diff(t(x), t(y)).item(), ref, rel_tol=4e-15)


def test_logit_forms_keep_relative_accuracy_near_one():
    for eta in (20.0, 40.0, 700.0):
        q = math.exp(-eta)  # p (1 - p) ~ e^-eta
        ref = q / (1 + q) ** 2
        assert math.isclose(fb.closed_form_fisher(Bernoulli(logits=t(eta)))[0, 0].item(), ref, rel_tol=1e-13)
        assert math.isclose(fb.closed_form_fisher(Binomial(7, logits=t(eta)))[0, 0].item(), 7 * ref, rel_tol=1e-13)
        assert math.isclose(fb.closed_form_fisher(Geometric(logits=t(eta)))[0, 0].item(), q / (1 + q), rel_tol=1e-13)
    F = fb.closed_form_fisher(Categorical(logits=t([40.0, 0.0, 0.0])))
    q = math.exp(-40.0)
    assert math.isclose(F[0, 0].item(), 2 * q, rel_tol=1e-12)  # p1 (1 - p1), 1 - p1 = 2 e^-40 / (1 + 2 e^-40)


positive = st.floats(1e-300, 1e300)
moderate = st.floats(1e-150, 1e150)


@settings(max_examples=60, deadline=None)
@given(moderate, moderate)
def test_gamma_closed_form_is_symmetric_psd_over_the_whole_range(a, b):
    F = _closed_form(Gamma(t(a), t(b)))
    assume(F is not None)
    assert _is_psd(F)


@settings(max_examples=60, deadline=None)
@given(st.floats(1e-100, 1e300), st.floats(1e-100, 1e300))
def test_beta_closed_form_is_symmetric_psd_over_the_whole_range(a, b):
    F = _closed_form(Beta(t(a), t(b)))
    assume(F is not None)
    assert _is_psd(F)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(1e-50, 1e50), min_size=3, max_size=3))
def test_dirichlet_closed_form_is_symmetric_psd(a):
    F = _closed_form(Dirichlet(t(a)))
    assume(F is not None)
    assert _is_psd(F)


@settings(max_examples=60, deadline=None)
@given(st.floats(-1e300, 1e300), positive)
def test_normal_closed_form_at_extremes(loc, scale):
    F = _closed_form(Normal(t(loc), t(scale)))
    assume(F is not None)  # 1/scale^2 overflows below scale ~ 1e-154: inf is refused upstream
    assert F[0, 0].item() == pytest.approx(1 / scale / scale, rel=1e-14)
    assert _is_psd(F)


@settings(max_examples=12, deadline=None)
@given(st.floats(-1e3, 1e3), st.floats(1e-8, 1e6))
def test_normal_closed_form_matches_quadrature_at_any_scale(z, scale):
    # Normal(0, 1e-8) used to be refused with a message about the range of doubles
    d = Normal(t(z * scale), t(scale))
    quad = fb.fisher_information(d, method="quadrature")
    assert torch.allclose(quad, fb.closed_form_fisher(d), rtol=1e-8, atol=1e-8 / scale**2)


@settings(max_examples=10, deadline=None)
@given(st.floats(0.05, 50.0), st.floats(1e-3, 1e3))
def test_gamma_closed_form_matches_quadrature(a, b):
    d = Gamma(t(a), t(b))
    quad = fb.fisher_information(d, method="quadrature")
    cf = fb.closed_form_fisher(d)
    assert torch.allclose(quad, cf, rtol=1e-6, atol=1e-8 * cf.abs().max().item())


def test_quadrature_refuses_a_density_narrower_than_the_doubles_at_its_location():
    with pytest.raises(UnsupportedError, match="too narrow for its location"):
        fb.fisher_information(Normal(t(1e4), t(1e-8)), method="quadrature")


def test_quadrature_of_von_mises_over_one_period():
    kappa = 2.0
    ratio = float(mpmath.besseli(1, kappa) / mpmath.besseli(0, kappa))
    F = fb.fisher_information(VonMises(t(0.3), t(kappa)), method="quadrature")
    # loc: kappa A(kappa); concentration: A'(kappa) = 1 - A/kappa - A^2
    assert abs(F[0, 0].item() - kappa * ratio) < 1e-6
    assert abs(F[1, 1].item() - (1 - ratio / kappa - ratio**2)) < 1e-6
    assert abs(F[0, 1].item()) < 1e-9


@pytest.mark.slow
def test_quadrature_of_a_huge_binomial_sums_where_the_mass_is():
    d = Binomial(10**9, probs=t(0.3))
    # torch's log_prob differences lgamma values of ~2e10, so each pmf is good to ~eps * 2e10 = 4e-6
    assert torch.allclose(fb.fisher_information(d, method="quadrature"), fb.closed_form_fisher(d), rtol=2e-6)


# ----------------------------------------------------------------------------- reparameterisation


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.floats(1e-300, 1e-3), st.floats(0.999, 1.0, exclude_max=True), st.floats(1e-3, 0.999)))
def test_reparameterisation_identity_near_the_boundary(p):
    """I_eta = (dp/deta)^2 I_p for the Bernoulli logit, for p down to 1e-300 and up to 1 - 1e-16.

    For a double p > 1/2, 1 - p is exact, so p (1 - p) and logit(p) are accurate; the logit form
    sigmoid(eta) sigmoid(-eta) must then agree to the conditioning of eta (|eta| eps)."""
    pt = t(p)
    eta = torch.log(pt) - torch.log1p(-pt)
    dp = pt * (1 - pt)
    I_p = _closed_form(Bernoulli(probs=pt))
    assume(I_p is not None)
    via = fb.reparameterize(I_p, dp.reshape(1, 1))
    direct = fb.closed_form_fisher(Bernoulli(logits=eta))
    assert math.isclose(via.item(), direct.item(), rel_tol=1e-12 + 4 * abs(eta.item()) * EPS)


def test_reparameterize_and_crlb_refuse_a_non_symmetric_fisher():
    bad = t([[2.0, 1.0], [0.0, 2.0]])
    with pytest.raises(NotPositiveDefiniteError, match="symmetric"):
        fb.reparameterize(bad, torch.eye(2, dtype=D))
    with pytest.raises(NotPositiveDefiniteError, match="symmetric"):
        fb.crlb(bad)
    # round-off asymmetry is not an error
    ok = t([[2.0, 1.0], [1.0 + 1e-15, 2.0]])
    assert torch.allclose(fb.crlb(ok), torch.linalg.inv(t([[2.0, 1.0], [1.0, 2.0]])))


def test_sandwich_with_no_observations_raises():
    with pytest.raises(ShapeError, match="at least one observation"):
        fb.sandwich_covariance(torch.zeros(0, 2, dtype=D), torch.eye(2, dtype=D))


# ----------------------------------------------------------------------------- intervals


def test_exact_coverage_size_guard():
    with pytest.raises(SizeLimitError, match="split the grid"):
        fb.exact_coverage("poisson", [1000], [1e6], "wald")
    with pytest.raises(SizeLimitError):
        fb.exact_coverage("binomial", [10**7], np.linspace(0.1, 0.9, 9), "wald")


def test_wilson_ends_exactly_at_0_and_1():
    for n in (1, 7, 20, 1000, 10**6):
        lo, hi = fb.binomial_interval(n, n, method="wilson")
        assert hi.item() == 1.0 and lo.item() < 1.0
        lo, hi = fb.binomial_interval(0, n, method="wilson")
        assert lo.item() == 0.0 and hi.item() > 0.0
    lo, _ = fb.poisson_interval(0, 5, method="score")
    assert lo.item() == 0.0


@pytest.mark.parametrize("level", [1 - 1e-10, 1 - 1e-15, np.float32(0.9), np.float64(0.99)])
def test_levels_close_to_one_and_numpy_scalars(level):
    for method in fb.stats.intervals.BINOMIAL_METHODS:
        lo, hi = fb.binomial_interval(3, 10, level=level, method=method)
        assert torch.isfinite(lo) and torch.isfinite(hi) and 0 <= lo <= 0.3 <= hi <= 1
    for method in fb.stats.intervals.POISSON_METHODS:
        lo, hi = fb.poisson_interval(3, 2, level=level, method=method)
        assert torch.isfinite(lo) and torch.isfinite(hi) and 0 <= lo <= 1.5 <= hi
    fit = fb.mle(Poisson, t([1.0, 2.0, 4.0]), init={"rate": 1.0})
    lo, hi = fb.wald_interval(fit, level=level)
    assert torch.isfinite(lo) and torch.isfinite(hi)


def test_score_interval_unbounded_end_is_the_edge_of_the_parameter_space():
    """Normal scale, known mean, one observation: U^2/(nI) -> n/2 = 0.5 < 3.84 as sigma -> inf, so the
    score set is unbounded above (it used to end at the overflow point 1.3e154)."""
    x = t([[0.7]])
    lo, hi = fb.score_interval(Normal, x, "scale", init=1.0, fixed={"loc": 0.0})
    assert hi.item() == math.inf
    assert 0 < lo.item() < 0.7
    # a bounded case is unchanged: the same data with n = 20 crosses on both sides
    g = torch.Generator().manual_seed(0)
    x20 = torch.randn(1, 20, generator=g, dtype=D)
    lo, hi = fb.score_interval(Normal, x20, "scale", init=1.0, fixed={"loc": 0.0})
    assert math.isfinite(hi.item()) and lo.item() < hi.item()


counts = st.integers(0, 200)


@settings(max_examples=60, deadline=None)
@given(counts, st.integers(1, 200), st.floats(0.5, 0.999), st.floats(0.0, 0.4))
def test_binomial_interval_invariants(x, n, level, extra):
    assume(x <= n)
    p = x / n
    higher = min(level + extra, 1 - 1e-12)
    for method in fb.stats.intervals.BINOMIAL_METHODS:
        lo, hi = fb.binomial_interval(x, n, level=level, method=method)
        lo2, hi2 = fb.binomial_interval(x, n, level=higher, method=method)
        assert 0 <= lo.item() <= hi.item() <= 1
        if method not in ("agresti-coull",):  # Agresti-Coull is centred at p~, not p^
            assert lo.item() <= p + 1e-12 and p - 1e-12 <= hi.item()
        # nested in the level
        assert lo2.item() <= lo.item() + 1e-12 and hi.item() <= hi2.item() + 1e-12


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 500), st.integers(1, 50), st.floats(0.5, 0.999), st.floats(0.0, 0.4))
def test_poisson_interval_invariants(total, n, level, extra):
    lam = total / n
    higher = min(level + extra, 1 - 1e-12)
    for method in fb.stats.intervals.POISSON_METHODS:
        lo, hi = fb.poisson_interval(total, n, level=level, method=method)
        lo2, hi2 = fb.poisson_interval(total, n, level=higher, method=method)
        assert 0 <= lo.item() <= lam + 1e-12 and lam - 1e-12 <= hi.item()
        assert lo2.item() <= lo.item() + 1e-12 and hi.item() <= hi2.item() * (1 + 1e-12)


@pytest.mark.slow
@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=2, max_size=8), st.floats(0.5, 0.99))
def test_likelihood_intervals_contain_the_mle_and_nest(xs, level):
    x = t([float(v) for v in xs])
    assume(x.sum() > 0)
    fit = fb.mle(Poisson, x, init={"rate": 1.0})
    est = fit.theta[..., 0].item()
    for fn in (fb.score_interval, fb.lr_interval):
        lo, hi = fn(Poisson, x, "rate", init=1.0, level=level)
        lo2, hi2 = fn(Poisson, x, "rate", init=1.0, level=min(level + 0.009, 0.999))
        assert lo.item() <= est <= hi.item()
        assert lo2.item() <= lo.item() * (1 + 1e-9) and hi.item() <= hi2.item() * (1 + 1e-9)


# ----------------------------------------------------------------------------- chapter 2: higher-order bounds, shrinkage


@settings(max_examples=25, deadline=None)
@given(st.floats(-1e150, 1e150), st.integers(1, 10**12), st.floats(1e-100, 1e100))
def test_hodges_risk_finite_and_between_its_limits(theta, n, sigma):
    # (|theta| up to 1e150 so that theta^2, the risk of always answering 0, is a double)
    r = float(fb.hodges_risk(theta, n, sigma))
    assert math.isfinite(r) and r >= 0
    # never worse than zeroing always (theta^2) plus the sample mean's risk
    assert r <= (theta * theta + sigma * sigma / n) * (1 + 1e-9) + 1e-300


@settings(max_examples=20, deadline=None)
@given(st.integers(3, 10**6), st.floats(0.0, 1e12))
def test_james_stein_risk_in_range_at_extremes(d, norm):
    r = float(fb.james_stein_risk(norm, d))
    assert math.isfinite(r)
    assert 2.0 * (1 - 1e-9) <= r <= d * (1 + 1e-12)


@settings(max_examples=15, deadline=None)
@given(st.floats(1e-8, 1e8), st.integers(3, 10**5))
def test_bhattacharyya_exponential_rate_extreme_scales(lam, n):
    fam = lambda r: Gamma(t(float(n)), r)  # noqa: E731
    b1 = float(fb.bhattacharyya_bound(fam, lam, 1))
    b2 = float(fb.bhattacharyya_bound(fam, lam, 2))
    assert math.isclose(b1, lam**2 / n, rel_tol=1e-7)
    assert math.isclose(b2, lam**2 * (n + 3) / (n * (n + 1)), rel_tol=1e-6)


def test_chi_square_and_hcr_bad_support():
    # a family whose support moves out of p_theta's: chi^2 = inf, and such shifts contribute 0 to the bound
    assert math.isinf(float(fb.chi_square_divergence(Uniform(t(-1.0), t(1.0)), Uniform(t(0.0), t(1.0)))))
    b = fb.hcr_bound(lambda th: Uniform(t(0.0), th), 1.0, n=3, shifts=t([0.1, 0.2]))  # only shifts up: all infinite
    assert float(b) == 0.0


def test_bhattacharyya_bound_singular_matrix():
    # an order above what the family's derivatives can span: r_1, r_2 dependent for a "family" constant in theta
    with pytest.raises(NotPositiveDefiniteError, match="Bhattacharyya"):
        fb.bhattacharyya_bound(lambda m: Normal(0.0 * m, t(1.0)), 0.5, 2)
# ----------------------------------------------------------------------------- issue 18, chapter 1:
# coarsened observations, efficient information, Louis's formula, Bartlett moments
def _louis_ok(th):
    return torch.stack([torch.log(th[0]) - th[0] * t([0.5, 1.0])], -1)
ISSUE18_CASES = [
    ("binned_information", "edges not increasing", lambda: fb.binned_information(Normal(t(0.0), t(1.0)), [1.0, 0.0]),
     InvalidArgumentError, ["edges", "strictly increasing"]),
    ("binned_information", "edges 2-D", lambda: fb.binned_information(Normal(t(0.0), t(1.0)), [[0.0]]),
     ShapeError, ["edges", "1 dimension"]),
    ("binned_information", "nan edge", lambda: fb.binned_information(Normal(t(0.0), t(1.0)), [0.0, float("nan")]),
     NonFiniteError, ["edges", "finite"]),
    ("binned_information", "batched dist", lambda: fb.binned_information(Normal(t([0.0, 1.0]), t(1.0)), [0.0]),
     ShapeError, ["dist", "batch shape (2,)"]),
    ("binned_information", "discrete dist", lambda: fb.binned_information(Poisson(t(2.0)), [1.0]),
     UnsupportedError, ["discrete"]),
    ("binned_information", "no differentiable cdf", lambda: fb.binned_information(Gamma(t(2.0), t(1.0)), [1.0]),
     UnsupportedError, ["cdf", "Gamma"]),
    ("binned_information", "not a distribution", lambda: fb.binned_information(3.0, [1.0]),
     ArgumentTypeError, ["dist", "float"]),
    ("censored_information", "limit outside support", lambda: fb.censored_information(Exponential(t(1.0)), -1.0),
     InvalidArgumentError, ["limit", "support"]),
    ("censored_information", "limit censors nothing", lambda: fb.censored_information(Normal(t(0.0), t(1.0)), 40.0),
     InvalidArgumentError, ["limit", "no probability"]),
    ("censored_information", "limit inf", lambda: fb.censored_information(Normal(t(0.0), t(1.0)), float("inf")),
     NonFiniteError, ["limit", "finite"]),
    ("censored_information", "limit a string", lambda: fb.censored_information(Normal(t(0.0), t(1.0)), "1"),
     ArgumentTypeError, ["limit", "str"]),
    ("censored_information", "unknown param", lambda: fb.censored_information(Normal(t(0.0), t(1.0)), 1.0, "rate"),
     InvalidArgumentError, ["params", "rate"]),
    ("efficient_information", "not symmetric", lambda: fb.efficient_information(t([[1.0, 0.5], [0.0, 1.0]]), 0),
     NotPositiveDefiniteError, ["info", "symmetric"]),
    ("efficient_information", "indefinite", lambda: fb.efficient_information(t([[1.0, 2.0], [2.0, 1.0]]), 0),
     NotPositiveDefiniteError, ["info", "positive semi-definite"]),
    ("efficient_information", "singular nuisance", lambda: fb.efficient_information(t([[1.0, 0.0], [0.0, 0.0]]), 0),
     NotPositiveDefiniteError, ["nuisance block", "[1]"]),
    ("efficient_information", "index out of range", lambda: fb.efficient_information(torch.eye(2, dtype=D), 2),
     InvalidArgumentError, ["interest", "[-2, 1]"]),
    ("efficient_information", "repeated index", lambda: fb.efficient_information(torch.eye(3, dtype=D), [0, 0]),
     InvalidArgumentError, ["interest", "repeat"]),
    ("efficient_information", "empty interest", lambda: fb.efficient_information(torch.eye(3, dtype=D), []),
     InvalidArgumentError, ["interest", "at least one"]),
    ("efficient_information", "float index", lambda: fb.efficient_information(torch.eye(3, dtype=D), [0.5]),
     ArgumentTypeError, ["interest", "integer"]),
    ("efficient_information", "string interest", lambda: fb.efficient_information(torch.eye(3, dtype=D), "a"),
     ArgumentTypeError, ["interest", "str"]),
    ("efficient_information", "vector info", lambda: fb.efficient_information(t([1.0, 2.0]), 0),
     ShapeError, ["info", "square"]),
    ("efficient_information", "nan info", lambda: fb.efficient_information(t([[float("nan"), 0.0], [0.0, 1.0]]), 0),
     NonFiniteError, ["info", "finite"]),
    ("louis_information", "not callable", lambda: fb.louis_information(3.0, t([1.0])),
     ArgumentTypeError, ["complete_loglik", "callable"]),
    ("louis_information", "theta 2-D", lambda: fb.louis_information(_louis_ok, t([[1.0]])),
     ShapeError, ["theta", "1 dimension"]),
    ("louis_information", "loglik 1-D", lambda: fb.louis_information(lambda th: th[0] * t([1.0, 2.0]), t([1.0])),
     ShapeError, ["complete_loglik", "(n, m)"]),
    ("louis_information", "weights shape", lambda: fb.louis_information(_louis_ok, t([1.0]), t([[1.0, 0.0]])),
     ShapeError, ["weights", "(2, 1)"]),
    ("louis_information", "negative weights", lambda: fb.louis_information(
        lambda th: torch.stack([th[0] * t([1.0]), th[0] * t([2.0])], -1), t([1.0]), t([[1.5, -0.5]])),
     InvalidArgumentError, ["weights", "non-negative"]),
    ("louis_information", "rows not summing to 1", lambda: fb.louis_information(
        lambda th: torch.stack([th[0] * t([1.0]), th[0] * t([2.0])], -1), t([1.0]), t([[0.5, 0.4]])),
     InvalidArgumentError, ["weights", "sum to 1"]),
    ("louis_information", "nan theta", lambda: fb.louis_information(_louis_ok, t([float("nan")])),
     NonFiniteError, ["theta", "finite"]),
    ("louis_information", "non-finite loglik", lambda: fb.louis_information(_louis_ok, t([-1.0])),
     NonFiniteError, ["complete_loglik(theta)", "finite"]),
    ("bartlett_moments", "two parameters", lambda: fb.bartlett_moments(Normal(t(0.0), t(1.0))),
     InvalidArgumentError, ["param", "one scalar parameter"]),
    ("bartlett_moments", "discrete", lambda: fb.bartlett_moments(Poisson(t(2.0)), "rate"),
     UnsupportedError, ["discrete"]),
    ("bartlett_moments", "support-dependent", lambda: fb.bartlett_moments(Uniform(t(0.0), t(1.0)), "high"),
     UnsupportedError, ["support", "Uniform"]),
    ("bartlett_moments", "batched", lambda: fb.bartlett_moments(Normal(t([0.0, 1.0]), t(1.0)), "loc"),
     ShapeError, ["dist", "batch shape (2,)"]),
    ("bartlett_moments", "unknown param", lambda: fb.bartlett_moments(Normal(t(0.0), t(1.0)), "rate"),
     InvalidArgumentError, ["params", "rate"]),
]
@pytest.mark.parametrize("name, case, call, error, words", ISSUE18_CASES, ids=[f"{c[0]}: {c[1]}" for c in ISSUE18_CASES])
def test_issue18_bad_input_raises_a_named_error(name, case, call, error, words):
    from fisherbook.errors import FisherbookError
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, FisherbookError)
    for word in words:
        assert word in str(info.value), f"{word!r} not in message {str(info.value)!r}"
def test_issue18_every_new_public_callable_has_a_bad_input_case():
    new = {"binned_information", "censored_information", "efficient_information", "louis_information",
           "bartlett_moments"}
    assert new <= set(fb.stats.__all__)
    assert new == {c[0] for c in ISSUE18_CASES}


# ----------------------------------------------------------------------------- issue 19: graduate information geometry
# (public name, call, error type, words the message must contain); every public name of the new geometry
# modules (and the two new dualflat functions) needs a case.

from fisherbook.errors import ArgumentTypeError  # noqa: E402
from fisherbook.geometry import connections as _connections  # noqa: E402
from fisherbook.geometry import divergences as _divergences  # noqa: E402
from fisherbook.geometry import em as _em  # noqa: E402
from fisherbook.geometry import gaussian_spd as _gaussian_spd  # noqa: E402

_NODES = torch.linspace(-5.0, 5.0, 11, dtype=D)  # far too coarse and narrow for N(0, 0.1): mass != 1
_normal = lambda th: Normal(th[0], th[1])  # noqa: E731
_G2 = lambda th: torch.diag(torch.stack([1 / th[1] ** 2, 2 / th[1] ** 2]))  # noqa: E731

GEOMETRY_CASES = [
    ("alpha_connection", lambda: fb.alpha_connection(_normal, [0.0, 0.1], 0.0, _NODES), InvalidArgumentError,
     ["integrate", "not 1"]),
    ("alpha_connection", lambda: fb.alpha_connection(_normal, [0.0, 1.0], "e", _NODES), ArgumentTypeError, ["alpha"]),
    ("amari_chentsov_tensor", lambda: fb.amari_chentsov_tensor(_normal, [[0.0, 1.0]], _NODES), ShapeError, ["theta"]),
    ("amari_chentsov_tensor", lambda: fb.amari_chentsov_tensor(3.0, [0.0, 1.0], _NODES), ArgumentTypeError, ["model"]),
    ("amari_chentsov_tensor",
     lambda: fb.amari_chentsov_tensor(_normal, [0.0, 1.0], _NODES, torch.ones(3, dtype=D)), ShapeError, ["weights"]),
    ("levi_civita_lowered", lambda: fb.levi_civita_lowered(lambda th: torch.eye(3, dtype=D) * th.sum(), [0.0, 1.0]),
     ShapeError, ["metric"]),
    ("levi_civita_lowered", lambda: fb.levi_civita_lowered(_G2, [0.0, float("nan")]), InvalidArgumentError, ["theta"]),
    ("exponential_family_tensor", lambda: fb.exponential_family_tensor(Normal, [0.0, 1.0]), OffManifoldError,
     ["natural parameter space"]),
    ("exponential_family_tensor", lambda: fb.exponential_family_tensor(Uniform, [0.0, 1.0]), ArgumentTypeError,
     ["Uniform"]),
    ("riemann_tensor", lambda: fb.riemann_tensor(lambda th: torch.zeros(2, 2, dtype=D) * th.sum(), [0.0, 1.0]),
     ShapeError, ["connection"]),
    ("gaussian_curvature", lambda: fb.gaussian_curvature(_G2, [0.0, 1.0, 2.0]), ShapeError, ["two-dimensional"]),
    ("gaussian_curvature", lambda: fb.gaussian_curvature(_G2, [0.0, 1.0], method="gauss"), InvalidArgumentError,
     ["method"]),
    ("gaussian_curvature", lambda: fb.gaussian_curvature(lambda th: -_G2(th), [0.0, 1.0]), OffManifoldError,
     ["positive definite"]),
    ("alpha_divergence", lambda: fb.alpha_divergence(Normal(t(0.0), t(1.0)), Normal(t(0.0), t(3.0)), 3.0),
     InvalidArgumentError, ["infinite"]),
    ("alpha_divergence", lambda: fb.alpha_divergence(Normal(t(0.0), t(1.0)), Poisson(t(1.0)), 0.0), ArgumentTypeError,
     ["same family"]),
    ("alpha_divergence", lambda: fb.alpha_divergence(Uniform(t(0.0), t(1.0)), Uniform(t(0.0), t(2.0)), 0.0),
     ArgumentTypeError, ["nodes"]),
    ("alpha_divergence", lambda: fb.alpha_divergence(Normal(t(0.0), t(1.0)), Normal(t(1.0), t(1.0)), 0.5, x=_NODES[:3]),
     InvalidArgumentError, ["integrate", "not 1"]),
    ("spd_fisher_distance", lambda: fb.spd_fisher_distance([[1.0, 0.0], [0.0, -1.0]], torch.eye(2)), OffManifoldError,
     ["cov1", "positive definite"]),
    ("spd_fisher_distance", lambda: fb.spd_fisher_distance([[1.0, 0.5], [0.0, 1.0]], torch.eye(2)), OffManifoldError,
     ["symmetric"]),
    ("spd_fisher_distance", lambda: fb.spd_fisher_distance(torch.eye(2), torch.eye(3)), ShapeError, ["size"]),
    ("spd_geodesic", lambda: fb.spd_geodesic(torch.eye(2), torch.eye(2), [float("inf")]), InvalidArgumentError, ["t"]),
    ("spd_geodesic", lambda: fb.spd_geodesic(torch.eye(2), [1.0, 2.0], [0.5]), ShapeError, ["cov2"]),
    ("mvn_fisher_metric", lambda: fb.mvn_fisher_metric(0), InvalidArgumentError, ["k"]),
    ("mvn_fisher_metric", lambda: fb.mvn_fisher_metric(2)(t([0.0, 0.0, 1.0, 2.0, 1.0])), OffManifoldError,
     ["positive definite"]),
    ("mvn_coordinates", lambda: fb.mvn_coordinates([0.0], torch.eye(2)), ShapeError, ["mean"]),
    ("mvn_from_coordinates", lambda: fb.mvn_from_coordinates([0.0, 1.0, 2.0], 2), ShapeError, ["last dimension 5"]),
    ("gaussian_mixture_em", lambda: fb.gaussian_mixture_em(t([0.0, 1.0, 2.0]), [0.5, 0.6], [0.0, 1.0], [1.0, 1.0]),
     InvalidArgumentError, ["weights", "sum to 1"]),
    ("gaussian_mixture_em", lambda: fb.gaussian_mixture_em(t([0.0, 1.0, 2.0]), [0.5, 0.5], [0.0, 1.0], [1.0, 0.0]),
     InvalidArgumentError, ["scales"]),
    ("gaussian_mixture_em", lambda: fb.gaussian_mixture_em(t([0.0, 1.0, 2.0]), [0.5, 0.5], [0.0], [1.0, 1.0]),
     ShapeError, ["same shape"]),
    ("gaussian_mixture_em",
     lambda: fb.gaussian_mixture_em(t([0.0, 1.0, 2.0]), [0.5, 0.5], [0.0, 1.0], [1.0, 1.0], method="gd"),
     InvalidArgumentError, ["method"]),
    ("MixtureTrace", lambda: fb.gaussian_mixture_em(t([0.0]), [1.0], [0.0], [1.0]), ShapeError, ["at least 2"]),
    ("e_projection", lambda: fb.e_projection(t([0.5, 0.5, 0.0]), torch.arange(3.0), 1.0), OffManifoldError,
     ["strictly positive"]),
    ("e_projection", lambda: fb.e_projection(t([0.2, 0.3, 0.5]), torch.arange(3.0), 2.0), InvalidArgumentError,
     ["boundary"]),
    ("e_projection", lambda: fb.e_projection(t([0.2, 0.3, 0.5]), torch.arange(3.0), [1.0, 2.0]), ShapeError,
     ["target"]),
    ("canonical_divergence", lambda: fb.canonical_divergence(Normal(t(0.0), t(1.0)), Poisson(t(1.0))),
     ArgumentTypeError, ["same family"]),
    ("canonical_divergence", lambda: fb.canonical_divergence(Binomial(3, t(0.2)), Binomial(4, t(0.2))),
     InvalidArgumentError, ["total_count"]),
]


@pytest.mark.parametrize("name, call, error, words", GEOMETRY_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(GEOMETRY_CASES)])
def test_graduate_geometry_bad_input(name, call, error, words):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, f"{name}: {word!r} not in {message!r}"


def test_every_new_geometry_name_has_a_bad_input_case():
    names = (set(_connections.__all__) | set(_divergences.__all__) | set(_em.__all__) | set(_gaussian_spd.__all__)
             | {"e_projection", "canonical_divergence"})
    missing = names - {c[0] for c in GEOMETRY_CASES}
    assert not missing, f"public names without a bad-input case: {sorted(missing)}"


# ----------------------------------------------------------------------------- chapter 3 (issue 18): tests,
# asymptotics, profile likelihood, criteria

_X3 = t([0.5, 1.0, 1.5, 3.0])


CHAPTER3_CASES = [
    (lambda: fb.likelihood_tests(Exponential, _X3, {}, {"rate": 1.0}), InvalidArgumentError, "null"),
    (lambda: fb.likelihood_tests(Exponential, _X3, {"scale": 1.0}, {"rate": 1.0}), InvalidArgumentError, "not estimated"),
    (lambda: fb.likelihood_tests(Exponential, _X3, {"rate": -1.0}, {"rate": 1.0}), InvalidArgumentError, "constraint"),
    (lambda: fb.likelihood_tests(Exponential, _X3, {"rate": math.nan}, {"rate": 1.0}), InvalidArgumentError, "finite"),
    (lambda: fb.likelihood_tests(Exponential, _X3, {"rate": 1.0}, {"rate": 1.0}, information="fisher"),
     InvalidArgumentError, "information"),
    (lambda: fb.likelihood_tests(lambda rate: Exponential(rate), _X3, {"rate": 1.0}, {"rate": 1.0},
                                 constraints={"rate": torch.distributions.constraints.positive}),
     InvalidArgumentError, "expected"),
    (lambda: fb.likelihood_tests(Exponential, _X3, {"rate": 1.0}, {"rate": 1.0}).pvalue("t"), InvalidArgumentError, "statistic"),
    (lambda: fb.likelihood_tests(Exponential, _X3, {"rate": 1.0}, {"rate": 1.0}).pvalue(bartlett=0.0),
     InvalidArgumentError, "positive"),
    (lambda: fb.lr_statistic(Exponential, _X3, {"rate": 1.0}, {}), InvalidArgumentError, "init"),
    (lambda: fb.bartlett_factor("poisson-rate", 10), InvalidArgumentError, "model"),
    (lambda: fb.bartlett_factor("exponential-rate", 0), InvalidArgumentError, "n"),
    (lambda: fb.bartlett_factor("exponential-rate", 2.5), TypeError, "n"),
    (lambda: fb.bartlett_factor_mc(Exponential, {"rate": 1.0}, 5, reps=1, generator=torch.Generator()),
     InvalidArgumentError, "reps"),
    (lambda: fb.bartlett_factor_mc(Exponential, {"rate": 1.0}, 5, reps=10, generator=0), TypeError, "generator"),
    (lambda: fb.bartlett_factor_mc(Exponential, {"rate": 1.0}, 5, reps=10, generator=torch.Generator(), null=["x"]),
     InvalidArgumentError, "null"),
    (lambda: fb.chibar2_sf(-1.0, (0.5, 0.5)), InvalidArgumentError, "non-negative"),
    (lambda: fb.chibar2_sf(1.0, (0.5, 0.6)), InvalidArgumentError, "summing to 1"),
    (lambda: fb.chibar2_sf(1.0, (1.0,)), InvalidArgumentError, "at least two"),
    (lambda: fb.delta_method(torch.log, t([1.0, 2.0]), t([[1.0]])), ShapeError, "covariance"),
    (lambda: fb.delta_method(3.0, t([1.0]), t([[1.0]])), TypeError, "fn"),
    (lambda: fb.delta_method(torch.sqrt, t([0.0]), t([[1.0]])), InvalidArgumentError, "differentiable"),
    (lambda: fb.stabilised_interval("gamma", _X3), InvalidArgumentError, "family"),
    (lambda: fb.stabilised_interval("poisson", t([1.5, 2.0])), InvalidArgumentError, "counts"),
    (lambda: fb.stabilised_interval("bernoulli", t([0.0, 2.0])), InvalidArgumentError, "0/1"),
    (lambda: fb.stabilised_interval("exponential", t([0.0, 2.0])), InvalidArgumentError, "positive"),
    (lambda: fb.stabilised_interval("exponential", t(2.0)), ShapeError, "x"),
    (lambda: fb.stabilised_interval("exponential", _X3, level=1.0), InvalidArgumentError, "level"),
    (lambda: fb.one_step(Exponential, _X3, {"rate": 1.0}, method="bfgs"), InvalidArgumentError, "method"),
    (lambda: fb.one_step(Exponential, _X3, {"rate": 1.0}, steps=0), InvalidArgumentError, "steps"),
    (lambda: fb.one_step(Exponential, _X3, {}), InvalidArgumentError, "init"),
    (lambda: fb.one_step(Exponential, _X3, {"rate": -1.0}), InvalidArgumentError, "non-finite"),
    (lambda: fb.one_step(lambda loc: Normal(loc, 1.0), _X3, {"loc": 0.0}, method="scoring"), InvalidArgumentError, "class"),
    (lambda: fb.profile_loglik(Normal, _X3, "loc", [0.0], {"loc": 0.0}), InvalidArgumentError, "nuisance"),
    (lambda: fb.profile_loglik(Normal, _X3, "rate", [0.0], {"loc": 0.0, "scale": 1.0}), InvalidArgumentError, "init"),
    (lambda: fb.profile_loglik(Normal, _X3, "loc", [[0.0]], {"loc": 0.0, "scale": 1.0}), ShapeError, "values"),
    (lambda: fb.profile_interval(Normal, _X3, "loc", {"loc": 0.0, "scale": 1.0}, level=0.0), InvalidArgumentError, "level"),
    (lambda: fb.reml_variance(t([1.0, 2.0])), ShapeError, "groups"),
    (lambda: fb.reml_variance(t([[1.0], [2.0]])), ShapeError, "k >= 2"),
    (lambda: fb.reml_variance(t([[1.0, math.inf]])), InvalidArgumentError, "finite"),
    (lambda: fb.aic("fit"), TypeError, "MLEResult"),
    (lambda: fb.tic(None), TypeError, "MLEResult"),
    (lambda: fb.tic_penalty(3), TypeError, "MLEResult"),
    (lambda: fb.variance_component_lr(t([1.0, 2.0])), ShapeError, "groups"),
    (lambda: fb.variance_component_lr(t([[1.0, 2.0]])), ShapeError, "m >= 2"),
    (lambda: fb.variance_component_lr(t([[1.0], [2.0]])), ShapeError, "k >= 2"),
    (lambda: fb.variance_component_lr(t([[1.0, math.nan], [0.0, 1.0]])), InvalidArgumentError, "finite"),
    (lambda: fb.variance_component_lr(t([[1.0, 1.0], [2.0, 2.0]])), InvalidArgumentError, "within"),
    (lambda: fb.variance_component_lr(t([[1.0, 2.0], [0.0, 1.0]]), method="reml2"), InvalidArgumentError, "method"),
]


@pytest.mark.parametrize(
    "call, error, match",
    CHAPTER3_CASES,
)
def test_chapter3_inference_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()

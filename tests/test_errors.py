"""The error vocabulary, applied: a table of bad inputs for every public name of fisherbook.stats and
fisherbook.geometry.

Each case is (public name, the call, the expected fisherbook.errors class, words the message must
contain). The classes follow the rule of fisherbook.errors: ArgumentTypeError (a TypeError) for an
argument of a type the function does not take at all, InvalidArgumentError (a ValueError) and its
subclasses for an accepted type with a value outside what is allowed. A new public function
without a case here fails ``test_every_public_name_has_a_case``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Bernoulli, Beta, Binomial, Categorical, Exponential, Gamma, Normal, Poisson, StudentT

import fisherbook.geometry as geometry
import fisherbook.stats as stats
from fisherbook import errors
from fisherbook.errors import (
    ArgumentTypeError,
    FisherbookError,
    InvalidArgumentError,
    NonFiniteError,
    NotPositiveDefiniteError,
    OffManifoldError,
    ShapeError,
    SizeLimitError,
    UnsupportedError,
)

D = torch.float64


def t(x):
    return torch.tensor(x, dtype=D)


def _fit():
    return stats.mle(Poisson, t([1.0, 2.0, 4.0]), init={"rate": 1.0})


def _metric(theta):
    return torch.diag_embed(torch.stack([1 / theta[..., 1] ** 2, 2 / theta[..., 1] ** 2], -1))


_NONSYM = t([[1.0, 0.5], [0.0, 1.0]])

CASES = [
    # ---------------------------------------------------------------- stats: families / estimators
    ("closed_form_fisher", lambda: stats.closed_form_fisher("normal"), ArgumentTypeError, ["dist", "Distribution"]),
    ("closed_form_fisher", lambda: stats.closed_form_fisher(Bernoulli(probs=t(0.0))), OffManifoldError, ["infinite", "probs"]),
    ("closed_form_fisher", lambda: stats.closed_form_fisher(StudentT(t(3.0)), params="df"), UnsupportedError, ["quadrature"]),
    ("fisher_information", lambda: stats.fisher_information(Normal(t(0.0), t(1.0)), method="exact"), InvalidArgumentError, ["method", "quadrature"]),
    ("fisher_information", lambda: stats.fisher_information(Normal(t(0.0), t(1.0)), method="score", n_samples=1), InvalidArgumentError, ["n_samples", "2"]),
    ("fisher_information", lambda: stats.fisher_information(Normal(t(0.0), t(1.0)), method="score", n_samples=2.5), ArgumentTypeError, ["n_samples"]),
    ("fisher_information", lambda: stats.fisher_information(Bernoulli(probs=t(1.0))), OffManifoldError, ["infinite"]),
    ("fisher_information", lambda: stats.fisher_information(Normal(t(0.0), t(1.0)), params="rate"), InvalidArgumentError, ["params", "rate", "loc"]),
    ("score", lambda: stats.score(Normal(t(0.0), t(1.0)), t([float("nan")])), NonFiniteError, ["x", "finite"]),
    ("score", lambda: stats.score(Normal(t(0.0), t(1.0)), "abc"), ArgumentTypeError, ["x"]),
    ("score", lambda: stats.score(Poisson(t(1.0)), t([0.5])), InvalidArgumentError, ["support"]),
    ("parameter_names", lambda: stats.parameter_names(3.0), ArgumentTypeError, ["dist"]),
    ("coordinate_names", lambda: stats.coordinate_names(Normal(t(0.0), t(1.0)), params=["loc", "loc"]), InvalidArgumentError, ["repeated"]),
    ("coordinate_names", lambda: stats.coordinate_names(Normal(t(0.0), t(1.0)), params=[1]), ArgumentTypeError, ["params"]),
    ("observed_information", lambda: stats.observed_information("f", t([1.0])), ArgumentTypeError, ["log_lik"]),
    ("observed_information", lambda: stats.observed_information(lambda th: th.sum(), t([[1.0]])), ShapeError, ["theta", "1-D"]),
    ("empirical_fisher", lambda: stats.empirical_fisher(lambda th: th.sum(), t([1.0])), ShapeError, ["1-D", "per-example"]),
    ("empirical_fisher", lambda: stats.empirical_fisher(3, t([1.0])), ArgumentTypeError, ["log_lik"]),
    ("empirical_fisher", lambda: stats.empirical_fisher(Normal(t(0.0), t(1.0)), t([])), ShapeError, ["at least one"]),
    ("empirical_fisher", lambda: stats.empirical_fisher(lambda th: th[:0], t([1.0])), ShapeError, ["at least one"]),
    ("reparameterize", lambda: stats.reparameterize(_NONSYM, torch.eye(2, dtype=D)), NotPositiveDefiniteError, ["fisher", "symmetric"]),
    ("reparameterize", lambda: stats.reparameterize([[1.0]], torch.eye(1, dtype=D)), ArgumentTypeError, ["fisher", "Tensor"]),
    ("reparameterize", lambda: stats.reparameterize(torch.eye(2, dtype=D), torch.eye(3, dtype=D)), ShapeError, ["jacobian"]),
    ("conditional_fisher", lambda: stats.conditional_fisher(3, t([1.0])), ArgumentTypeError, ["model", "callable"]),
    ("conditional_fisher", lambda: stats.conditional_fisher(lambda th: Normal(th, t(1.0)), t([1.0]), reduction="max"), InvalidArgumentError, ["reduction", "sum"]),
    # ---------------------------------------------------------------- stats: bounds
    ("crlb", lambda: stats.crlb(_NONSYM), NotPositiveDefiniteError, ["fisher", "symmetric"]),
    ("crlb", lambda: stats.crlb(t([[1.0, 1.0], [1.0, 1.0]])), NotPositiveDefiniteError, ["singular"]),
    ("crlb", lambda: stats.crlb(1.0, n=0), InvalidArgumentError, ["n", ">= 1"]),
    ("crlb", lambda: stats.crlb(1.0, n=2.5), ArgumentTypeError, ["n", "integer"]),
    ("crlb", lambda: stats.crlb("one"), ArgumentTypeError, ["fisher"]),
    ("crlb", lambda: stats.crlb(torch.eye(2, dtype=D), grad_g=t([1.0, 2.0, 3.0])), ShapeError, ["grad_g"]),
    ("van_trees", lambda: stats.van_trees(1.0, Beta(t(1.0), t(1.0))), InvalidArgumentError, ["vanish", "ends", "Beta"]),
    ("van_trees", lambda: stats.van_trees(1.0, Exponential(t(1.0))), InvalidArgumentError, ["vanish", "Exponential"]),
    ("van_trees", lambda: stats.van_trees(lambda th: 1.0 + 0 * th, 1.0), ArgumentTypeError, ["prior", "Distribution"]),
    ("van_trees", lambda: stats.van_trees(1.0, Normal(t([0.0, 1.0]), t(1.0))), ShapeError, ["prior", "scalar"]),
    ("van_trees", lambda: stats.van_trees(-1.0, 0.5), InvalidArgumentError, ["total information"]),
    ("van_trees", lambda: stats.van_trees(1.0, Poisson(t(3.0))), UnsupportedError, ["continuous"]),
    # ---------------------------------------------------------------- stats: simulation
    ("sample", lambda: stats.sample("normal", (3,)), ArgumentTypeError, ["dist"]),
    ("sample", lambda: stats.sample(Normal(t(0.0), t(1.0)), (3,), generator=0), ArgumentTypeError, ["generator"]),
    ("sample", lambda: stats.sample(Normal(t(0.0), t(1.0)), (-1,)), InvalidArgumentError, ["shape"]),
    ("simulate_estimator", lambda: stats.simulate_estimator(lambda x: x.mean(-1), Normal(t(0.0), t(1.0)), n=5, reps=1, target="loc"), InvalidArgumentError, ["reps", ">= 2"]),
    ("simulate_estimator", lambda: stats.simulate_estimator("mean", Normal(t(0.0), t(1.0)), n=5, reps=10), ArgumentTypeError, ["estimator"]),
    ("simulate_estimator", lambda: stats.simulate_estimator(lambda x: x.mean(-1), Normal(t([0.0, 1.0]), t(1.0)), n=5, reps=10), ShapeError, ["batch shape"]),
    ("coverage", lambda: stats.coverage(lambda x: (x.mean(-1), x.mean(-1)[:2]), Normal(t(0.0), t(1.0)), n=5, reps=10, target="loc"), ShapeError, ["interval", "shape"]),
    ("coverage", lambda: stats.coverage(lambda x: (x.mean(-1), x.mean(-1)), Normal(t(0.0), t(1.0)), n=0, reps=10), InvalidArgumentError, ["n"]),
    ("EstimatorSummary", lambda: stats.simulate_estimator(lambda x: x.mean(-1), Normal(t(0.0), t(1.0)), n=5, reps=10, target="df"), InvalidArgumentError, ["target"]),
    ("CoverageEstimate", lambda: stats.coverage(lambda x: (x.mean(-1) + 1, x.mean(-1)), Normal(t(0.0), t(1.0)), n=5, reps=10, target="loc"), InvalidArgumentError, ["lower > upper"]),
    # ---------------------------------------------------------------- stats: mle and intervals
    ("mle", lambda: stats.mle(Poisson, t([1.0, 2.0]), init={}), InvalidArgumentError, ["init"]),
    ("mle", lambda: stats.mle(3, t([1.0, 2.0]), init={"rate": 1.0}), ArgumentTypeError, ["family"]),
    ("mle", lambda: stats.mle(Poisson, t([1.0, 2.0]), init={"rate": 1.0}, tol=-1.0), InvalidArgumentError, ["tol"]),
    ("mle", lambda: stats.mle(Poisson, t([1.0, float("nan")]), init={"rate": 1.0}), NonFiniteError, ["x", "finite"]),
    ("mle", lambda: stats.mle(Poisson, t([1.0, 2.0]), init={"rate": -1.0}), InvalidArgumentError, ["init", "constraint"]),
    ("MLEResult", lambda: _fit().covariance("robust"), InvalidArgumentError, ["kind", "sandwich"]),
    ("sandwich_covariance", lambda: stats.sandwich_covariance(torch.zeros(0, 1, dtype=D), t([[1.0]])), ShapeError, ["observation"]),
    ("sandwich_covariance", lambda: stats.sandwich_covariance(torch.zeros(3, 2, dtype=D), t([[1.0]])), ShapeError, ["scores", "information"]),
    ("sandwich_covariance", lambda: stats.sandwich_covariance(torch.ones(3, 2, dtype=D), _NONSYM), NotPositiveDefiniteError, ["symmetric"]),
    ("wald_interval", lambda: stats.wald_interval("fit"), ArgumentTypeError, ["result", "MLEResult"]),
    ("wald_interval", lambda: stats.wald_interval(_fit(), level=1.5), InvalidArgumentError, ["level", "(0.0, 1.0)"]),
    ("wald_interval", lambda: stats.wald_interval(_fit(), param="scale"), InvalidArgumentError, ["param", "rate"]),
    ("score_interval", lambda: stats.score_interval(Poisson, t([1.0, 2.0]), "rate", init=1.0, level="0.9"), ArgumentTypeError, ["level"]),
    ("lr_interval", lambda: stats.lr_interval(Poisson, t([1.0, 2.0]), "rate", init=1.0, level=1.0), InvalidArgumentError, ["level"]),
    ("binomial_interval", lambda: stats.binomial_interval(5, 3), InvalidArgumentError, ["x", "n"]),
    ("binomial_interval", lambda: stats.binomial_interval(1, 3, method="exact"), InvalidArgumentError, ["method", "wilson"]),
    ("binomial_interval", lambda: stats.binomial_interval(1.5, 3), InvalidArgumentError, ["integers"]),
    ("binomial_interval", lambda: stats.binomial_interval(object(), 3), ArgumentTypeError, ["x"]),
    ("poisson_interval", lambda: stats.poisson_interval(-1), InvalidArgumentError, ["t", "non-negative"]),
    ("poisson_interval", lambda: stats.poisson_interval(3, 0), InvalidArgumentError, ["n", ">= 1"]),
    ("poisson_interval", lambda: stats.poisson_interval(3, level=np.float32(2.0)), InvalidArgumentError, ["level"]),
    ("exact_coverage", lambda: stats.exact_coverage("poisson", [1000], [1e6], "wald"), SizeLimitError, ["MAX_GRID", "split", "coverage"]),
    ("exact_coverage", lambda: stats.exact_coverage("gaussian", [10], [0.5], "wald"), InvalidArgumentError, ["family", "binomial"]),
    ("exact_coverage", lambda: stats.exact_coverage("binomial", [10], [1.5], "wald"), InvalidArgumentError, ["theta", "(0, 1)"]),
    ("exact_coverage", lambda: stats.exact_coverage("binomial", [10], [0.5], 3), ArgumentTypeError, ["method"]),
    # ---------------------------------------------------------------- geometry: dual flatness
    ("natural_parameters", lambda: geometry.natural_parameters(StudentT(t(3.0))), ArgumentTypeError, ["exponential families"]),
    ("natural_parameters", lambda: geometry.natural_parameters("normal"), ArgumentTypeError, ["Distribution"]),
    ("expectation_parameters", lambda: geometry.expectation_parameters(3), ArgumentTypeError, ["Distribution"]),
    ("log_partition", lambda: geometry.log_partition(Binomial, t([0.0])), ArgumentTypeError, ["total_count"]),
    ("log_partition", lambda: geometry.log_partition(Poisson, t([float("nan")])), NonFiniteError, ["theta", "finite"]),
    ("dual_potential", lambda: geometry.dual_potential([1.0]), ArgumentTypeError, ["Distribution"]),
    ("from_natural", lambda: geometry.from_natural(Normal, t([0.0, 1.0])), OffManifoldError, ["natural parameter space"]),
    ("from_expectation", lambda: geometry.from_expectation(Gamma, t([1.0, 1.0])), OffManifoldError, ["Jensen"]),
    ("from_expectation", lambda: geometry.from_expectation(Poisson, t([float("inf")])), OffManifoldError, ["eta", "finite"]),
    ("bregman_divergence", lambda: geometry.bregman_divergence("F", t([1.0]), t([0.0])), ArgumentTypeError, ["potential", "callable"]),
    ("bregman_divergence", lambda: geometry.bregman_divergence(lambda z: (z**2).sum(-1), t([1.0, 2.0]), t([0.0])), ShapeError, ["x and y"]),
    ("kl_bregman", lambda: geometry.kl_bregman(Binomial(3, t(0.5)), Binomial(4, t(0.5))), InvalidArgumentError, ["total_count"]),
    ("kl_bregman", lambda: geometry.kl_bregman(Poisson(t(1.0)), Exponential(t(1.0))), ArgumentTypeError, ["same family"]),
    ("m_projection", lambda: geometry.m_projection(t([1.0, 0.0, 0.0]), t([0.0, 1.0, 2.0])), InvalidArgumentError, ["boundary"]),
    ("m_projection", lambda: geometry.m_projection(t([0.5, 0.6]), t([0.0, 1.0])), OffManifoldError, ["simplex"]),
    ("m_projection", lambda: geometry.m_projection(t([0.5, 0.5]), t([0.0, 1.0, 2.0])), ShapeError, ["statistics", "shape"]),
    # ---------------------------------------------------------------- geometry: Riemannian
    ("fisher_rao_distance", lambda: geometry.fisher_rao_distance(Normal(t(0.0), t(1.0)), Poisson(t(1.0))), ArgumentTypeError, ["same family"]),
    ("fisher_rao_distance", lambda: geometry.fisher_rao_distance(Gamma(t(1.0), t(1.0)), Gamma(t(2.0), t(1.0))), ArgumentTypeError, ["closed-form", "geodesic"]),
    ("fisher_rao_distance", lambda: geometry.fisher_rao_distance(Categorical(t([0.5, 0.5])), Categorical(t([0.2, 0.3, 0.5]))), ShapeError, ["categories"]),
    ("exp_map", lambda: geometry.exp_map(Normal(t(0.0), t(1.0)), t([1.0, 2.0, 3.0])), ShapeError, ["tangent", "last dimension"]),
    ("exp_map", lambda: geometry.exp_map(Gamma(t(1.0), t(1.0)), t([1.0, 2.0])), ArgumentTypeError, ["exponential map"]),
    ("log_map", lambda: geometry.log_map(Normal(t(0.0), t(1.0)), Poisson(t(1.0))), ArgumentTypeError, ["same family"]),
    ("fisher_metric", lambda: geometry.fisher_metric("Normal", ("loc", "scale")), ArgumentTypeError, ["family"]),
    ("fisher_metric", lambda: geometry.fisher_metric(Normal, ()), InvalidArgumentError, ["params"]),
    ("pullback_metric", lambda: geometry.pullback_metric(_metric, "exp"), ArgumentTypeError, ["transform", "callable"]),
    ("christoffel_symbols", lambda: geometry.christoffel_symbols(_metric, t([0.0, 1.0]), derivative="symbolic"), InvalidArgumentError, ["derivative"]),
    ("christoffel_symbols", lambda: geometry.christoffel_symbols(None, t([0.0, 1.0])), ArgumentTypeError, ["metric", "callable"]),
    ("geodesic", lambda: geometry.geodesic(_metric, t([0.0, 1.0]), t([1.0, 2.0]), n_nodes=2), InvalidArgumentError, ["n_nodes"]),
    ("geodesic", lambda: geometry.geodesic(_metric, t([0.0, 1.0]), t([1.0, 2.0, 3.0])), ShapeError, ["start and end"]),
    ("Geodesic", lambda: geometry.geodesic(_metric, t([0.0, 1.0]), t([1.0, 2.0]))(1.5), InvalidArgumentError, ["t", "[0, 1]"]),
    ("jeffreys_log_density", lambda: geometry.jeffreys_log_density(_metric, t([0.0, float("nan")])), OffManifoldError, ["theta", "finite"]),
    ("jeffreys_log_density", lambda: geometry.jeffreys_log_density(3, t([0.0, 1.0])), ArgumentTypeError, ["metric"]),
    ("jeffreys_prior", lambda: geometry.jeffreys_prior(Normal(t(0.0), t(1.0))), InvalidArgumentError, ["improper"]),
    ("jeffreys_prior", lambda: geometry.jeffreys_prior(StudentT(t(3.0))), ArgumentTypeError, ["Jeffreys"]),
    ("kl_quadratic", lambda: geometry.kl_quadratic(Normal(t(0.0), t(1.0)), t([1.0])), ShapeError, ["delta", "last dimension"]),
    # ---------------------------------------------------------------- stats: higher-order bounds, shrinkage (chapter 2)
    ("bhattacharyya_matrix", lambda: stats.bhattacharyya_matrix(Exponential(t(1.0)), 1.0, 2), ArgumentTypeError, ["family", "callable"]),
    ("bhattacharyya_matrix", lambda: stats.bhattacharyya_matrix(lambda r: Exponential(r), 1.0, 0), InvalidArgumentError, ["order", "[1, 8]"]),
    ("bhattacharyya_matrix", lambda: stats.bhattacharyya_matrix(lambda r: Poisson(r), 1.0, 2), UnsupportedError, ["discrete"]),
    ("bhattacharyya_matrix", lambda: stats.bhattacharyya_matrix(lambda r: Exponential(r), -1.0, 2), InvalidArgumentError, ["family(-1)", "not a valid"]),
    ("bhattacharyya_matrix", lambda: stats.bhattacharyya_matrix(lambda r: Exponential(r), float("nan"), 2), NonFiniteError, ["theta"]),
    ("bhattacharyya_matrix", lambda: stats.bhattacharyya_matrix(lambda r: 3.0, 1.0, 2), ArgumentTypeError, ["Distribution", "float"]),
    ("bhattacharyya_bound", lambda: stats.bhattacharyya_bound(lambda r: Exponential(r), 1.0, 2, g_derivatives=[1.0]), ShapeError, ["g_derivatives", "order=2"]),
    ("chi_square_divergence", lambda: stats.chi_square_divergence(1.0, Normal(t(0.0), t(1.0))), ArgumentTypeError, ["p", "Distribution"]),
    ("chi_square_divergence", lambda: stats.chi_square_divergence(Poisson(t(1.0)), Poisson(t(2.0))), UnsupportedError, ["discrete"]),
    ("hcr_bound", lambda: stats.hcr_bound(lambda r: Exponential(r), 1.0, n=0), InvalidArgumentError, ["n", ">= 1"]),
    ("hcr_bound", lambda: stats.hcr_bound(lambda r: Exponential(r), 1.0, shifts=t([0.0, 0.1])), InvalidArgumentError, ["shifts", "non-zero"]),
    ("hcr_bound", lambda: stats.hcr_bound(lambda r: Exponential(r), 1.0, g=2.0), ArgumentTypeError, ["g", "callable"]),
    ("hcr_bound", lambda: stats.hcr_bound(lambda r: Exponential(r), 1.0, shifts=t([-5.0, -2.0])), InvalidArgumentError, ["no shift", "parameter space"]),
    ("hodges_estimator", lambda: stats.hodges_estimator(t([0.1]), 0), InvalidArgumentError, ["n", ">= 1"]),
    ("hodges_estimator", lambda: stats.hodges_estimator(t([0.1]), 10, threshold=-1.0), InvalidArgumentError, ["threshold", ">= 0"]),
    ("hodges_estimator", lambda: stats.hodges_estimator(t([float("nan")]), 10), NonFiniteError, ["xbar"]),
    ("hodges_risk", lambda: stats.hodges_risk(0.0, 10, sigma=0.0), InvalidArgumentError, ["sigma", "> 0"]),
    ("james_stein", lambda: stats.james_stein(t([1.0, 2.0])), ShapeError, ["x", "d >= 3"]),
    ("james_stein", lambda: stats.james_stein(t([1.0, 2.0, 3.0]), sigma=-1.0), InvalidArgumentError, ["sigma"]),
    ("james_stein_risk", lambda: stats.james_stein_risk(-1.0, 5), InvalidArgumentError, ["theta_norm", ">= 0"]),
    ("james_stein_risk", lambda: stats.james_stein_risk(1.0, 2), InvalidArgumentError, ["d", ">= 3"]),
    ("simulate_risk", lambda: stats.simulate_risk(lambda x: x[:, :1], t([0.0, 0.0]), 1.0, 10), ShapeError, ["estimator", "shape"]),
    ("simulate_risk", lambda: stats.simulate_risk(lambda x: x, t([0.0]), 1.0, 1), InvalidArgumentError, ["reps", ">= 2"]),
    ("simulate_risk", lambda: stats.simulate_risk("mean", t([0.0]), 1.0, 10), ArgumentTypeError, ["estimator", "callable"]),
    ("mirror_descent", lambda: geometry.mirror_descent(Poisson, lambda e: e.sum(), t([1.0]), lr=-1.0, n_steps=1), InvalidArgumentError, ["lr"]),
    ("mirror_descent", lambda: geometry.mirror_descent(Poisson, lambda e: e.sum(), t([[1.0]]), lr=0.1, n_steps=1), ShapeError, ["eta0", "1-D"]),
    ("natural_gradient_descent", lambda: geometry.natural_gradient_descent(Poisson, None, t([0.0]), lr=0.1, n_steps=1), ArgumentTypeError, ["loss"]),
    ("natural_gradient_descent", lambda: geometry.natural_gradient_descent(Exponential, lambda e: -10 * e.sum(), t([-1.0]), lr=1.0, n_steps=1), OffManifoldError, ["natural parameter space"]),
]

#: Public names that are data, not functions: nothing to validate. Checked to be data below.
DATA = {"CLOSED_FORMS", "ClosedForm", "FisherEstimate", "MissingInformation", "BartlettMoments",  # result containers
        "LikelihoodTests", "BARTLETT_MODELS", "STABILISED_FAMILIES"}  # and tables of supported models

PUBLIC = [("stats", n) for n in stats.__all__] + [("geometry", n) for n in geometry.__all__]


def _cases_elsewhere() -> set[str]:
    """Names with bad-input cases in tests/test_bad_input_stats.py (its ``*_CASES`` lists of
    ``(name, description, call, error, words)``), which the chapters' later additions use."""
    import importlib

    module = importlib.import_module("test_bad_input_stats")
    names: set[str] = set()
    for attr in dir(module):
        if attr.endswith("_CASES"):
            for case in getattr(module, attr):
                if isinstance(case[0], str):
                    names.add(case[0])
                else:  # (call, error, match): the names the call's lambda looks up (fb.<name>)
                    names.update(case[0].__code__.co_names)
    return names


def test_every_public_name_has_a_case():
    here = {name for name, *_ in CASES}
    covered = here | _cases_elsewhere()
    missing = [f"{mod}.{n}" for mod, n in PUBLIC if n not in covered and n not in DATA]
    assert not missing, f"public names without a bad-input case in tests/test_errors.py or test_bad_input_stats.py: {missing}"
    unknown = here - {n for _, n in PUBLIC}
    assert not unknown, f"cases for names that are not public: {unknown}"


def test_exempt_names_are_data():
    for name in DATA:
        value = getattr(stats, name)
        assert isinstance(value, tuple) or dataclasses.is_dataclass(value), name  # a table or a result container


@pytest.mark.parametrize(
    "name, call, expected, words", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_bad_input_raises_named_error(name, call, expected, words):
    assert issubclass(expected, FisherbookError)
    with pytest.raises(expected) as info:
        call()
    err = info.value
    assert isinstance(err, FisherbookError)
    # the TypeError / ValueError rule of fisherbook.errors
    assert isinstance(err, TypeError) == issubclass(expected, ArgumentTypeError)
    message = str(err)
    for word in words:
        assert word.lower() in message.lower(), f"{name}: {word!r} not in {message!r}"


def test_error_classes_inherit_the_builtin_a_caller_catches():
    assert issubclass(errors.ArgumentTypeError, TypeError)
    for cls in (InvalidArgumentError, ShapeError, NonFiniteError, NotPositiveDefiniteError, OffManifoldError,
                SizeLimitError, UnsupportedError):
        assert issubclass(cls, ValueError) and not issubclass(cls, TypeError)
    assert issubclass(errors.ConvergenceError, RuntimeError)
    assert issubclass(errors.GeodesicError, errors.ConvergenceError)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(width=32, allow_nan=True, allow_infinity=True),
                          st.sampled_from([3.0e38, -3.0e38, float("nan"), float("inf"), -float("inf"), 0.0])),
                min_size=0, max_size=12),
       st.sampled_from([torch.float32, torch.float64, torch.complex64]))
def test_check_finite_fast_path_agrees_with_the_elementwise_test(values, dtype):
    # one reduction decides most tensors; the answer must be the elementwise one, including finite
    # entries whose sum overflows (3e38 + 3e38 in float32) and inf - inf in the sum
    from fisherbook._validate import check_finite
    from fisherbook.errors import NonFiniteError

    t = torch.tensor(values, dtype=dtype) if values else torch.zeros(0, dtype=dtype)
    finite = bool(torch.isfinite(t).all())
    if finite:
        assert check_finite(t, "t") is t
    else:
        with pytest.raises(NonFiniteError, match="t must be finite"):
            check_finite(t, "t")

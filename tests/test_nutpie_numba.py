"""The package's nutpie compile (fitting/nutpie_numba.py) samples exactly as nutpie's own."""

from __future__ import annotations

import numpy as np
import pytest

import lupusbayes as lb
from lupusbayes.fitting import nutpie_numba
from lupusbayes.fitting.cache import DEFAULT_CACHE, compile_nutpie


def _draws(compiled, data, seed):
    import nutpie

    tree = nutpie.sample(compiled.with_data(**data), draws=200, tune=200, chains=2, cores=2, seed=seed,
                         progress_bar=False)
    return {f"{group}/{name}": tree[group][name].values
            for group in ("posterior", "sample_stats") for name in tree[group].data_vars
            if tree[group][name].dtype.kind in "fiub"}


@pytest.mark.mcmc
def test_the_compile_gives_nutpies_draws_bit_for_bit_and_swaps_data_as_nutpie_does(kn5601, kn5601_spec):
    import nutpie

    model = lb.BLRM(kn5601, kn5601_spec)
    graph = DEFAULT_CACHE.get(model).graph
    ours = compile_nutpie(graph)
    theirs = nutpie.compile_pymc_model(graph, backend="numba", freeze_model=False)
    assert ours.n_dim == theirs.n_dim and ours.n_expanded == theirs.n_expanded
    assert ours.coords.keys() == theirs.coords.keys() and ours.shapes == theirs.shapes

    data = model.graph_data()
    more_toxic = {name: np.ones_like(np.asarray(value)) for name, value in data.items()}
    ours_by_outcomes = []
    for outcomes in (data, more_toxic):
        ours_draws, theirs_draws = _draws(ours, outcomes, 11), _draws(theirs, outcomes, 11)
        assert ours_draws.keys() == theirs_draws.keys() and "sample_stats/diverging" in ours_draws
        for name in ours_draws:
            np.testing.assert_array_equal(ours_draws[name], theirs_draws[name], err_msg=name)
        ours_by_outcomes.append(ours_draws)
    # the swapped data reach the callbacks: other outcomes, other draws
    before, after = ours_by_outcomes
    posterior = [name for name in before if name.startswith("posterior/")]
    assert posterior and not any(np.array_equal(before[name], after[name]) for name in posterior)


def test_another_nutpie_version_takes_nutpies_public_compile(monkeypatch):
    import nutpie

    monkeypatch.setattr(nutpie_numba, "TESTED_NUTPIE_VERSIONS", ("99.0.0",))
    calls = []
    monkeypatch.setattr(nutpie, "compile_pymc_model", lambda graph, **options: calls.append(options) or "nutpie's")
    assert nutpie_numba.compile_pymc_numba(object()) == "nutpie's"
    assert calls == [{"backend": "numba", "freeze_model": False}]


def test_the_pinned_nutpie_is_a_release_the_compile_was_tested_with():
    import nutpie

    assert nutpie.__version__ in nutpie_numba.TESTED_NUTPIE_VERSIONS, (
        f"nutpie {nutpie.__version__}: check fitting/nutpie_numba.py against its compile_pymc, run this file and add "
        "the version to TESTED_NUTPIE_VERSIONS, or fits take nutpie's slower public compile")


@pytest.mark.mcmc
@pytest.mark.parametrize("code", ["logp", "expand"])
def test_a_callback_refuses_a_draw_of_the_wrong_dimension(kn5601, kn5601_spec, code):
    import ctypes

    model = lb.BLRM(kn5601, kn5601_spec)
    compiled = DEFAULT_CACHE.get(model).nutpie_model(model)
    doubles = ctypes.POINTER(ctypes.c_double)
    x_array = np.zeros(compiled.n_dim + 1)
    out_array = np.zeros(max(compiled.n_dim, compiled.n_expanded) + 1)
    x, out = x_array.ctypes.data_as(doubles), out_array.ctypes.data_as(doubles)
    pointer = ctypes.c_void_p(compiled.user_data.ctypes.data)
    if code == "logp":
        logp = np.zeros(1)
        status = compiled.compiled_logp_func.ctypes(compiled.n_dim + 1, x, out,
                                                    logp.ctypes.data_as(doubles), pointer)
        assert status == -1
        status = compiled.compiled_logp_func.ctypes(compiled.n_dim, x, out,
                                                    logp.ctypes.data_as(doubles), pointer)
        assert status == 0 and np.isfinite(logp[0]) and np.all(np.isfinite(out_array[:compiled.n_dim]))
    else:
        status = compiled.compiled_expand_func.ctypes(compiled.n_dim, compiled.n_expanded + 1, x,
                                                      out, pointer)
        assert status == -1
        status = compiled.compiled_expand_func.ctypes(compiled.n_dim, compiled.n_expanded, x,
                                                      out, pointer)
        assert status == 0 and np.all(np.isfinite(out_array[:compiled.n_expanded]))

"""Compiled designs, built once and kept in an explicit, bounded cache.

Building a PyMC graph and compiling it (nutpie's Numba model, the prior's forward sampler) is
the slow part of a fit. Models of the same *design* (same settings, covariates and studies;
see :meth:`~lupusbayes.models.base.BayesianModel.design_key`) differ at most in their outcomes,
which are ``pm.Data`` in the graph, so one compiled design serves them all: a refit after new
patients' grades, a simulated data set or a calibration replicate only swaps the data.

The cache is an object the fitting functions take (``fit(..., cache=...)``); by default they
share :data:`DEFAULT_CACHE`, which keeps the 32 most recently used designs.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from lupusbayes.models.base import BayesianModel

__all__ = ["CompiledDesign", "DesignCache", "DEFAULT_CACHE", "compile_nutpie"]


class CompiledDesign:
    """One model design: its PyMC graph and, compiled on first use, its samplers."""

    def __init__(self, key: str, graph: Any) -> None:
        _reproducible_numerics()
        self.key = key
        self.graph = graph
        self.free_parameters: tuple[str, ...] = tuple(variable.name for variable in graph.free_RVs)
        self._nutpie_model: Any = None
        self._prior_function: tuple[list[str], Any, list[Any]] | None = None

    def graph_with_outcomes(self, model: BayesianModel):
        """The graph holding ``model``'s outcomes (``pm.set_data``)."""
        import pymc as pm

        with self.graph:
            pm.set_data(model.graph_data())
        return self.graph

    def nutpie_model(self, model: BayesianModel):
        """nutpie's compiled model (compiled once per design) holding ``model``'s outcomes."""
        if self._nutpie_model is None:
            self._nutpie_model = compile_nutpie(self.graph)
        return self._nutpie_model.with_data(**model.graph_data())

    def prior_function(self) -> tuple[list[str], Any, list[Any]]:
        """The forward sampler of every variable's prior: (names, compiled function, its generators).

        What ``pm.sample_prior_predictive`` compiles on every call, compiled once here and only
        reseeded on later calls.
        """
        if self._prior_function is None:
            from pymc.sampling.forward import compile_forward_sampling_function
            from pymc.util import get_default_varnames
            from pytensor.tensor.random.type import RandomGeneratorType

            from lupusbayes.fitting.quiet import quiet_pymc

            graph = self.graph
            everything = {variable.name for variable in graph.basic_RVs + graph.deterministics}
            names = sorted(get_default_varnames(everything, include_transformed=False))
            with quiet_pymc():
                function, _ = compile_forward_sampling_function(
                    [graph[name] for name in names], vars_in_trace=[], basic_rvs=graph.basic_RVs, model=graph,
                    random_seed=False, allow_input_downcast=True, accept_inplace=True,
                )
            generators = [v for v in function.get_shared() if isinstance(v.type, RandomGeneratorType)]
            self._prior_function = (names, function, generators)
        return self._prior_function


def compile_nutpie(graph: Any):
    """nutpie's Numba model of a PyMC graph, compiled quietly with reproducible numerics.

    Every nutpie compilation of the package goes through here (a fit's design, the simulator's
    fallback on counts), so a seed gives the same draws whether the compile cache is cold or warm.
    """
    from lupusbayes.fitting.nutpie_numba import compile_pymc_numba
    from lupusbayes.fitting.quiet import quiet_pymc

    _reproducible_numerics()
    with quiet_pymc():
        return compile_pymc_numba(graph)


def _reproducible_numerics() -> None:
    """Compile with IEEE floating point: the same seed gives the same draws, cache cold or warm.

    PyTensor compiles Numba code with ``fastmath`` by default, which lets LLVM reassociate
    floating-point operations differently in a freshly compiled function and in one loaded from
    the on-disk cache. The last-bit differences grow along NUTS trajectories, so a fit's numbers
    depended on whether the cache was warm (measured: posterior sums differed in the 3rd digit).
    Without fastmath both give identical draws, at no measurable cost on these models.
    """
    import pytensor

    pytensor.config.numba__fastmath = False


class DesignCache:
    """Compiled designs by design key, least recently used dropped beyond ``max_designs``."""

    def __init__(self, max_designs: int = 32) -> None:
        if max_designs < 1:
            raise ValueError("max_designs must be >= 1")
        self.max_designs = max_designs
        self._designs: OrderedDict[str, CompiledDesign] = OrderedDict()

    def get(self, model: BayesianModel) -> CompiledDesign:
        """The compiled design of ``model``, built on first request."""
        key = model.design_key()
        design = self._designs.get(key)
        if design is None:
            design = CompiledDesign(key, model.build_pymc_model())
            self._designs[key] = design
            while len(self._designs) > self.max_designs:
                self._designs.popitem(last=False)
        else:
            self._designs.move_to_end(key)
        return design

    def __len__(self) -> int:
        return len(self._designs)

    def __contains__(self, model: BayesianModel) -> bool:
        return model.design_key() in self._designs

    def clear(self) -> None:
        self._designs.clear()


#: The cache used when a fitting function is given none.
DEFAULT_CACHE = DesignCache()

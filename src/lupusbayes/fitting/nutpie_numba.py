"""nutpie's Numba model of a PyMC graph, with C callbacks that compile in half the time.

``nutpie.compile_pymc_model`` wraps PyTensor's log density (with its gradient) and the function
that expands a draw into every variable in two Numba C callbacks. Those callbacks copy their
results with ``out[...] = grad``. Numba lowers that slice assignment with a shape-mismatch error
whose message (``str`` of integers, string joins) it compiles again in every process, since
Numba's overloads are not kept in its disk cache: 1.9 s of the 5.1 s compile of the KN5601 CRS
model, measured with Numba's compile events, in a command that spent 8.5 s in all.

:func:`compile_pymc_numba` builds the same model with callbacks that copy element by element
and test finiteness in the same loop (the same return codes: 3 for a non-finite gradient, 4 for
a non-finite log density, 1 for an exception). Everything else is nutpie's own: its PyTensor
functions, its shared-data layout (so ``with_data`` works unchanged) and its
:class:`~nutpie.compile_pymc.CompiledPyMCModel`. On the KN5601 models the compile takes about half
the time (``scripts/benchmark_compile.py``: 1.8-1.9x, fresh processes) and the draws are
bit-identical (``tests/test_nutpie_numba.py`` samples both and compares every draw).

Two of the functions it calls are private to nutpie (``_make_functions`` and
``_prepare_dims_and_coords``). They are used only with the nutpie release the package is pinned
to and tested with (:data:`TESTED_NUTPIE_VERSIONS`, ``constraints.txt``); with any other version,
:func:`compile_pymc_numba` calls ``nutpie.compile_pymc_model`` itself.
"""

from __future__ import annotations

import threading
from functools import wraps
from typing import Any

import numpy as np

__all__ = ["compile_pymc_numba", "TESTED_NUTPIE_VERSIONS"]

#: The nutpie releases whose internals :func:`compile_pymc_numba` was written against and tested with.
TESTED_NUTPIE_VERSIONS = ("0.16.11",)


def compile_pymc_numba(graph: Any):
    """nutpie's compiled Numba model of ``graph`` (data kept as shared variables, as ``freeze_model=False``).

    The same model, initial points and draws as ``nutpie.compile_pymc_model(graph, backend="numba",
    freeze_model=False)``; only the two C callbacks differ (see the module's docstring).
    """
    import nutpie
    from nutpie import compile_pymc as nutpie_pymc

    if nutpie.__version__ not in TESTED_NUTPIE_VERSIONS:
        return nutpie.compile_pymc_model(graph, backend="numba", freeze_model=False)

    import numba
    from pymc.initial_point import make_initial_point_fn

    # as compile_pymc_model: support-point initial values with a U(-1, 1) jitter on every free variable
    pymc_initial_point = _locked(make_initial_point_fn(
        model=graph, overrides=None, default_strategy="support_point", jitter_rvs=set(graph.free_RVs),
        return_transformed=True,
    ))
    n_dim, n_expanded, logp_function, expand_function, initial_point_fn, shape_info, reparameterized_names = \
        nutpie_pymc._make_functions(graph, mode="NUMBA", compute_grad=True, join_expanded=True,
                                    pymc_initial_point_fn=pymc_initial_point, var_names=None)

    shared_data: dict[str, np.ndarray] = {}
    shared_var_keys: dict[Any, str] = {}
    for variable in [*logp_function.get_shared(), *expand_function.get_shared()]:
        if variable in shared_var_keys:
            continue
        key = f"shared_{len(shared_var_keys)}"
        value = np.array(variable.get_value(), order="C", copy=True)
        value.flags.writeable = False
        shared_data[key] = value
        shared_var_keys[variable] = key
    user_data = nutpie_pymc.make_user_data(shared_var_keys, shared_data)

    extract_logp = nutpie_pymc.make_extraction_fn(
        logp_function.vm.jit_fn, shared_data, [shared_var_keys[v] for v in logp_function.get_shared()],
        user_data.dtype)
    extract_expand = nutpie_pymc.make_extraction_fn(
        expand_function.vm.jit_fn, shared_data, [shared_var_keys[v] for v in expand_function.get_shared()],
        user_data.dtype)
    logp_callback = numba.cfunc(_logp_signature())(_logp_callback(n_dim, extract_logp))
    expand_callback = numba.cfunc(_expand_signature())(_expand_callback(n_dim, n_expanded, extract_expand))

    dims, coords = nutpie_pymc._prepare_dims_and_coords(graph, shape_info, reparameterized_names)
    return nutpie_pymc.CompiledPyMCModel(
        _n_dim=n_dim, dims=dims, _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info)},
        compiled_logp_func=logp_callback, compiled_expand_func=expand_callback,
        initial_point_func=initial_point_fn, shared_data=shared_data, shared_var_keys=shared_var_keys,
        user_data=user_data, n_expanded=n_expanded, shape_info=shape_info,
        logp_func=logp_function, expand_func=expand_function, reparameterized_names=reparameterized_names,
    )


def _locked(function):
    """``function`` behind a lock: nutpie draws initial points from several threads."""
    lock = threading.Lock()

    @wraps(function)
    def locked(*args, **kwargs):
        with lock:
            return function(*args, **kwargs)

    return locked


def _logp_signature():
    """``int64 logp(uint64 dim, double *x, double *gradient, double *logp, void *user_data)``: nutpie's C ABI."""
    from numba import types

    return types.int64(types.uint64, types.CPointer(types.double), types.CPointer(types.double),
                       types.CPointer(types.double), types.voidptr)


def _expand_signature():
    """``int64 expand(uint64 dim, uint64 expanded, double *x, double *out, void *user_data)``: nutpie's C ABI."""
    from numba import types

    return types.int64(types.uint64, types.uint64, types.CPointer(types.double), types.CPointer(types.double),
                       types.voidptr)


def _logp_callback(n_dim: int, extract):
    """The log density callback: nutpie's, with the copy and the finiteness test in one loop."""
    import numba

    def logp_callback(dim, x_pointer, gradient_pointer, logp_pointer, user_data_pointer):
        if dim != n_dim:
            return -1
        try:
            x = numba.carray(x_pointer, (n_dim,))
            logp, gradient = extract(x, user_data_pointer)
            if gradient.shape[0] != n_dim:  # nutpie's slice assignment raised here
                return 1
            logp_pointer[0] = logp
            finite_gradient = True
            for index in range(n_dim):
                gradient_pointer[index] = gradient[index]
                if not np.isfinite(gradient[index]):
                    finite_gradient = False
            if not finite_gradient:
                return 3
            if not np.isfinite(logp):
                return 4
        except Exception:  # a C callback reports errors by its return code
            return 1
        return 0

    return logp_callback


def _expand_callback(n_dim: int, n_expanded: int, extract):
    """The expansion callback (a draw to every stored variable): nutpie's, with an element-wise copy."""
    import numba

    def expand_callback(dim, expanded, x_pointer, out_pointer, user_data_pointer):
        if dim != n_dim or expanded != n_expanded:
            return -1
        try:
            x = numba.carray(x_pointer, (n_dim,))
            (values,) = extract(x, user_data_pointer)
            if values.shape[0] != n_expanded:
                return -2
            for index in range(n_expanded):
                out_pointer[index] = values[index]
        except Exception:
            return -2
        return 0

    return expand_callback

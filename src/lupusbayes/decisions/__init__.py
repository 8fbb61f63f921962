"""Decisions: escalate / hold / de-escalate / stop for the next dose group, with their reasons.

Plain NumPy and xarray: nothing here imports PyMC or the fitting layer, so the simulator can
call it thousands of times. Posteriors enter through one interface, fed by an MCMC fit (via
its ``dose_response`` group) or by an exact computation (:mod:`lupusbayes.models.exact`).
"""

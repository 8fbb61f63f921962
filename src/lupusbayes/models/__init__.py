"""Models: hierarchical dose-toxicity (ordinal CRS, BLRM) and SLEDAI-2K models.

* :mod:`~lupusbayes.models.base`: what every model provides to the fitting layer;
* :mod:`~lupusbayes.models.design`: cohort and spec to model arrays (dose covariate, groups);
* :mod:`~lupusbayes.models._math`: likelihoods written once for NumPy and PyTensor;
* :mod:`~lupusbayes.models.toxicity`, :mod:`~lupusbayes.models.sledai`: the models;
* :mod:`~lupusbayes.models.exact`: the single-study BLRM by deterministic quadrature;
* :mod:`~lupusbayes.models.summaries`: posterior summaries with Monte Carlo error.

Importing this package does not import PyMC; a model builds its graph on request. Models
never import the fitting layer (which samples them) or the cohort summary.
"""

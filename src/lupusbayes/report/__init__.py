"""Outputs for people: text rendering now; plots and the SRC report build on it.

Only the command line imports this layer; a script or notebook imports it by name
(``from lupusbayes.report import text``).
"""

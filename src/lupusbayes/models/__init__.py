"""Dose-response models. ``settings`` is PyMC-free; the model classes import PyMC."""

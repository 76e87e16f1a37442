"""cxrlab offline training package: datasets, preprocessing, models, training, evaluation.

Run ``cxrlab --help`` (installed) or ``python -m training --help`` for the command line.
"""
__version__ = "0.1.0"

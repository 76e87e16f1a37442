"""Beyond image-only: clinical metadata fusion, prognosis and severity (ieee8023).

* :mod:`training.clinical.encoder`: :class:`ClinicalEncoder` (train-only fit, JSON for cards);
* :mod:`training.clinical.fusion`: two-input (``image``, ``metadata``) late-fusion Keras model;
* :mod:`training.clinical.prognosis`: early-image outcome tasks, repeated grouped CV;
* :mod:`training.clinical.severity`: expert severity score regression;
* :mod:`training.clinical.experiments`: the runs behind ``python -m training clinical ...``.
"""

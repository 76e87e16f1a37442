"""The input gate: before a model's answer is shown, is this an image the models can judge?

``checks`` (image-level: size, aspect, constant, colour, photometry, DICOM tags) and ``ood``
(per model, a Mahalanobis distance in its own feature space, fitted at training time by
``training.gate.fit``) feed
``verdict.judge``: ``accept`` / ``warn`` / ``refuse`` with reasons. The app, the API and
``python -m training predict`` all go through :func:`training.gate.assess.assess` (checks first:
an image they refuse reaches no model).
"""

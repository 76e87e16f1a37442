"""Semi-supervised learning: pseudo-labels, self-training, and a label-efficiency experiment.

* :mod:`training.semi.pseudo_label`: ``select_pseudo_labels`` and the ``self_train`` loop;
* :mod:`training.semi.model`: the small from-scratch CNN the experiment trains;
* :mod:`training.semi.experiment`: ``run_experiment(SemiConfig)`` (``python -m training semi``).
"""

"""External and shortcut checks: does a model learn the disease, or the hospital?

Three checks, each a plain function writing ``<name>.json`` and a short ``<name>.html``:

* :func:`source_probe`: how well the image alone predicts which data set it came from. A
  logistic-regression *probe* is fitted on image features of the train part (patient-level
  split) and scored on the test part (ROC-AUC, balanced accuracy, patient-bootstrap CIs).
  A high score (ROC-AUC > :data:`WARN_AUC`) warns that a model separating classes that come
  from different sources (COVID-19 from ieee8023, normal from Kermany) may learn the source.
* :func:`leave_one_source_out`: for data combining several sources, train on all sources
  but one and test on the held-out one (an **external** test: never split from the training
  data). By default the "model" is the same cheap probe (features + logistic regression),
  which makes the check run in seconds; pass ``trainer=`` to train a real model per fold.
* :func:`lung_restricted_eval`: a saved model's AUC on the full image versus the image with
  everything outside the lungs set to 0 (ieee8023 lungVAE masks or lung boxes), paired by
  image. A model that loses much of its AUC without the borders read something outside
  the lungs (markers, text, devices, collimation).

Probe features: the pooled features of a frozen backbone (:func:`training.models.build
.build_model` + ``split_feature_head``; with ``weights=None`` a random-init backbone, which
still encodes texture and intensity statistics), plus, by default when ``weights=None``,
cheap image statistics that capture acquisition differences (:func:`image_statistics`).
"""
from training.audits.probe_features import (BORDER, FEATURE_SETS, HIST_BINS, backbone_features,  # noqa: F401
                                      ProbeTrainer, feature_sets, fit_probe, image_statistics, intensity_histogram,
                                      original_size, probe_features)
from training.audits.lungs import (BOXES_FILE, MASKS_DIR, apply_mask, boxes_mask,  # noqa: F401
                                   find_lung_masks, lung_restricted_eval, read_lung_boxes, read_mask)
from training.audits.source import (SOURCE_WARNING, WARN_AUC, Trainer, leave_one_source_out,  # noqa: F401
                                    source_probe)

"""Evaluation: metric functions on arrays (metrics), patient-bootstrap CIs (bootstrap),
thresholds, calibration, plots, batch prediction (predict), one-model evaluation with an
HTML report (evaluate, report) and the fair multi-model comparison (compare)."""

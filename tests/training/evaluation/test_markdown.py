"""Markdown tables of a ``compare.json`` (the docs' model tables)."""
from training.evaluation.markdown import compare_markdown


def _summary(details: bool = True) -> dict:
    est = {"value": 0.81234, "low": 0.7, "high": 0.9}
    per = {"roc_auc": est, "recall": {"value": 0.5, "low": None, "high": None},
           "specificity": None, "precision": est, "f1": {"value": None}, "n_pos": 4, "n_neg": 6}
    return {"part": "test", "split": "split.csv", "test_set": "internal", "n_images": 10,
            "n_patients": 9, "n_boot": 200,
            "models": [{"model": "a", "mode": "frozen", "params_total": 1234567, "params_trainable": 89,
                        "seconds_per_epoch": 3.4, "latency_ms": 12.6, "macro: roc_auc": 0.8,
                        "macro: roc_auc low": 0.7, "macro: roc_auc high": 0.9},
                       {"model": "b", "mode": "scratch", "params_total": 10, "params_trainable": 10,
                        "seconds_per_epoch": 1.0, "latency_ms": 2.0, "macro: roc_auc": None}],
            "paired": {"b": {"diff": 0.05, "low": -0.01, "high": 0.11, "p_value": 0.2}},
            "details": {"a": {"per_output": {"Pneumonia": per}}} if details else {}}


def test_models_table_with_cis_and_paired_differences():
    text = compare_markdown(_summary(details=False))
    lines = text.splitlines()
    assert lines[0].startswith("Test set: part `test` of `split.csv` (internal, patient-disjoint), "
                               "10 images, 9 patients; 95% CIs from 200")
    assert "| a | frozen | 1,234,567 / 89 | 3 | 13 | 0.80 [0.70, 0.90] | (best) |" in lines
    assert "| b | scratch | 10 / 10 | 1 | 2 | n/a | +0.050 [-0.010, +0.110], p=0.20 |" in lines
    assert "**Pneumonia**" not in text  # no per-output details: the models table only


def test_one_table_per_output_with_n_a_where_undefined():
    text = compare_markdown(_summary())
    assert "**Pneumonia** (test: 4 positive / 6 negative)" in text
    # ROC-AUC with its CI; a recall without a CI; a missing specificity and F1: n/a
    assert "| a | 0.81 [0.70, 0.90] | 0.50 | n/a | 0.81 [0.70, 0.90] | n/a |" in text.splitlines()

"""HTML pages of an evaluation and of a model comparison (Jinja2, autoescaped, self-contained
apart from the PNG figures beside them). Numbers are printed from the rounded JSON values,
so the page shows exactly what ``metrics.json`` / ``compare.json`` hold."""
from __future__ import annotations

from typing import Any

import jinja2

from training.evaluation.evaluate import fmt
from training.evaluation.metrics import METRIC_NAMES

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_ENV.filters["num"] = fmt

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.3em .5em;text-align:right}
th:first-child,td:first-child{text-align:left}
.disclaimer{background:#fff4ce;border:1px solid #e0b000;padding:.8em}
.danger{background:#fde0e0;border:2px solid #c00;padding:.8em;font-weight:bold}
.ci{color:#666;font-size:.85em}
img{max-width:48%;margin:.3em}
"""

_CELL = """{% macro cell(m) %}{% if m is mapping and 'value' in m %}{{ m.value|num }}
<span class="ci">[{{ m.low|num }}, {{ m.high|num }}]</span>{% else %}{{ m|num }}{% endif %}{% endmacro %}"""

_EVAL = _CELL + """<!doctype html><html><head><meta charset="utf-8">
<title>Evaluation: {{ r.model.name }}</title><style>{{ style }}</style></head><body>
<h1>Evaluation of {{ r.model.name }}</h1>
<p class="disclaimer">{{ r.disclaimer }}</p>
{% if r.overlap.checked and r.overlap.n_images %}
<p class="danger">WARNING: {{ r.overlap.n_images }} of the {{ r.n_images }} test images were used to
train or validate this model ({{ r.overlap.by_path }} by path, {{ r.overlap.by_patient }} by patient,
{{ r.overlap.by_content }} by identical content). These results are optimistic and are NOT a fair
test (evaluated with allow_overlap).</p>
{% elif not r.overlap.checked %}
<p class="danger">The test images could NOT be checked against the training images:
{{ r.overlap.reason }}.</p>{% endif %}
<table>
<tr><th>test set</th><td>{{ r.test_set }}{% if r.test_set == 'external' %} (data from outside the training split){% endif %}</td></tr>
<tr><th>split</th><td>{{ r.split or 'none (whole data set)' }}</td></tr>
<tr><th>part</th><td>{{ r.part or 'all' }}</td></tr>
<tr><th>data</th><td>{{ r.data|join(', ') }}</td></tr>
<tr><th>images</th><td>{{ r.n_images }}</td></tr>
<tr><th>patients</th><td>{{ r.n_patients }}</td></tr>
<tr><th>labelled images</th><td>{{ r.n_labelled }}</td></tr>
<tr><th>model</th><td>{{ r.model.architecture }}, task {{ r.model.task }} ({{ r.model.kind }})</td></tr>
<tr><th>threshold method</th><td>{{ r.thresholds.method }}{% if r.thresholds.source %} ({{ r.thresholds.source }}){% endif %}</td></tr>
{% if r.thresholds['values'] %}<tr><th>thresholds</th><td>{% for k, v in r.thresholds['values'].items() %}{{ k }}: {{ v|num }}{% if not loop.last %}; {% endif %}{% endfor %}</td></tr>{% endif %}
<tr><th>confidence intervals</th><td>{{ ((1 - r.bootstrap.alpha) * 100)|round|int }}% percentile bootstrap,
{{ r.bootstrap.n_boot }} resamples of {{ r.bootstrap.resampling }}</td></tr>
{% if r.skipped %}<tr><th>unreadable / skipped</th><td>{{ r.skipped|length }} (listed below)</td></tr>{% endif %}
</table>
{% for n in r.notes %}<p>{{ n }}</p>{% endfor %}
<h2>Metrics per output</h2>
<table><tr><th>output</th><th>n</th><th>positives</th>{% for m in names %}<th>{{ m }}</th>{% endfor %}</tr>
{% for o, d in r.metrics.per_output.items() %}<tr><td>{{ o }}</td><td>{{ d.n }}</td><td>{{ d.n_pos }}</td>
{% for m in names %}<td>{{ cell(d[m]) }}</td>{% endfor %}</tr>{% endfor %}
{% for avg in ('macro', 'micro') %}<tr><td><b>{{ avg }} average</b></td><td></td><td></td>
{% for m in names %}<td>{{ cell(r.metrics[avg][m]) }}</td>{% endfor %}</tr>{% endfor %}
</table>
{% if r.model.kind == 'single' %}<p>accuracy {{ cell(r.metrics.accuracy) }};
balanced accuracy {{ cell(r.metrics.balanced_accuracy) }}</p>{% endif %}
{% if r.positive_negative is defined %}<h2>{{ r.positive_negative['class'] }}: positive and negative class</h2>
<table><tr><th>class</th><th>n</th>{% for m in names %}<th>{{ m }}</th>{% endfor %}</tr>
{% for o, d in r.positive_negative.items() if o != 'class' %}<tr><td>{{ o }}</td><td>{{ d.n_pos }}</td>
{% for m in names %}<td>{{ cell(d[m]) }}</td>{% endfor %}</tr>{% endfor %}</table>{% endif %}
<h2>Calibration</h2>
<table><tr><th>output</th><th>ECE (10 equal-width bins)</th></tr>
{% for o, c in r.calibration.items() %}<tr><td>{{ o }}</td><td>{{ c.ece|num }}</td></tr>{% endfor %}</table>
<h2>Figures</h2>
<img src="{{ r.figures.roc }}" alt="ROC curves"><img src="{{ r.figures.pr }}" alt="precision-recall curves">
<img src="{{ r.figures.reliability }}" alt="reliability diagram">
{% for f in r.figures.confusion %}<img src="{{ f }}" alt="confusion matrix">{% endfor %}
{% if r.skipped %}<h2>Unreadable / skipped images</h2><ul>
{% for s in r.skipped %}<li>{{ s.path }}: {{ s.reason }}</li>{% endfor %}</ul>{% endif %}
</body></html>
"""

_COMPARE = """<!doctype html><html><head><meta charset="utf-8"><title>Model comparison</title>
<style>{{ style }}</style></head><body>
<h1>Model comparison</h1>
<p class="disclaimer">{{ c.disclaimer }}</p>
<p>All models on the same images: split {{ c.split }}, part {{ c.part }} ({{ c.test_set }}),
{{ c.n_images }} images of {{ c.n_patients }} patients. 95% CIs: percentile bootstrap,
{{ c.n_boot }} resamples of patients.{% if c.split_mismatch %}
<b>The models' cards record different split files: they were not trained on one split.</b>{% endif %}</p>
<table><tr>{% for col in columns %}<th>{{ col }}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for col in columns %}<td>{{ row[col]|num }}</td>{% endfor %}</tr>{% endfor %}
</table>
<h2>Paired bootstrap: macro ROC-AUC of {{ c.best }} (highest) against each other model</h2>
<table><tr><th>model</th><th>AUC difference</th><th>95% CI</th><th>p-value</th></tr>
{% for name, t in c.paired.items() %}<tr><td>{{ name }}</td><td>{{ t['diff']|num }}</td>
<td>[{{ t.low|num }}, {{ t.high|num }}]</td><td>{{ t.p_value|num }}</td></tr>{% endfor %}</table>
{% for f in c.figures %}<img src="{{ f }}" alt="ROC overlay">{% endfor %}
</body></html>
"""


def render_evaluation(result: dict[str, Any]) -> str:
    """The evaluation page of a (rounded) ``metrics.json`` dict."""
    return _ENV.from_string(_EVAL).render(r=result, names=METRIC_NAMES, style=_STYLE)


def render_comparison(summary: dict[str, Any], rows: list[dict[str, Any]], columns: list[str]) -> str:
    """The comparison page: one table row per model plus the paired tests."""
    return _ENV.from_string(_COMPARE).render(c=summary, rows=rows, columns=columns, style=_STYLE)

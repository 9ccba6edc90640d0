"""The log page's filters, from its query string (also the dashboard's links:
?worker_type=<type>&pid=<pid>)."""

from __future__ import annotations

import logging

from django import forms

WORKER_TYPES = ["api", "supervisor", "collector", "background", "workflow"]
LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
# <input type="datetime-local"> sends 2024-11-29T07:09 (or with seconds).
DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]


class LogFilterForm(forms.Form):
    worker_type = forms.ChoiceField(
        label="Worker type", required=False, choices=[("", "all"), *((t, t) for t in WORKER_TYPES)]
    )
    pid = forms.IntegerField(label="Process (pid)", required=False, min_value=0)
    level = forms.ChoiceField(label="Level at least", required=False, choices=[("", "any"), *((v, v) for v in LEVELS)])
    q = forms.CharField(label="Text contains", required=False, max_length=200)
    since = forms.DateTimeField(
        label="From (UTC)",
        required=False,
        input_formats=DATETIME_FORMATS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}, format="%Y-%m-%dT%H:%M:%S"),
    )
    until = forms.DateTimeField(
        label="To (UTC)",
        required=False,
        input_formats=DATETIME_FORMATS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}, format="%Y-%m-%dT%H:%M:%S"),
    )

    def level_number(self) -> int | None:
        name = self.cleaned_data.get("level")
        return logging.getLevelName(name) if name else None


class TailForm(LogFilterForm):
    """The JSON endpoint: the filters, and the last line id the page already has."""

    after = forms.IntegerField(required=False, min_value=0)

"""The dashboard's worker settings form: the admin's WorkerSettings validation (the model's
validators and clean()), for the three values an operator changes while the workers run."""

from __future__ import annotations

from django import forms

from queueing.models import WorkerSettings


class FleetSettingsForm(forms.ModelForm):
    class Meta:
        model = WorkerSettings
        fields = ["enabled", "replicas", "logging_level"]

"""Writes of the console."""

from __future__ import annotations

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import AbstractBaseUser

from console.forms import FleetSettingsForm
from queueing.worker import get_worker_settings


def update_fleet_settings(*, worker_type: str, data: dict, user: AbstractBaseUser) -> FleetSettingsForm:
    """Validates and saves enabled, replicas and logging level of one worker type; the
    supervisor and the workers re-read them within seconds. Returns the bound form (its
    errors, if invalid). Recorded in the admin's history like a change made there."""
    row = get_worker_settings(worker_type)
    form = FleetSettingsForm(data, instance=row, prefix=worker_type)  # the dashboard has one form per type
    if form.is_valid() and form.has_changed():
        form.save()
        LogEntry.objects.log_actions(
            user_id=user.pk,
            queryset=[row],
            action_flag=CHANGE,
            change_message=[{"changed": {"fields": form.changed_data}}],
            single_object=True,
        )
    return form

"""Worker settings in the admin."""

from __future__ import annotations

import pytest

from queueing.models import WorkerSettings

pytestmark = pytest.mark.django_db(transaction=True)


def test_worker_settings_are_edited_in_the_admin(admin_client, worker_settings):
    worker_settings("background")
    response = admin_client.post(
        "/admin/queueing/workersettings/background/change/",
        {
            "enabled": "on",
            "replicas": "3",
            "logging_level": "DEBUG",
            "min_batch_size": "10",
            "max_batch_size": "100",
            "max_time_in_buffer": "0.5",
        },
    )
    assert response.status_code == 302
    row = WorkerSettings.objects.get(worker_type="background")
    assert (row.replicas, row.logging_level, row.min_batch_size, row.max_time_in_buffer) == (3, "DEBUG", 10, 0.5)


def test_worker_settings_reject_a_min_batch_above_the_max(admin_client, worker_settings):
    worker_settings("background")
    response = admin_client.post(
        "/admin/queueing/workersettings/background/change/",
        {
            "enabled": "on",
            "replicas": "2",
            "logging_level": "DEBUG",
            "min_batch_size": "500",
            "max_batch_size": "100",
            "max_time_in_buffer": "1.0",
        },
    )
    assert response.status_code == 200
    assert "The minimum batch size cannot exceed the maximum batch size." in response.content.decode()


def test_worker_settings_cannot_be_added_once_every_type_has_its_row(admin_client, worker_settings):
    worker_settings("background")
    assert admin_client.get("/admin/queueing/workersettings/add/").status_code == 200
    worker_settings("collector")
    worker_settings("workflow")
    assert admin_client.get("/admin/queueing/workersettings/add/").status_code == 403

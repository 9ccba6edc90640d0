"""Migration 0007: worker settings still at the old maximum batch (1,000) take the new default."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("queueing", "0006_quarter_second_buffer")]
AFTER = [("queueing", "0007_batch_of_500")]


def migrate(targets: list[tuple[str, str]]):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_rows_at_the_old_default_take_500_and_chosen_values_stay():
    try:
        old = migrate(BEFORE).get_model("queueing", "WorkerSettings")
        old.objects.update_or_create(worker_type="background", defaults={"max_batch_size": 1000})
        old.objects.update_or_create(worker_type="collector", defaults={"max_batch_size": 1000, "min_batch_size": 800})
        old.objects.update_or_create(worker_type="workflow", defaults={"max_batch_size": 200})
        new = migrate(AFTER).get_model("queueing", "WorkerSettings")
        rows = new.objects.values_list("worker_type", "min_batch_size", "max_batch_size")
        sizes = {worker_type: (low, high) for worker_type, low, high in rows}
        assert sizes["background"][1] == 500
        assert sizes["collector"] == (500, 500)  # a minimum above the new maximum comes down to it
        assert sizes["workflow"][1] == 200
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())  # the latest, for the tests after

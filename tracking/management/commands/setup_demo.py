from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from rest_framework.authtoken.models import Token

from queueing.models import WorkerSettings
from tracking.models import EventSource

DEMO_SOURCE_ID = "locust-test"


class Command(BaseCommand):
    help = "Creates the admin user, an enabled demo event source and worker settings for a local run."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Where the server listens.")
        parser.add_argument(
            "--no-collector",
            action="store_true",
            help="On the first run, leave worker.collector.enabled off (the Helm default).",
        )

    def handle(self, *args: object, url: str, no_collector: bool, **options: object) -> None:
        password_file = settings.VAR_DIR / "admin-password"
        user_model = get_user_model()
        user = user_model.objects.filter(username="admin").first()
        first_run = user is None
        if first_run:
            password = os.environ.get("ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            user = user_model.objects.create_superuser("admin", "admin@localhost", password)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        token, _ = Token.objects.get_or_create(user=user)

        source, _ = EventSource.objects.get_or_create(
            id=DEMO_SOURCE_ID,
            defaults={"name": "Demo source", "description": "Created by setup_demo for local traffic."},
        )
        if not source.enabled:
            self.stdout.write(self.style.WARNING(f"Event source {DEMO_SOURCE_ID} exists but is disabled."))
        if first_run:
            # Once: later runs keep what was changed in the admin since.
            WorkerSettings.objects.update_or_create(worker_type="background", defaults={"enabled": True})
            WorkerSettings.objects.update_or_create(worker_type="collector", defaults={"enabled": not no_collector})
            WorkerSettings.objects.update_or_create(worker_type="workflow", defaults={"enabled": True})
        state = {
            t: "on" if WorkerSettings.objects.filter(worker_type=t, enabled=True).exists() else "off"
            for t in ("background", "collector", "workflow")
        }

        password = password_file.read_text().strip() if password_file.exists() else "(the password you set)"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"Admin:          {url}/admin/  (user: admin, password: {password})",
                    f"Queue console:  {url}/admin/console/queues/",
                    f"Tracking API:   POST {url}/track  (event source id: {DEMO_SOURCE_ID})",
                    f"Backlog API:    curl -H 'Authorization: Token {token.key}' {url}/queue/system/functions/backlog",
                    f"Demo traffic:   .venv/bin/python manage.py send_events --url {url}",
                    f"Workers:        background {state['background']}, collector {state['collector']}, "
                    f"workflow {state['workflow']} (change them in the admin under Worker settings)",
                    f"Workflows:      {url}/admin/workflows/workflow/  (or manage.py workflow_import FILE)",
                    "",
                ]
            )
        )

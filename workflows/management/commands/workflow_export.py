from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows.definitions import export_workflow
from workflows.models import Workflow


class Command(BaseCommand):
    help = "Prints a workflow in its JSON format (the published version, or the draft with --draft)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("workflow", help="the workflow's id or name")
        parser.add_argument("--draft", action="store_true", help="export the draft instead of the published version")

    def handle(self, *args: object, workflow: str, draft: bool, **options: object) -> None:
        found = Workflow.objects.filter(pk=int(workflow)).first() if workflow.isdigit() else None
        found = found or Workflow.objects.filter(name=workflow).first()
        if found is None:
            raise CommandError(f"There is no workflow {workflow!r} (give its id or name).")
        self.stdout.write(json.dumps(export_workflow(found, draft=draft), indent=2))

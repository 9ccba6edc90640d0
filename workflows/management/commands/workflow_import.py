from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows.definitions import DefinitionInvalid, import_workflow
from workflows.models import WorkflowVersion


class Command(BaseCommand):
    help = "Imports a workflow from its JSON file (creating or updating it by name), publishes it, sets its triggers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)

    def handle(self, *args: object, file: Path, **options: object) -> None:
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"Cannot read {file}: {exc}") from None
        name = data.get("name") if isinstance(data, dict) else None
        before = WorkflowVersion.objects.filter(workflow__name=name.strip()).count() if isinstance(name, str) else 0
        try:
            workflow = import_workflow(data, user="workflow_import")
        except DefinitionInvalid as exc:
            raise CommandError("The workflow was not imported:\n  " + "\n  ".join(exc.messages)) from None
        number = workflow.published.number
        # Publishing an unchanged graph makes no version: say so rather than "published".
        version = (
            f"version {number} published" if workflow.versions.count() > before else f"unchanged, version {number}"
        )
        self.stdout.write(
            f"Imported workflow {workflow.pk} {workflow.name!r}: {version}, {workflow.triggers.count()} trigger(s)."
        )

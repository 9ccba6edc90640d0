import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from tracking.models import EventMapping, EventReshaper, EventSource, EventValidator, SessionIdentity
from tracking.rules.engine import RuleSet, preview
from tracking.validation import PayloadInvalid, validate_track_payload

SAMPLE_PAYLOAD = {
    "source": {"id": "locust-test"},
    "session": {"id": "sample-session"},
    "events": [{"type": "purchase", "properties": {"order_id": "A-1", "total": 120.5, "email": "ann@example.com"}}],
    "context": {"page": {"url": "https://shop.example.com/checkout?utm_source=news"}},
}


@admin.register(EventSource)
class EventSourceAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "bridge", "enabled", "transitional", "static_profile_id", "bot_filter", "updated_at"]
    list_filter = ["enabled", "transitional", "static_profile_id", "strict_validation", "bot_filter", "bridge"]
    search_fields = ["id", "name", "description"]
    readonly_fields = ["created_at", "updated_at"]
    actions = ["enable_sources", "disable_sources"]
    fieldsets = [
        (None, {"fields": ["id", "name", "description", "bridge", "enabled"]}),
        (
            "Processing",
            {
                "fields": [
                    "transitional",
                    "static_profile_id",
                    "strict_validation",
                    "bot_filter",
                    "allowed_origins",
                    "accept_without_origin",
                ]
            },
        ),
        ("Times", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: EventSource | None = None) -> list[str]:
        # Clients send the id; changing it would silently cut them off.
        return [*self.readonly_fields, "id"] if obj else self.readonly_fields

    @admin.action(description="Enable selected event sources")
    def enable_sources(self, request: HttpRequest, queryset: QuerySet[EventSource]) -> None:
        count = queryset.update(enabled=True, updated_at=timezone.now())
        self.message_user(request, f"Enabled {count} event source(s).", messages.SUCCESS)

    @admin.action(description="Disable selected event sources")
    def disable_sources(self, request: HttpRequest, queryset: QuerySet[EventSource]) -> None:
        count = queryset.update(enabled=False, updated_at=timezone.now())
        self.message_user(
            request, f"Disabled {count} event source(s); /track rejects them within 2 seconds.", messages.SUCCESS
        )


class RuleAdmin(admin.ModelAdmin):
    """List, filter, search and edit pages, and the "test this rule" action, for every rule type."""

    list_display = ["name", "event_type", "source", "enabled", "updated_at"]
    list_filter = ["enabled", "event_type", "source"]
    search_fields = ["name", "event_type", "description"]
    readonly_fields = ["created_at", "updated_at"]
    actions = ["test_rules"]
    rule_kind = ""
    head = ["name", "event_type", "source", "enabled"]
    tail = ["description", "created_at", "updated_at"]

    @admin.action(description="Test selected rules on a sample payload (stores nothing)")
    def test_rules(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        sample = request.POST.get("sample") or json.dumps(SAMPLE_PAYLOAD, indent=2)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Test rules",
            "rules": [str(rule) for rule in queryset],
            "selected": [str(pk) for pk in queryset.values_list("pk", flat=True)],
            "sample": sample,
            "source_id": request.POST.get("source_id", ""),
            "results": None,
        }
        if request.POST.get("run"):
            try:
                data = json.loads(sample)
                if not isinstance(data, dict):
                    raise PayloadInvalid([{"path": "$", "message": "Expected an object."}])
                payload = validate_track_payload(data)
            except json.JSONDecodeError as exc:
                context["error"] = f"The sample is not JSON: {exc}"
            except PayloadInvalid as exc:
                context["error"] = "The sample is not a valid payload: " + "; ".join(
                    f"{e['path']}: {e['message']}" for e in exc.errors
                )
            else:
                # The selected rules (enabled or not) with the enabled rules of the other kinds.
                enabled = {
                    "validators": EventValidator.objects.filter(enabled=True),
                    "reshapers": EventReshaper.objects.filter(enabled=True),
                    "mappings": EventMapping.objects.filter(enabled=True),
                }
                rules = RuleSet.compile(**{**enabled, self.rule_kind: queryset})
                source_id = context["source_id"] or payload["source"]["id"]
                context["results"] = preview(payload=payload, source_id=source_id, rules=rules)
                context["results_json"] = json.dumps(context["results"], indent=2, ensure_ascii=False)
        return TemplateResponse(request, "admin/tracking/test_rules.html", context)


@admin.register(EventValidator)
class EventValidatorAdmin(RuleAdmin):
    list_display = [*RuleAdmin.list_display[:3], "target", *RuleAdmin.list_display[3:]]
    list_filter = [*RuleAdmin.list_filter, "target"]
    fields = [*RuleAdmin.head, "target", "schema", *RuleAdmin.tail]
    rule_kind = "validators"


@admin.register(EventReshaper)
class EventReshaperAdmin(RuleAdmin):
    list_display = [*RuleAdmin.list_display[:3], "priority", *RuleAdmin.list_display[3:]]
    fields = [
        *RuleAdmin.head, "priority", "properties_template", "keep_original_properties", "context_template",
        "session_context_template", *RuleAdmin.tail,
    ]  # fmt: skip
    rule_kind = "reshapers"


@admin.register(EventMapping)
class EventMappingAdmin(RuleAdmin):
    fields = [
        "name",
        "event_type",
        "source",
        "enabled",
        "condition",
        "mappings",
        "description",
        "created_at",
        "updated_at",
    ]
    rule_kind = "mappings"


@admin.register(SessionIdentity)
class SessionIdentityAdmin(admin.ModelAdmin):
    list_display = ["session_id", "profile_id", "source_id", "created_at"]
    search_fields = ["session_id", "profile_id"]
    list_filter = ["source_id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SessionIdentity | None = None) -> bool:
        return False

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from tracking.models import EventSource, SessionIdentity


@admin.register(EventSource)
class EventSourceAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "bridge", "enabled", "transitional", "static_profile_id", "updated_at"]
    list_filter = ["enabled", "transitional", "static_profile_id", "bridge"]
    search_fields = ["id", "name", "description"]
    readonly_fields = ["created_at", "updated_at"]
    actions = ["enable_sources", "disable_sources"]
    fieldsets = [
        (None, {"fields": ["id", "name", "description", "bridge", "enabled"]}),
        ("Processing", {"fields": ["transitional", "static_profile_id", "allowed_origins"]}),
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


@admin.register(SessionIdentity)
class SessionIdentityAdmin(admin.ModelAdmin):
    list_display = ["session_id", "profile_id", "source_id", "created_at"]
    search_fields = ["session_id", "profile_id"]
    list_filter = ["source_id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SessionIdentity | None = None) -> bool:
        return False

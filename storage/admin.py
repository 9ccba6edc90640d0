from django.contrib import admin
from django.http import HttpRequest

from storage.models import ProfileTombstone


@admin.register(ProfileTombstone)
class ProfileTombstoneAdmin(admin.ModelAdmin):
    """Deleted profiles; deleting a tombstone lets that profile id be stored again."""

    list_display = ("profile_id", "deleted_at", "deleted_by")
    search_fields = ("profile_id",)
    readonly_fields = ("profile_id", "deleted_at", "deleted_by")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created by the GDPR deletion only (console or API)

    def has_change_permission(self, request: HttpRequest, obj: ProfileTombstone | None = None) -> bool:
        return False

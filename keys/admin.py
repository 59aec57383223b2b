from django.contrib import admin

from keys.models import ApiKey, ManagementKey


class ReadOnlyKeyAdmin(admin.ModelAdmin):
    """Staff can look keys up for support; only their owners manage them, in the console."""

    list_display = ["name", "masked", "account", "status", "created_at", "last_used_at"]
    list_filter = ["status"]
    search_fields = ["name", "public_id", "prefix", "account__name"]
    exclude = ["digest"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyKeyAdmin):
    list_display = [*ReadOnlyKeyAdmin.list_display, "group"]
    list_filter = ["status", "group"]


@admin.register(ManagementKey)
class ManagementKeyAdmin(ReadOnlyKeyAdmin):
    pass

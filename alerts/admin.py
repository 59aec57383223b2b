from django.contrib import admin

from alerts.models import Alert, AlertDelivery, AlertRule, NotificationChannel


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "account", "enabled", "created_at")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "public_id", "account__name")
    # The secret is never shown (only its hint), nor changed here.
    exclude = ("secret_ciphertext",)
    readonly_fields = ("public_id", "secret_hint", "created_by", "created_at")


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ("public_id", "kind", "account", "threshold", "streak", "enabled")
    list_filter = ("kind", "enabled")
    search_fields = ("public_id", "account__name")
    raw_id_fields = ("account", "api_key", "channels")


class AlertDeliveryInline(admin.TabularInline):
    model = AlertDelivery
    extra = 0
    can_delete = False
    fields = ("channel_name", "channel_kind", "status", "attempts", "last_status_code",
              "last_error", "delivered_at")  # fmt: skip
    readonly_fields = fields


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ("title", "event_type", "account", "created_at")
    list_filter = ("event_type",)
    search_fields = ("public_id", "account__name", "dedupe_key")
    readonly_fields = ("public_id", "account", "rule", "event_type", "level", "title",
                       "dedupe_key", "data", "created_at")  # fmt: skip
    inlines = [AlertDeliveryInline]

    def has_add_permission(self, request):
        return False

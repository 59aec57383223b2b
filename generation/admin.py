"""The Channel admin, with each channel's health and the operators' actions on it.

catalogue may not import generation, so the catalogue's ChannelAdmin is replaced here (generation
comes after catalogue in INSTALLED_APPS, so its admin module is imported later) by a subclass
adding columns (breakers, error rate and p95 over the last minutes) and actions (test, disable,
enable) that do what the console's channel page does, through channel_ops.py.
"""

from django.contrib import admin, messages

from catalogue.admin import ChannelAdmin
from catalogue.models import Channel
from generation import health
from generation.channel_ops import channel_set_enabled, channel_test, channels_health

admin.site.unregister(Channel)


@admin.register(Channel)
class ChannelHealthAdmin(ChannelAdmin):
    list_display = [*ChannelAdmin.list_display, "breaker_states", "error_rate", "latency_p95"]
    actions = ["test_channels", "disable_channels", "enable_channels"]

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        # One read of the breakers and statistics for the page's channels, not one per cell (the
        # page's rows are these same objects: the result list keeps what it fetched).
        for row in channels_health(changelist.result_list):
            row.channel.health = row
        return changelist

    @admin.display(description="Breakers")
    def breaker_states(self, channel: Channel) -> str:
        return channel.health.breakers_text or "—"

    @admin.display(description=f"Error rate ({health.RECENT_MINUTES} min)")
    def error_rate(self, channel: Channel) -> str:
        stats = channel.health.stats
        return f"{stats.error_rate_text} of {stats.calls}"

    @admin.display(description=f"Latency p95 ({health.RECENT_MINUTES} min)")
    def latency_p95(self, channel: Channel) -> str:
        return channel.health.stats.p95_text

    @admin.action(
        description="Test the selected channels (one small call each)", permissions=["change"]
    )
    def test_channels(self, request, queryset):
        for channel in queryset:
            result = channel_test(channel)
            if result is None:
                self.message_user(
                    request,
                    f"{channel.name}: no text model is deployed here; a test call is not "
                    "available for image and video channels.",
                    messages.WARNING,
                )
            elif result.ok:
                self.message_user(
                    request,
                    f"{channel.name}: {result.status} in {result.latency_ms} ms "
                    f"({result.upstream_model}).",
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    f"{channel.name}: {result.status} in {result.latency_ms} ms: {result.message}",
                    messages.ERROR,
                )

    @admin.action(description="Disable the selected channels", permissions=["change"])
    def disable_channels(self, request, queryset):
        self._set_enabled(request, queryset, enabled=False)

    @admin.action(description="Enable the selected channels", permissions=["change"])
    def enable_channels(self, request, queryset):
        self._set_enabled(request, queryset, enabled=True)

    def _set_enabled(self, request, queryset, *, enabled: bool) -> None:
        changed = [
            channel.slug
            for channel in queryset
            if channel_set_enabled(channel, enabled=enabled, actor=request.user)
        ]
        done = "Enabled" if enabled else "Disabled"
        self.message_user(
            request, f"{done}: {', '.join(changed)}." if changed else "Nothing to change."
        )

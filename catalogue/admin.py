from django import forms
from django.contrib import admin

from catalogue.models import AIModel, Channel


class ChannelForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave blank to keep the stored secret. It is encrypted at rest and never "
        "shown again; the hint shows its last characters.",
    )
    clear_secret = forms.BooleanField(required=False, help_text="Remove the stored secret.")

    class Meta:
        model = Channel
        fields = ["slug", "name", "kind", "mode", "base_url"]

    def save(self, commit=True):
        channel = super().save(commit=False)
        if self.cleaned_data.get("clear_secret"):
            channel.set_secret("")
        elif self.cleaned_data.get("secret"):
            channel.set_secret(self.cleaned_data["secret"])
        if commit:
            channel.save()
        return channel


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ["slug", "name", "kind", "mode", "base_url", "secret_hint"]
    list_filter = ["kind", "mode"]
    readonly_fields = ["secret_hint", "created_at"]


@admin.register(AIModel)
class AIModelAdmin(admin.ModelAdmin):
    list_display = ["slug", "display_name", "family", "channel", "upstream_model", "is_active"]
    list_filter = ["family", "channel", "groups", "is_active"]
    search_fields = ["slug", "display_name", "upstream_model"]
    filter_horizontal = ["groups"]
    fieldsets = [
        (None, {"fields": ["slug", "display_name", "family", "description", "is_active"]}),
        ("Routing", {"fields": ["channel", "upstream_model", "groups", "capabilities"]}),
        (
            "Prices (micro-credits, before the group multiplier)",
            {
                "fields": [
                    "input_price",
                    "output_price",
                    "cache_read_price",
                    "cache_write_price",
                    "image_prices",
                    "video_price_per_second",
                    "video_submit_fee",
                ]
            },
        ),
        (
            "Limits",
            {
                "fields": [
                    "context_window",
                    "max_output_tokens",
                    "max_images",
                    "sizes",
                    "durations",
                    "aspect_ratios",
                    "estimated_seconds",
                    "max_run_seconds",
                    "cancel_refund_policy",
                ]
            },
        ),
    ]

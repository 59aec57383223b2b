from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from catalogue import rules
from catalogue.models import AIModel, Channel, Deployment, ModelAlias


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
        fields = [
            "slug", "name", "kind", "mode", "base_url", "is_enabled", "sandbox_failure_rate",
            "sandbox_timeout_rate", "sandbox_latency_ms", "sandbox_outage_start",
            "sandbox_outage_end",
        ]  # fmt: skip

    FAULTS = ("sandbox_failure_rate", "sandbox_timeout_rate", "sandbox_latency_ms")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.FAULTS:  # a live channel's form need not say "no faults"
            self.fields[name].required = False

    def clean(self):
        data = super().clean()
        for name in self.FAULTS:
            if data.get(name) is None:
                data[name] = 0
        for rate in ("sandbox_failure_rate", "sandbox_timeout_rate"):
            if data.get(rate) is not None and not 0 <= data[rate] <= 1:
                self.add_error(rate, "A share of calls: from 0 to 1.")
        start, end = data.get("sandbox_outage_start"), data.get("sandbox_outage_end")
        if (start is None) != (end is None):
            raise ValidationError("A sandbox outage needs both a start and an end.")
        if start and end and end <= start:
            raise ValidationError("The sandbox outage must end after it starts.")
        if self.instance.pk and data.get("kind") and data["kind"] != self.instance.kind:
            for deployment in self.instance.deployments.select_related("model"):
                probe = Channel(kind=data["kind"], mode=data.get("mode", self.instance.mode))
                if not probe.serves(deployment.model.family):
                    raise ValidationError(
                        f"The model '{deployment.model.slug}' is deployed on this channel and "
                        f"a {probe.get_kind_display()} channel cannot serve it."
                    )
        return data

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
    list_display = ["slug", "name", "kind", "mode", "is_enabled", "base_url", "secret_hint"]
    list_filter = ["kind", "mode", "is_enabled"]
    readonly_fields = ["secret_hint", "created_at"]
    fieldsets = [
        (None, {"fields": ["slug", "name", "kind", "mode", "is_enabled"]}),
        ("Upstream", {"fields": ["base_url", "secret", "clear_secret", "secret_hint"]}),
        (
            "Sandbox faults (to show failover offline)",
            {
                "fields": [
                    "sandbox_failure_rate",
                    "sandbox_timeout_rate",
                    "sandbox_latency_ms",
                    "sandbox_outage_start",
                    "sandbox_outage_end",
                ]
            },
        ),
        (None, {"fields": ["created_at"]}),
    ]


class DeploymentFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        if any(self.errors):
            return
        kept = [
            form.cleaned_data
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        if not kept:
            raise ValidationError("A model needs at least one deployment.")
        rules.check_deployments(self.instance.family, kept)


class DeploymentInline(admin.TabularInline):
    model = Deployment
    formset = DeploymentFormSet
    fields = ["channel", "upstream_model", "priority", "weight", "is_enabled"]
    extra = 0
    min_num = 1


@admin.register(AIModel)
class AIModelAdmin(admin.ModelAdmin):
    list_display = ["slug", "display_name", "family", "upstreams", "is_active"]
    list_filter = ["family", "deployments__channel", "groups", "is_active"]
    search_fields = ["slug", "display_name", "deployments__upstream_model"]
    filter_horizontal = ["groups"]
    inlines = [DeploymentInline]
    fieldsets = [
        (None, {"fields": ["slug", "display_name", "family", "description", "is_active"]}),
        (
            "Routing",
            {
                "fields": [
                    "groups",
                    "capabilities",
                    "max_attempts",
                    "failover_deadline_seconds",
                    "attempt_timeout_seconds",
                ]
            },
        ),
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

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("deployments__channel")

    @admin.display(description="Deployments")
    def upstreams(self, model: AIModel) -> str:
        return ", ".join(f"{d.channel.slug}:{d.upstream_model}" for d in model.deployments.all())


class ModelAliasFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        if any(self.errors):
            return
        aliases = {
            form.cleaned_data["alias"]: form.cleaned_data["target"]
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        }
        rules.check_aliases(aliases)


class ModelAliasInline(admin.TabularInline):
    """Shown on a routing group (accounts/admin.py): the names it gives its models."""

    model = ModelAlias
    formset = ModelAliasFormSet
    fields = ["alias", "target"]
    extra = 0

"""Forms of the alerts page: a channel (its target is checked by the service, whose
``TargetError`` names the problem under the field) and a rule (its fields by kind)."""

from django import forms

from alerts.models import ChannelKind, NotificationChannel, RuleKind
from core.money import AmountError, credits_text, to_micros

TARGET_HELP = (
    "Email: one or more addresses, separated by commas. Webhook: an https URL; messages are "
    "signed with a secret shown once. Slack: the channel's incoming webhook URL "
    "(https://hooks.slack.com/services/…)."
)


class ChannelForm(forms.Form):
    kind = forms.ChoiceField(label="Kind", choices=ChannelKind.choices)
    name = forms.CharField(label="Name", max_length=100)
    target = forms.CharField(
        label="Send to",
        max_length=2000,
        help_text=TARGET_HELP,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    enabled = forms.BooleanField(label="Enabled", required=False, initial=True)

    def __init__(self, *args, channel: NotificationChannel | None = None, **kwargs):
        kwargs.setdefault("auto_id", "channel_%s")  # the rule form shares the page
        if channel is not None:
            kwargs.setdefault(
                "initial",
                {"name": channel.name, "target": channel.target, "enabled": channel.enabled},
            )
        super().__init__(*args, **kwargs)
        if channel is not None:
            del self.fields["kind"]  # a channel keeps its kind (and a webhook its secret)
        else:
            del self.fields["enabled"]


# The fields each kind of rule takes.
KIND_FIELDS = {
    "threshold": (RuleKind.BALANCE_BELOW, RuleKind.MONTHLY_SPEND),
    "api_key": (RuleKind.KEY_QUOTA,),
    "streak": (RuleKind.CALLBACK_FAILURES,),
}


class RuleForm(forms.Form):
    kind = forms.ChoiceField(label="When", choices=RuleKind.choices)
    threshold = forms.CharField(
        label="Threshold (credits)",
        required=False,
        help_text="Balance below, and monthly spend rules.",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )
    api_key = forms.ChoiceField(
        label="Key",
        required=False,
        help_text="Key rules: 80% and 100% of its quota and of each cap.",
    )
    streak = forms.IntegerField(
        label="Failed callbacks in a row",
        required=False,
        min_value=1,
        max_value=1000,
        help_text="Failed callback rules.",
    )
    channels = forms.MultipleChoiceField(
        label="Send to", required=False, widget=forms.CheckboxSelectMultiple
    )
    enabled = forms.BooleanField(label="Enabled", required=False, initial=True)

    def __init__(self, *args, keys=(), channels=(), rule=None, **kwargs):
        kwargs.setdefault("auto_id", "rule_%s")
        if rule is not None:
            kwargs.setdefault(
                "initial",
                {
                    "threshold": credits_text(rule.threshold) if rule.threshold else "",
                    "api_key": rule.api_key.public_id if rule.api_key else "",
                    "streak": rule.streak,
                    "channels": [channel.public_id for channel in rule.channels.all()],
                    "enabled": rule.enabled,
                },
            )
        super().__init__(*args, **kwargs)
        self.keys = {key.public_id: key for key in keys}
        self.channel_objects = {channel.public_id: channel for channel in channels}
        self.fields["api_key"].choices = [("", "Every key with a limit")] + [
            (key.public_id, key.name) for key in keys
        ]
        self.fields["channels"].choices = [
            (channel.public_id, f"{channel.name} ({channel.get_kind_display()})")
            for channel in channels
        ]
        self.rule = rule
        if rule is None:
            del self.fields["enabled"]  # a new rule is enabled
        else:
            del self.fields["kind"]  # a rule keeps its kind, and shows only its own fields
            for name, kinds in KIND_FIELDS.items():
                if rule.kind not in kinds:
                    del self.fields[name]

    @property
    def rule_kind(self) -> str:
        return self.rule.kind if self.rule else self.cleaned_data.get("kind", "")

    def clean_threshold(self) -> int | None:
        value = self.cleaned_data["threshold"].replace(",", "").strip()
        if not value:
            return None
        try:
            return to_micros(value, allow_zero=False)
        except AmountError as error:
            raise forms.ValidationError(str(error)) from None

    def clean(self):
        data = super().clean()
        kind = self.rule_kind
        if kind in (RuleKind.BALANCE_BELOW, RuleKind.MONTHLY_SPEND) and not data.get("threshold"):
            self.add_error("threshold", "Enter the threshold in credits.")
        if kind == RuleKind.CALLBACK_FAILURES and not data.get("streak"):
            self.add_error("streak", "Enter how many failed callbacks in a row alert you.")
        if not data.get("channels"):
            self.add_error("channels", "Choose at least one channel to send to.")
        data["api_key_object"] = self.keys.get(data.get("api_key") or "")
        if data.get("api_key") and data["api_key_object"] is None:
            self.add_error("api_key", "Choose one of this account's keys.")
        data["channel_objects"] = [self.channel_objects[c] for c in data.get("channels", [])]
        return data

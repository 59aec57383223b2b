"""Forms of the API key pages: create a key, edit its limits, create a management key.

Amounts are typed in credits and cleaned into micro-credits with ``core.money``; address
lists are cleaned with the same rules the management API uses (``keys.services``). Every limit
is optional: empty is no limit (None), and 0 is refused, since pausing is how a key is stopped.
The models a key may call are checkboxes, none checked meaning every model of its group; the
key services check them against the key's group.
"""

from datetime import UTC, date, datetime, time, timedelta

from django import forms
from django.utils import timezone

from catalogue.models import AIModel
from catalogue.selectors import models_in_group
from core import money
from core.money import AmountError, to_micros
from keys.models import ApiKey
from keys.services import COUNT_LIMITS, MAX_NAME, KeyRuleError, clean_cidrs

CREDIT_FIELDS = ("quota", "rate_limit_5h", "rate_limit_1d", "rate_limit_7d")
COUNT_FIELDS = ("rpm", "tpm", "max_concurrent")
LIMIT_FIELDS = (*CREDIT_FIELDS, *COUNT_FIELDS)
MAX_EXPIRY_DAYS = 3650
# The key services' refusal of 0 names the API's "status"; the console has a Pause button.
ZERO_LIMIT_MESSAGE = (
    "A limit of 0 would stop the key. Leave it empty for no limit; "
    "to stop the key for now, use Pause on its page."
)


def credits_text(micros: int | None) -> str:
    """A form value in credits: empty for no limit, no trailing zeros otherwise."""
    return "" if micros is None else money.credits_text(micros)


class CreditsField(forms.CharField):
    """An optional amount of credits, cleaned to micro-credits; empty means None (no limit)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "widget",
            forms.TextInput(
                attrs={"inputmode": "decimal", "placeholder": "Unlimited", "autocomplete": "off"}
            ),
        )
        super().__init__(**kwargs)

    def clean(self, value):
        value = super().clean(value)
        if not value:
            return None
        try:
            micros = to_micros(value.replace(",", ""))
        except AmountError as error:
            raise forms.ValidationError(str(error)) from None
        if micros == 0:
            raise forms.ValidationError(ZERO_LIMIT_MESSAGE)
        return micros


class CountField(forms.CharField):
    """An optional whole number (requests, tokens, calls); empty means None (no limit).

    Typed as text, so "100,000" is fine (a number input would refuse the comma).
    """

    def __init__(self, *, maximum: int, **kwargs):
        self.maximum = maximum
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "widget",
            forms.TextInput(
                attrs={"inputmode": "numeric", "placeholder": "Unlimited", "autocomplete": "off"}
            ),
        )
        super().__init__(**kwargs)

    def clean(self, value):
        value = super().clean(value)
        if not value:
            return None
        digits = value.replace(",", "").replace("_", "").replace(" ", "")
        try:
            number = int(digits)
        except ValueError:
            raise forms.ValidationError("Enter a whole number, like 60.") from None
        if number == 0:
            raise forms.ValidationError(ZERO_LIMIT_MESSAGE)
        if number < 0:
            raise forms.ValidationError("Enter a whole number, 1 or more.")
        if number > self.maximum:
            raise forms.ValidationError(f"Enter at most {self.maximum:,}.")
        return number


class CidrListField(forms.CharField):
    """IP addresses or CIDR blocks, one per line (commas and spaces also separate)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "widget",
            forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "autocomplete": "off"}),
        )
        super().__init__(**kwargs)

    def clean(self, value):
        value = super().clean(value)
        try:
            return clean_cidrs(value or "", "ip_list")
        except KeyRuleError as error:
            raise forms.ValidationError(str(error)) from None


ALLOWED_MODELS_HELP = "The key may call only the models checked. None checked: every model."


def allowed_models_field(models) -> forms.MultipleChoiceField:
    """Checkboxes of ``models`` (AIModel rows), by slug."""
    return forms.MultipleChoiceField(
        label="Models",
        required=False,
        choices=[(model.slug, f"{model.display_name} ({model.slug})") for model in models],
        widget=forms.CheckboxSelectMultiple,
        help_text=ALLOWED_MODELS_HELP,
        error_messages={"invalid_choice": "“%(value)s” is not a model this key can call."},
    )


def _limit_fields() -> dict:
    return {
        "quota": CreditsField(
            label="Quota (credits)",
            help_text="A lifetime spending cap for this key. Empty means unlimited.",
        ),
        "rate_limit_5h": CreditsField(label="Per 5 hours"),
        "rate_limit_1d": CreditsField(label="Per day"),
        "rate_limit_7d": CreditsField(label="Per 7 days"),
        "rpm": CountField(
            label="Requests per minute",
            maximum=COUNT_LIMITS["rpm"],
            help_text="Calls the key may make in any minute. Empty means unlimited.",
        ),
        "tpm": CountField(
            label="Tokens per minute (input + output)",
            maximum=COUNT_LIMITS["tpm"],
            help_text="Input and output tokens together, in any minute. Empty means unlimited.",
        ),
        "max_concurrent": CountField(
            label="Calls at once",
            maximum=COUNT_LIMITS["max_concurrent"],
            help_text="Calls that may run at the same time. Empty means unlimited.",
        ),
        "ip_allowlist": CidrListField(
            label="IP allowlist",
            help_text="One address or CIDR block per line. Empty allows every address.",
        ),
        "ip_denylist": CidrListField(
            label="IP denylist",
            help_text="One address or CIDR block per line. Checked before the allowlist.",
        ),
    }


class _KeyForm(forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=MAX_NAME,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields.update(_limit_fields())

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the key a name.")
        return name

    def add_rule_error(self, error: KeyRuleError, fields: dict | None = None) -> None:
        """Show a service's refusal next to the input it is about."""
        field = (fields or {}).get(error.field, error.field)
        self.add_error(field if field in self.fields else None, str(error))

    @property
    def limits_have_input(self) -> bool:
        """Whether the optional limits section should start open."""
        names = [
            *LIMIT_FIELDS,
            "ip_allowlist",
            "ip_denylist",
            "allowed_models",
            "expires_in_days",
            "expires_on",
        ]
        return any(self[name].value() for name in names if name in self.fields) or any(
            name in self.errors for name in names
        )


def project_field(projects) -> forms.ModelChoiceField:
    """The projects a key may be created in or moved to: those the user may make keys in."""
    return forms.ModelChoiceField(
        label="Project",
        queryset=projects,
        empty_label=None,
        to_field_name="public_id",
        help_text="Members of the project use its keys; its usage is reported under it.",
        error_messages={
            "required": "Choose the project the key belongs to.",
            "invalid_choice": "Choose one of your projects.",
        },
    )


class ApiKeyCreateForm(_KeyForm):
    """Name, one group from those available to the account, and optional limits."""

    group = forms.ModelChoiceField(
        label="Routing group",
        queryset=None,
        widget=forms.RadioSelect,
        empty_label=None,
        error_messages={
            "required": "Choose the group whose models the key will call.",
            "invalid_choice": "Choose one of the groups available to this account.",
        },
    )
    expires_in_days = forms.IntegerField(
        label="Expires in (days)",
        required=False,
        min_value=1,
        max_value=MAX_EXPIRY_DAYS,
        help_text="Empty means the key never expires.",
        widget=forms.NumberInput(attrs={"placeholder": "Never"}),
    )

    field_order = ["name", "project", "group", "quota", "expires_in_days"]

    def __init__(self, *args, groups, projects, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["group"].queryset = groups
        self.fields["project"] = project_field(projects)
        # Not sent (a script, an old form): the default project, or the user's only one.
        self.fields["project"].required = False
        # Every model of the groups on offer; the key services keep those of the chosen group.
        models = (
            AIModel.objects.filter(groups__in=groups, is_active=True)
            .distinct()
            .order_by("family", "slug")
        )
        self.fields["allowed_models"] = allowed_models_field(models)
        # Focused when the dialog opens (showModal honours autofocus inside the dialog).
        self.fields["name"].widget.attrs["autofocus"] = True
        self.order_fields(self.field_order)

    def issue_options(self) -> dict:
        """The keyword arguments ``api_key_issue`` takes, from the cleaned data."""
        data = self.cleaned_data
        days = data.get("expires_in_days")
        return {
            "name": data["name"],
            "project": data["project"],
            "group": data["group"],
            "expires_at": timezone.now() + timedelta(days=days) if days else None,
            "ip_allowlist": data["ip_allowlist"],
            "ip_denylist": data["ip_denylist"],
            "allowed_models": data["allowed_models"],
            **{field: data[field] for field in LIMIT_FIELDS},
        }


def expiry_day(expires_at: datetime | None) -> date | None:
    """The last day (UTC) a key works: the day before an expiry at midnight."""
    if expires_at is None:
        return None
    return (expires_at.astimezone(UTC) - timedelta(microseconds=1)).date()


def expiry_from_day(day: date | None) -> datetime | None:
    """A key set to expire "on" a day works through that day (UTC)."""
    if day is None:
        return None
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


class ApiKeyEditForm(_KeyForm):
    """A key's name, limits, expiry day and IP lists; its group never changes."""

    expires_on = forms.DateField(
        label="Expires on",
        required=False,
        help_text="The key stops working at the end of this day (UTC). Empty: never.",
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )

    field_order = ["name", "project", "quota", "expires_on"]

    def __init__(self, *args, key: ApiKey, projects, **kwargs):
        self.key = key
        models = list(models_in_group(key.group_id))
        # What the key allows of its group's models now (a model since taken out of the group
        # or retired has no checkbox, and is dropped only when the allowlist changes).
        slugs = {model.slug for model in models}
        self.shown_allowed = [slug for slug in key.allowed_models if slug in slugs]
        kwargs.setdefault(
            "initial",
            {
                "name": key.name,
                "project": key.project.public_id,
                "allowed_models": self.shown_allowed,
                "expires_on": expiry_day(key.expires_at),
                "ip_allowlist": "\n".join(key.ip_allowlist),
                "ip_denylist": "\n".join(key.ip_denylist),
                **{field: credits_text(getattr(key, field)) for field in CREDIT_FIELDS},
                **{field: getattr(key, field) for field in COUNT_FIELDS},
            },
        )
        super().__init__(*args, **kwargs)
        self.fields["allowed_models"] = allowed_models_field(models)
        # Moving a key is for those who may make keys in the other project too.
        self.fields["project"] = project_field(projects)
        self.fields["project"].required = False  # not sent: the key stays where it is
        self.fields[
            "project"
        ].help_text = (
            "Moving the key moves its future spend; past usage stays with the project it was in."
        )
        self.order_fields(self.field_order)

    def clean_expires_on(self):
        day = self.cleaned_data.get("expires_on")
        unchanged = day == expiry_day(self.key.expires_at)
        if day is not None and not unchanged and day < timezone.now().astimezone(UTC).date():
            raise forms.ValidationError("Choose today or a later day.")
        return day

    def changes(self) -> dict:
        """Only what differs from the key, so an untouched past expiry is not re-checked."""
        data = self.cleaned_data
        changes = {
            field: data[field]
            for field in ("name", *LIMIT_FIELDS, "ip_allowlist", "ip_denylist")
            if data[field] != getattr(self.key, field)
        }
        if data["expires_on"] != expiry_day(self.key.expires_at):
            changes["expires_at"] = expiry_from_day(data["expires_on"])
        if set(data["allowed_models"]) != set(self.shown_allowed):
            changes["allowed_models"] = data["allowed_models"]
        if data["project"] is not None and data["project"].pk != self.key.project_id:
            changes["project"] = data["project"]
        return changes


class ManagementKeyCreateForm(forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=MAX_NAME,
        help_text="Say where it is used, such as “CI deploys”.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the key a name.")
        return name

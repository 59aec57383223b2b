"""Forms of the accounts pages and the extra sign-up fields."""

import zoneinfo

from django import forms

from accounts import onboarding
from accounts.models import Role
from accounts.permissions import ROLE_SUMMARIES


class SignupExtraForm(forms.Form):
    """Fields allauth's sign-up form adds; ``signup`` runs once the user is saved."""

    name = forms.CharField(label="Your name", max_length=150, required=False)
    account_name = forms.CharField(
        label="Account name",
        max_length=100,
        required=False,
        help_text="Your company or team. You can change it later.",
    )

    def signup(self, request, user) -> None:
        onboarding.onboard_new_user(
            request,
            user,
            name=self.cleaned_data.get("name", ""),
            account_name=self.cleaned_data.get("account_name", ""),
        )


def role_choices():
    return [(role.value, f"{role.label}: {ROLE_SUMMARIES[role]}") for role in Role]


class InvitationForm(forms.Form):
    email = forms.EmailField(label="Email address", max_length=254)
    role = forms.ChoiceField(label="Role", choices=role_choices, initial=Role.DEVELOPER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=Role.choices)


class AccountNameForm(forms.Form):
    name = forms.CharField(label="Account name", max_length=100)

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the account a name.")
        return name


class TimeZoneForm(forms.Form):
    time_zone = forms.CharField(
        label="Time zone",
        max_length=64,
        help_text="An IANA name, like Europe/Paris or America/New_York. Usage, the wallet and "
        "their CSV files read days, today, yesterday and months in it.",
        widget=forms.TextInput(
            attrs={"list": "time-zones", "autocomplete": "off", "spellcheck": "false"}
        ),
    )

    def clean_time_zone(self) -> str:
        name = self.cleaned_data["time_zone"].strip()
        if name.upper() == "UTC":
            return "UTC"
        if name not in time_zone_names():
            raise forms.ValidationError(
                f"{name!r} is not a time zone. Use an IANA name, like Europe/Paris or UTC."
            )
        return name


def time_zone_names() -> list[str]:
    """Every IANA zone name this machine knows, sorted."""
    return sorted(zoneinfo.available_timezones())

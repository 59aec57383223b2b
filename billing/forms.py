"""Forms of the wallet and usage pages.

The filter forms only draw the controls and show a complaint: the parsing belongs to
``billing.reports`` (``usage_filter_from``, ``ledger_filter_from``), which the CSV export and the
management API share, so a page and its export read the same parameters the same way. Amounts
are typed in credits and parsed with ``core.money``.
"""

from django import forms

from billing.errors import BillingError
from billing.models import LedgerKind
from billing.reports import FilterError
from catalogue.models import Family
from core.money import AmountError, to_micros

GROUP_BY_CHOICES = [
    ("day", "Day"),
    ("hour", "Hour"),
    ("model", "Model"),
    ("api_key", "Key"),
    ("project", "Project"),
    ("member", "Member"),
    ("tag", "Tag"),
    ("key_model", "Key, then model"),
    ("model_key", "Model, then key"),
]


class DateInput(forms.DateInput):
    input_type = "date"


def _select(label: str, choices) -> forms.CharField:
    # A CharField, not a ChoiceField: an unknown value is the report parser's to refuse, with
    # the same message the API gives.
    return forms.CharField(label=label, required=False, widget=forms.Select(choices=choices))


def _date(label: str) -> forms.CharField:
    return forms.CharField(label=label, required=False, widget=DateInput())


class FilterForm(forms.Form):
    """A filter's controls, bound to the parameters in the URL, with the parser's complaint."""

    def __init__(self, data, *, error: FilterError | None = None, **kwargs):
        super().__init__(data, **kwargs)
        self.full_clean()
        if error is not None:
            # In the form's own words (its labels), not the API's parameter names.
            self.add_error(error.field if error.field in self.fields else None, error.console)


class UsageFilterForm(FilterForm):
    project_id = _select("Project", [])
    member = _select("Member", [])
    api_key_id = _select("Key", [])
    model = _select("Model", [])
    family = _select("Family", [("", "All families"), *Family.choices])
    tag = forms.CharField(
        label="Tag", required=False,
        widget=forms.TextInput(attrs={"placeholder": "team:search", "autocomplete": "off"}),
    )  # fmt: skip
    since = _date("From")
    until = _date("To")
    group_by = _select("Group by", GROUP_BY_CHOICES)

    def __init__(self, data, *, projects=(), members=(), keys=(), models=(), **kwargs):
        super().__init__(data, **kwargs)
        self.fields["project_id"].widget.choices = [("", "All projects"), *projects]
        self.fields["member"].widget.choices = [("", "All members"), *members]
        self.fields["api_key_id"].widget.choices = [("", "All keys"), *keys]
        self.fields["model"].widget.choices = [("", "All models"), *models]


class LedgerFilterForm(FilterForm):
    kind = _select(
        "Kind",
        [("", "Balance changes"), ("all", "Everything, with holds"), *LedgerKind.choices],
    )
    since = _date("From")
    until = _date("To")


class RedeemForm(forms.Form):
    code = forms.CharField(
        label="Redemption code",
        max_length=64,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "off",
                "spellcheck": "false",
                "autocapitalize": "characters",
                "placeholder": "BYTS-XXXX-XXXX-XXXX-XXXX",
            }
        ),
    )


class ThresholdForm(forms.Form):
    threshold = forms.CharField(
        label="Alert below (credits)",
        required=False,
        help_text="0 turns the alert off.",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )

    def clean_threshold(self) -> int:
        try:
            return to_micros(self.cleaned_data["threshold"].replace(",", ""))
        except AmountError as error:
            raise forms.ValidationError(str(error)) from None


class TopUpForm(forms.Form):
    amount = forms.CharField(
        label="Amount (credits)",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )

    def clean_amount(self) -> int:
        from billing.topups import top_up_amount_check  # topups imports the payment providers

        try:
            amount = to_micros(self.cleaned_data["amount"].replace(",", ""), allow_zero=False)
            top_up_amount_check(amount)
        except AmountError as error:
            raise forms.ValidationError(str(error)) from None
        except BillingError as error:
            raise forms.ValidationError(error.message) from None
        return amount


def _optional_credits(value: str) -> int | None:
    value = (value or "").replace(",", "").strip()
    if not value:
        return None
    try:
        return to_micros(value, allow_zero=False)
    except AmountError as error:
        raise forms.ValidationError(f"{error} Leave it empty for no budget.") from None


class BudgetForm(forms.Form):
    """A budget: empty amounts mean none (both empty removes the budget); 0 is refused."""

    member = forms.CharField(required=False, widget=forms.HiddenInput)
    monthly = forms.CharField(
        label="Monthly (credits)", required=False,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )  # fmt: skip
    lifetime = forms.CharField(
        label="Lifetime (credits)", required=False,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )  # fmt: skip
    hard = forms.BooleanField(
        label="Refuse calls past it", required=False, initial=True,
        help_text="Off: a soft budget, which only alerts at 50, 80 and 100%.",
    )  # fmt: skip

    def clean_monthly(self) -> int | None:
        return _optional_credits(self.cleaned_data["monthly"])

    def clean_lifetime(self) -> int | None:
        return _optional_credits(self.cleaned_data["lifetime"])

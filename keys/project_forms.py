"""Forms of the project pages: create or edit a project (name and budgets in credits) and add
a member with a project role."""

from django import forms

from accounts.models import ProjectRole
from accounts.services import MAX_PROJECT_NAME
from keys.forms import CreditsField

BUDGET_ZERO = (
    "A budget is more than 0 credits. Leave it empty for no budget; "
    "to stop a project's calls, pause its keys."
)


class BudgetField(CreditsField):
    """An optional budget in credits; empty is none, 0 is refused (with a budget's wording)."""

    def clean(self, value):
        try:
            return super().clean(value)
        except forms.ValidationError as error:
            if "limit of 0" in str(error):
                raise forms.ValidationError(BUDGET_ZERO) from None
            raise


class ProjectForm(forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=MAX_PROJECT_NAME,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    monthly_budget = BudgetField(
        label="Monthly budget (credits)",
        help_text="What the project's keys may spend in a calendar month (of the account's time "
        "zone). Empty: none.",
    )
    budget = BudgetField(
        label="Lifetime budget (credits)",
        help_text="What the project's keys may spend in all. Empty: none.",
    )
    budget_hard = forms.BooleanField(
        label="Refuse calls past a budget", required=False, initial=True,
        help_text="Off: soft budgets, which only alert at 50, 80 and 100%.",
    )  # fmt: skip

    def __init__(self, *args, budgets: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["monthly_budget"].widget.attrs["placeholder"] = "None"
        self.fields["budget"].widget.attrs["placeholder"] = "None"
        if not budgets:  # project admins rename; budgets are the account admins'
            del self.fields["monthly_budget"]
            del self.fields["budget"]
            del self.fields["budget_hard"]

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the project a name.")
        return name


class ProjectMemberForm(forms.Form):
    member = forms.ChoiceField(
        label="Member",
        error_messages={
            "required": "Choose a member of the account.",
            "invalid_choice": "Choose one of the listed members.",
        },
    )
    role = forms.ChoiceField(
        label="Project role",
        choices=ProjectRole.choices,
        initial=ProjectRole.MEMBER,
        error_messages={"invalid_choice": "Choose Admin or Member."},
    )

    def __init__(self, *args, candidates, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["member"].choices = [
            (m.public_id, f"{m.user.display_name} ({m.get_role_display()})") for m in candidates
        ]

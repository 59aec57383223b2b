"""django-allauth hooks."""

from allauth.account.adapter import DefaultAccountAdapter


class AccountAdapter(DefaultAccountAdapter):
    def get_user_display(self, user) -> str:
        return user.display_name

"""Emails about an account's wallet."""

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string

from accounts.models import Membership, Role
from billing.models import Wallet
from core.money import format_credits


def low_balance_email(*, account_id: int) -> int:
    """Tell the account's owners that the available balance fell below their threshold."""
    wallet = Wallet.objects.select_related("account").get(account_id=account_id)
    if not wallet.is_low:
        return 0  # topped up since the alert was queued
    owners = list(
        Membership.objects.filter(account_id=account_id, role=Role.OWNER).values_list(
            "user__email", flat=True
        )
    )
    context = {
        "account": wallet.account,
        "available": format_credits(wallet.available),
        "threshold": format_credits(wallet.low_balance_threshold),
        "site": settings.BYTESPIKE_PUBLIC_URL,
    }
    send_mail(
        subject=render_to_string("billing/email/low_balance_subject.txt", context).strip(),
        message=render_to_string("billing/email/low_balance_body.txt", context),
        from_email=None,
        recipient_list=owners,
    )
    return len(owners)

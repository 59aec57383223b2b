"""Emails about an account's wallet: the low-balance alert, monthly statements, top-up receipts."""

from django.conf import settings
from django.db.models import Q
from django.template.loader import render_to_string

from accounts.models import Membership, Role
from accounts.permissions import VIEW_STATEMENTS, role_can
from billing.models import LedgerEntry, Payment, PaymentStatus, Wallet
from core.mail import TextEmailMessage, send_text_mail
from core.money import format_credits

# Who receives statements: every role that may read them.
STATEMENT_ROLES = [role for role in Role.values if role_can(role, VIEW_STATEMENTS)]


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
    send_text_mail(
        subject=render_to_string("billing/email/low_balance_subject.txt", context).strip(),
        message=render_to_string("billing/email/low_balance_body.txt", context),
        from_email=None,
        recipient_list=owners,
    )
    return len(owners)


def statement_emails_send(*, now=None) -> int:
    """E-mail last month's statement, as a PDF, to the owners of every account that opted in,
    once per month: the first run after the month ends in the account's time zone (beat runs it
    hourly) claims the month on the wallet, then sends; a send that fails gives the claim back
    for the next run."""
    from billing import statements

    sent = 0
    for wallet in Wallet.objects.filter(statement_emails=True).select_related("account"):
        account = wallet.account
        month = statements.previous_month(statements.current_month(account, now))
        claimed = (
            Wallet.objects.filter(pk=wallet.pk, statement_emails=True)
            .filter(Q(statement_sent_for__isnull=True) | Q(statement_sent_for__lt=month))
            .update(statement_sent_for=month)
        )
        if not claimed:
            continue
        try:
            sent += _statement_email(account, statements.statement_for(account, month))
        except Exception:
            Wallet.objects.filter(pk=wallet.pk).update(statement_sent_for=wallet.statement_sent_for)
            raise
    return sent


def _statement_email(account, statement) -> int:
    from billing.statement_pdf import statement_pdf

    recipients = list(
        Membership.objects.filter(account=account, role__in=STATEMENT_ROLES).values_list(
            "user__email", flat=True
        )
    )
    if not recipients:
        return 0
    context = {"statement": statement, "site": settings.BYTESPIKE_PUBLIC_URL}
    message = TextEmailMessage(
        subject=render_to_string("billing/email/statement_subject.txt", context).strip(),
        body=render_to_string("billing/email/statement_body.txt", context),
        to=recipients,
    )
    message.attach(statement_filename(statement), statement_pdf(statement), "application/pdf")
    message.send()
    return 1


def statement_filename(statement) -> str:
    return f"bytespike-statement-{statement.account.public_id}-{statement.slug}.pdf"


def payment_receipt_email(*, payment_id: int) -> int:
    """The receipt of a paid top-up, to the member who paid."""
    payment = Payment.objects.select_related("account", "created_by").get(pk=payment_id)
    if payment.status != PaymentStatus.PAID or payment.created_by is None:
        return 0
    key = f"topup:{payment.provider_payment_id}"
    entry = LedgerEntry.objects.filter(idempotency_key=key).first()
    context = {
        "payment": payment,
        "account": payment.account,
        "amount": format_credits(payment.amount),
        "balance_after": format_credits(entry.balance_after) if entry else "",
        "site": settings.BYTESPIKE_PUBLIC_URL,
    }
    send_text_mail(
        subject=render_to_string("billing/email/payment_receipt_subject.txt", context).strip(),
        message=render_to_string("billing/email/payment_receipt_body.txt", context),
        from_email=None,
        recipient_list=[payment.created_by.email],
    )
    return 1

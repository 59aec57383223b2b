"""Background jobs of the accounts app."""

from celery import shared_task

from accounts import services, webhooks


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=8)
def invitation_email_send(invitation_id: int, digest: str, base_url: str) -> bool:
    return services.invitation_email_deliver(
        invitation_id=invitation_id, digest=digest, base_url=base_url
    )


@shared_task
def webhook_previous_secrets_forget() -> int:
    """Erase previous webhook secrets whose overlap window has ended (beat, every 5 minutes)."""
    return webhooks.webhook_previous_secrets_forget()

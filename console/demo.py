"""The demo account that `manage.py serve` and `manage.py seed_demo` set up (idempotent)."""

import os
import random
import secrets
from datetime import datetime, time, timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Account, Membership, Role, User
from billing import metering, pricing
from billing import services as billing
from billing.models import LedgerEntry, UsageRecord
from billing.usage import UsageFacts
from catalogue.demo import seed_catalogue
from catalogue.models import Family
from catalogue.selectors import models_in_group
from console.datafiles import read_or_create
from keys import services as keys
from keys.models import ApiKey, KeyStatus, ManagementKey
from keys.selectors import api_keys_for_account, groups_available

DEMO_ACCOUNT_NAME = "Demo Labs"
DEMO_MANAGEMENT_KEY = "Demo management key"
WELCOME_CREDITS = 100 * 1_000_000
HISTORY_DAYS = 14  # what `serve` writes; the welcome credit is dated before at least that


def demo_password() -> str:
    """``BYTESPIKE_DEMO_PASSWORD``, else one generated on first use and kept in the data dir."""
    return os.environ.get("BYTESPIKE_DEMO_PASSWORD") or read_or_create(
        settings.DATA_DIR / "demo_password", lambda: secrets.token_urlsafe(12)
    )


def seed_demo(*, issue_keys: bool = True, history_days: int = 0) -> dict:
    """Make sure the demo user, account, catalogue, funded wallet and keys exist; return how to
    log in.

    With ``issue_keys``, also return fresh secrets for the demo management key and one demo
    inference key per available group (the demo keys are rolled, not multiplied). With
    ``history_days``, write that many days of usage for the demo keys (once per day and key).
    """
    seed_catalogue()
    email = settings.BYTESPIKE_DEMO_EMAIL
    password = demo_password()
    with transaction.atomic():
        user, created = User.objects.get_or_create(email=email, defaults={"name": "Demo User"})
        # Only rehash when the password changed: a new hash would log out open sessions.
        if created or not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
        EmailAddress.objects.update_or_create(
            user=user, email=email, defaults={"verified": True, "primary": True}
        )
        membership = (
            Membership.objects.filter(user=user, role=Role.OWNER, account__name=DEMO_ACCOUNT_NAME)
            .select_related("account")
            .first()
        )
        account: Account = (
            membership.account
            if membership
            else account_services.account_create(owner=user, name=DEMO_ACCOUNT_NAME)
        )
    # The welcome credit comes first, dated before any history a later seed writes (history is
    # never written before the ledger's newest entry), so each "balance after" follows from the
    # row before it.
    billing.wallet_top_up(
        account=account,
        amount=WELCOME_CREDITS,
        reference=f"demo-welcome-{account.public_id}",
        description="Welcome credit",
        at=_history_start(max(history_days, HISTORY_DAYS)),
    )
    demo_keys = _demo_keys(account, user)
    if history_days:
        seed_usage_history(account, demo_keys, days=history_days)
    result = {"email": email, "password": password, "account": account.public_id}
    if issue_keys:
        result["management_key"] = _fresh_management_key(account, user)
        result["keys"] = {
            key.group.slug: keys.api_key_roll(key=key, actor=user) for key in demo_keys
        }
    return result


def _demo_keys(account: Account, user: User) -> list[ApiKey]:
    """One active demo key per available group (created on first use)."""
    demo_keys = []
    for group in groups_available(account):
        name = f"Demo key ({group.slug})"
        key = (
            api_keys_for_account(account)
            .filter(name__startswith=name, group=group, status=KeyStatus.ACTIVE)
            .order_by("created_at", "id")
            .first()
        )
        if key is None:
            # Names are unique among the account's keys: a paused or revoked demo key keeps
            # its name, so a new one takes the next free "Demo key (slug) 2", "3", ...
            taken = set(api_keys_for_account(account).values_list("name", flat=True))
            number = 2
            free = name
            while free in taken:
                free, number = f"{name} {number}", number + 1
            key, _ = keys.api_key_issue(account=account, group=group, name=free, actor=user)
        demo_keys.append(key)
    return demo_keys


def _fresh_management_key(account: Account, user: User) -> str:
    existing = ManagementKey.objects.filter(
        account=account, name=DEMO_MANAGEMENT_KEY, status=KeyStatus.ACTIVE
    ).first()
    if existing:
        keys.management_key_revoke(key=existing, actor=user)
    _, secret = keys.management_key_issue(account=account, actor=user, name=DEMO_MANAGEMENT_KEY)
    return secret


PROTOCOLS = {"claude-default": "anthropic", "gemini-default": "gemini", "default": "openai"}


def _history_start(days: int) -> datetime:
    """Midnight (UTC) of the first day of a ``days``-day history."""
    first = timezone.now().date() - timedelta(days=days)
    return datetime.combine(first, time.min, tzinfo=timezone.UTC)


def seed_usage_history(account: Account, demo_keys: list[ApiKey], *, days: int) -> int:
    """Realistic past usage through the real billing path (holds settled at past times).

    Calls are billed in time order, across keys, and never before the ledger's newest entry: the
    ledger reads in date order, each "balance after" following from the one before. References
    are deterministic per key, day and call, so running it again adds nothing. Returns how many
    calls were billed by this run.
    """
    today = timezone.now().date()
    newest = (
        LedgerEntry.objects.filter(account=account)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    planned = []
    for key in demo_keys:
        models = [m for m in models_in_group(key.group_id) if m.family != Family.VIDEO]
        if not models:
            continue
        done = set(
            UsageRecord.objects.filter(request_id__startswith=f"demo_{key.public_id}_").values_list(
                "request_id", flat=True
            )
        )
        for offset in range(days, 0, -1):
            day = today - timedelta(days=offset)
            rng = random.Random(f"{key.public_id}:{day}")  # demo data, not secrets
            calls = rng.randint(4, 9) if day.weekday() < 5 else rng.randint(0, 3)
            for n in range(calls):
                at = datetime.combine(day, time(9), tzinfo=timezone.UTC) + timedelta(
                    minutes=rng.randint(0, 9 * 60)
                )
                model = rng.choice(models)
                reference = f"demo_{key.public_id}_{day}:{n}"
                # Each call's own generator, so the amounts stay the same whatever the order.
                call_rng = random.Random(reference)
                if reference not in done and (newest is None or at > newest):
                    planned.append((at, reference, key, model, call_rng))
    billed = 0
    for at, reference, key, model, call_rng in sorted(planned, key=lambda call: call[:2]):
        billed += _bill_one(account, key, model, call_rng, at, reference)
    return billed


def _bill_one(account, key, model, rng, at, reference) -> int:
    multiplier = key.group.rate_multiplier
    if model.family == Family.IMAGE:
        images = rng.randint(1, 2)
        cost = pricing.image_cost(model, multiplier, count=images, size="1024x1024")
        facts = {"images": images}
    else:
        tokens = pricing.TokenUsage(
            input_tokens=rng.randint(300, 4_000),
            output_tokens=rng.randint(80, 1_200),
            cache_read_tokens=rng.choice([0, 0, rng.randint(500, 3_000)]),
        )
        cost = pricing.text_cost(model, multiplier, tokens)
        facts = {
            "input_tokens": tokens.input_tokens,
            "output_tokens": tokens.output_tokens,
            "cache_read_tokens": tokens.cache_read_tokens,
            "stream": rng.random() < 0.6,
        }
    try:
        result = metering.record_usage(
            account_id=account.pk,
            reference=reference,
            charge=cost,
            usage=UsageFacts(
                model_id=model.pk,
                family=model.family,
                protocol="images"
                if model.family == Family.IMAGE
                else PROTOCOLS.get(key.group.slug, "openai"),
                api_key_id=key.pk,
                group_id=key.group_id,
                latency_ms=rng.randint(300, 4_000),
                ttft_ms=rng.randint(150, 900),
                **facts,
            ),
            at=at,
        )
    except billing.BillingError:
        return 0  # the demo wallet ran dry: stop adding history rather than overdraw
    return 0 if result.already_closed else 1

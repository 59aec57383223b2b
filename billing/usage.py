"""Usage: what each billed call did (``UsageFacts``), written down as its usage row, added to
the hourly rollups the reports read and to its key's spend (five-minute buckets and the running
total) that key limits are checked against. Called as holds are settled (billing/holds.py) and
batches committed (billing/batches.py).
"""

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from billing import sql
from billing.models import KeySpend, KeyTotal, UsageRecord, UsageRollup, UsageTagRollup
from catalogue.selectors import slugs
from core import metrics
from core.money import MICROS_PER_CREDIT
from keys.models import ApiKey


@dataclass(frozen=True)
class UsageFacts:
    """What a billed call did, for its usage record and the rollups."""

    model_id: int
    family: str
    protocol: str
    api_key_id: int | None = None
    # The key's project as the call saw it; None: settlement reads the key's project.
    project_id: int | None = None
    group_id: int | None = None
    deployment_id: int | None = None
    stream: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    images: int = 0
    seconds: int = 0
    latency_ms: int | None = None
    ttft_ms: int | None = None
    tags: tuple[str, ...] = ()  # sorted key=value (billing/tags.py)


@dataclass(frozen=True)
class Charge:
    """One answered call to write down: its usage, and what it costs. ``lease`` names the lease
    it was admitted against; without one, it settles its own hold (``reference``)."""

    reference: str
    account_id: int
    charge: int
    usage: UsageFacts
    at: datetime
    lease: str = ""


_ROLLUP_FIELDS = (
    "calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "images",
    "seconds",
    "credits",
)


def record_usage(account_id, reference, usage: UsageFacts, charged, shortfall, at: datetime):
    call = Charge(reference, account_id, charged, usage, at)
    record_usage_batch("", [(call, charged, shortfall)])


def record_usage_batch(batch: str, records: list[tuple[Charge, int, int]]) -> None:
    """Usage rows for (call, charged, shortfall), in one INSERT, and the rollups and key spend
    they add to, summed per row they touch (one upsert each)."""
    if not records:
        return
    rows = []
    rollups: dict[tuple, list[int]] = {}
    tag_rollups: dict[tuple, list[int]] = {}
    spend: dict[tuple, int] = {}
    totals: dict[int, int] = {}
    projects = _projects_of(
        {call.usage.api_key_id for call, _, _ in records if call.usage.project_id is None}
    )
    for call, charged, shortfall in records:
        usage, at = call.usage, call.at
        project_id = usage.project_id or projects.get(usage.api_key_id)
        rows.append({
            "request_id": call.reference, "batch": batch, "account_id": call.account_id,
            "api_key_id": usage.api_key_id, "project_id": project_id, "group_id": usage.group_id,
            "model_id": usage.model_id, "deployment_id": usage.deployment_id,
            "family": usage.family, "protocol": usage.protocol,
            "stream": usage.stream, "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens, "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "reasoning_tokens": usage.reasoning_tokens, "images": usage.images,
            "seconds": usage.seconds, "credits": charged, "shortfall": shortfall,
            "latency_ms": usage.latency_ms, "ttft_ms": usage.ttft_ms,
            "tags": ",".join(usage.tags), "created_at": at,
        })  # fmt: skip
        hour = at.replace(minute=0, second=0, microsecond=0)
        sums = rollups.setdefault(
            (call.account_id, usage.api_key_id, project_id, usage.model_id, hour, usage.family),
            [0] * 8,
        )
        amounts = (1, usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
                   usage.cache_write_tokens, usage.images, usage.seconds, charged)  # fmt: skip
        for n, amount in enumerate(amounts):
            sums[n] += amount
        for tag in usage.tags:
            bucket_of_tag = (call.account_id, usage.api_key_id, project_id, usage.model_id, tag,
                             hour, usage.family)  # fmt: skip
            tagged = tag_rollups.setdefault(bucket_of_tag, [0] * 8)
            for n, amount in enumerate(amounts):
                tagged[n] += amount
        if usage.api_key_id is not None and charged:
            bucket = at - timedelta(
                minutes=at.minute % 5, seconds=at.second, microseconds=at.microsecond
            )
            spend[(usage.api_key_id, bucket)] = spend.get((usage.api_key_id, bucket), 0) + charged
            totals[usage.api_key_id] = totals.get(usage.api_key_id, 0) + charged
    sql.insert_rows(UsageRecord, rows)
    transaction.on_commit(functools.partial(_count, records))
    rollup_rows = [
        {"account_id": a, "api_key_id": k, "project_id": p, "model_id": m, "hour": h,
         "family": f, **dict(zip(_ROLLUP_FIELDS, sums, strict=True))}
        for (a, k, p, m, h, f), sums in rollups.items()
    ]  # fmt: skip
    sql.upsert_add(
        UsageRollup, ("account_id", "api_key_id", "project_id", "model_id", "hour"), rollup_rows,
        amounts=_ROLLUP_FIELDS,
    )  # fmt: skip
    if tag_rollups:
        sql.upsert_add(
            UsageTagRollup, ("account_id", "api_key_id", "project_id", "model_id", "tag", "hour"),
            [{"account_id": a, "api_key_id": k, "project_id": p, "model_id": m, "tag": t,
              "hour": h, "family": f, **dict(zip(_ROLLUP_FIELDS, sums, strict=True))}
             for (a, k, p, m, t, h, f), sums in tag_rollups.items()],
            amounts=_ROLLUP_FIELDS,
        )  # fmt: skip
    sql.upsert_add(
        KeySpend,
        ("api_key_id", "bucket"),
        [{"api_key_id": k, "bucket": b, "credits": c} for (k, b), c in spend.items()],
        amounts=("credits",),
    )
    sql.upsert_add(
        KeyTotal,
        ("api_key_id",),
        [{"api_key_id": k, "credits": c} for k, c in totals.items()],
        amounts=("credits",),
    )


def _projects_of(key_ids: set[int | None]) -> dict[int, int]:
    """The project each key is in as the batch settles, for calls that did not say (tasks
    settle from their row, principals cached before projects). A key moved later leaves these
    rows where they are."""
    key_ids.discard(None)
    if not key_ids:
        return {}
    return dict(ApiKey.objects.filter(pk__in=key_ids).values_list("pk", "project_id"))


_TOKEN_KINDS = ("input", "output", "cache_read", "cache_write", "reasoning")


def _count(records: list[tuple[Charge, int, int]]) -> None:
    """Tokens and credits by model and routing group (metrics), once the usage is committed:
    a batch that failed was free."""
    sums: dict[tuple[int, int | None], list[int]] = {}
    for call, charged, _ in records:
        usage = call.usage
        amounts = (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
                   usage.cache_write_tokens, usage.reasoning_tokens, charged)  # fmt: skip
        row = sums.setdefault((usage.model_id, usage.group_id), [0] * len(amounts))
        for n, amount in enumerate(amounts):
            row[n] += amount
    models, groups = slugs.of((m for m, _ in sums), (g for _, g in sums))
    for (model_id, group_id), (*tokens, charged) in sums.items():
        model, group = models.get(model_id, ""), groups.get(group_id, "")
        for kind, count in zip(_TOKEN_KINDS, tokens, strict=True):
            if count:
                metrics.labelled(metrics.TOKENS, model, group, kind).inc(count)
        metrics.labelled(metrics.CREDITS, model, group).inc(charged / MICROS_PER_CREDIT)


def key_spend_prune(*, older_than: timedelta = timedelta(days=8)) -> int:
    deleted, _ = KeySpend.objects.filter(bucket__lt=timezone.now() - older_than).delete()
    return deleted

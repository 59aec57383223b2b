"""The operators' channel page (staff only; a 404 for everyone else): each upstream channel with
its deployments' breakers, its attempts over the last minutes (error rate, latency percentiles)
and buttons to test, disable and enable it; below, the channel events of the audit log.

Each button posts (CSRF) and, with htmx, swaps the channel's row in place (an enable or disable
also refreshes the events); without it, the page is rendered again. The work is in
channel_ops.py, which the admin uses too.
"""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import trigger_client_event

from accounts.decorators import staff_view
from accounts.selectors import audit_events_outside_accounts
from catalogue.models import Channel
from generation import health
from generation.channel_ops import channel_set_enabled, channel_test, channels_health

PAGE = "generation/channels.html"
EVENTS_SHOWN = 20


def _events() -> list:
    return list(audit_events_outside_accounts("channel.")[:EVENTS_SHOWN])


def _page_context(**tested) -> dict:
    """``tested``: ``tested_slug`` and ``test``, the channel just tested and its result (None:
    it has no text model to test)."""
    return {
        "rows": channels_health(Channel.objects.all()),
        "events": _events(),
        "recent_minutes": health.RECENT_MINUTES,
        **tested,
    }


def _row(request, channel: Channel, *, announce: str, events: bool = False, **tested):
    (row,) = channels_health([channel])
    context = {"row": row, "events": _events() if events else None, **tested}
    response = render(request, f"{PAGE}#channel-changed", context)
    return trigger_client_event(response, "announce", {"message": announce})


@require_GET
@staff_view
def channels(request):
    return render(request, PAGE, _page_context())


@require_POST
@staff_view
def channel_test_view(request, slug: str):
    channel = get_object_or_404(Channel, slug=slug)
    tested = {"tested_slug": channel.slug, "test": channel_test(channel)}
    if request.htmx:
        return _row(request, channel, announce=f"Tested {channel.name}.", **tested)
    return render(request, PAGE, _page_context(**tested))


@require_POST
@staff_view
def channel_disable(request, slug: str):
    return _set_enabled(request, slug, enabled=False)


@require_POST
@staff_view
def channel_enable(request, slug: str):
    return _set_enabled(request, slug, enabled=True)


def _set_enabled(request, slug: str, *, enabled: bool):
    channel = get_object_or_404(Channel, slug=slug)
    channel_set_enabled(channel, enabled=enabled, actor=request.user)
    done = f"{'Enabled' if enabled else 'Disabled'} {channel.name}."
    if request.htmx:
        return _row(request, channel, announce=done, events=True)
    messages.success(request, done)
    return redirect("generation:channels")

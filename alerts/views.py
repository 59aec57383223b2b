"""Console page of alerts."""

from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.decorators import account_view
from accounts.permissions import MANAGE_ALERTS


@require_GET
@account_view(MANAGE_ALERTS)
def alerts(request):
    return render(request, "alerts/alerts.html", {})

"""The console's own pages: the dashboard and the sections later issues fill in."""

from django.shortcuts import render

from accounts.decorators import account_view


@account_view()
def dashboard(request):
    return render(request, "console/dashboard.html")


SECTIONS = {
    "usage": ("Usage", "Spend attribution by key, model and day, with CSV export."),
    "wallet": ("Wallet", "Balance, holds, the ledger and redemption codes."),
    "playground": ("Playground", "Try text, image and video models with one of your keys."),
    "tasks": ("Tasks", "Async image and video tasks with live status."),
}


@account_view()
def section(request, section: str):
    title, summary = SECTIONS[section]
    return render(
        request,
        "console/section_pending.html",
        {"section": section, "title": title, "summary": summary},
    )

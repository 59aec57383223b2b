"""Console pages for monthly statements: the list, a month's printable page, its PDF, and the
owners' opt-in to receive it by e-mail on the 1st (billing/statements.py builds them)."""

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from accounts import permissions
from accounts.decorators import account_view
from accounts.models import Project
from billing import services, statements
from billing.notifications import statement_filename
from billing.selectors import wallet_of
from billing.statement_pdf import statement_pdf


def _statement(request, month: str) -> statements.Statement:
    try:
        return statements.statement_for(request.account, statements.parse_month(month))
    except statements.MonthError:
        raise Http404("No statement for that month.") from None


def _list_context(request, **extra) -> dict:
    return {
        "months": statements.statement_months(request.account),
        "current": statements.current_month(request.account),
        "zone": request.account.zone,
        "wallet": wallet_of(request.account),
        "can_manage": request.membership.can(permissions.MANAGE_BILLING),
        **extra,
    }


@require_GET
@account_view(permissions.VIEW_STATEMENTS)
def statement_list(request):
    return render(request, "billing/statements.html", _list_context(request))


@require_GET
@account_view(permissions.VIEW_STATEMENTS)
def statement_page(request, month: str):
    return render(request, "billing/statement.html", {"statement": _statement(request, month)})


@require_GET
@account_view(permissions.VIEW_STATEMENTS)
def statement_download(request, month: str):
    statement = _statement(request, month)
    response = HttpResponse(statement_pdf(statement), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{statement_filename(statement)}"'
    return response


def _project_statement(request, month: str, project_id: str) -> statements.ProjectStatement:
    project = Project.objects.filter(account=request.account, public_id=project_id).first()
    if project is None:
        raise Http404("No such project.")
    try:
        return statements.project_statement_for(project, statements.parse_month(month))
    except statements.MonthError:
        raise Http404("No statement for that month.") from None


@require_GET
@account_view(permissions.VIEW_STATEMENTS)
def project_statement_page(request, month: str, project_id: str):
    share = _project_statement(request, month, project_id)
    context = {"statement": share.statement, "project_statement": share}
    return render(request, "billing/project_statement.html", context)


@require_GET
@account_view(permissions.VIEW_STATEMENTS)
def project_statement_download(request, month: str, project_id: str):
    share = _project_statement(request, month, project_id)
    pdf = statement_pdf(share.statement, project_statement=share)
    response = HttpResponse(pdf, content_type="application/pdf")
    name = statement_filename(share.statement).removesuffix(".pdf")
    response["Content-Disposition"] = f'attachment; filename="{name}-{share.project.public_id}.pdf"'
    return response


@require_POST
@account_view(permissions.MANAGE_BILLING)
def statement_emails(request):
    enabled = request.POST.get("statement_emails") == "on"
    services.wallet_set_statement_emails(
        account=request.account, enabled=enabled, actor=request.user
    )
    notice = (
        "Owners will get last month's statement on the 1st."
        if enabled
        else "Statements are no longer e-mailed."
    )
    page = "billing/statements.html"
    template = f"{page}#statement-emails" if request.htmx else page
    return render(request, template, _list_context(request, emails_notice=notice))

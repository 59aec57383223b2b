from django.urls import path

from billing import budget_views, payment_views, statement_views, views

app_name = "billing"

urlpatterns = [
    path("wallet/", views.wallet, name="wallet"),
    path("wallet/ledger.csv", views.ledger_export, name="ledger-export"),
    path("wallet/redeem/", views.wallet_redeem, name="redeem"),
    path("wallet/threshold/", views.wallet_threshold, name="threshold"),
    path("wallet/budgets/", budget_views.budgets, name="budgets"),
    path("wallet/budgets/<str:target>/", budget_views.budget_save, name="budget-save"),
    path("wallet/statements/", statement_views.statement_list, name="statements"),
    path("wallet/statements/emails/", statement_views.statement_emails, name="statement-emails"),
    path("wallet/statements/<str:month>/", statement_views.statement_page, name="statement"),
    path(
        "wallet/statements/<str:month>/projects/<str:project_id>/",
        statement_views.project_statement_page,
        name="project-statement",
    ),
    path(
        "wallet/statements/<str:month>/projects/<str:project_id>.pdf",
        statement_views.project_statement_download,
        name="project-statement-pdf",
    ),
    path(
        "wallet/statements/<str:month>.pdf",
        statement_views.statement_download,
        name="statement-pdf",
    ),
    path("wallet/top-up/", payment_views.top_up, name="top-up"),
    path("wallet/top-up/<str:payment_id>/", payment_views.payment, name="payment"),
    path(
        "wallet/top-up/<str:payment_id>/sandbox/",
        payment_views.sandbox_checkout,
        name="sandbox-checkout",
    ),
    path(
        "webhooks/payments/<str:provider>/",
        payment_views.payment_webhook,
        name="payment-webhook",
    ),
    path("usage/", views.usage, name="usage"),
    path("usage/export.csv", views.usage_export, name="usage-export"),
]

"""A statement as a PDF: its printable page rendered by WeasyPrint (Pango does the text layout;
Debian's chromium brings it, `apt-get install libpango-1.0-0` otherwise)."""

from pathlib import Path

from django.conf import settings
from django.template.loader import render_to_string

STYLESHEET = Path(settings.BASE_DIR) / "static" / "css" / "statement.css"


def statement_pdf(statement, *, project_statement=None) -> bytes:
    """The account's statement, or (``project_statement``) a project's share of it."""
    import weasyprint  # loads Pango: only when a PDF is asked for

    body = (
        "billing/project_statement_body.html"
        if project_statement
        else "billing/statement_body.html"
    )
    context = {"statement": statement, "project_statement": project_statement, "body": body}
    html = render_to_string("billing/statement_document.html", context)
    return weasyprint.HTML(string=html).write_pdf(
        stylesheets=[weasyprint.CSS(filename=str(STYLESHEET))]
    )

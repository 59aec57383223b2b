"""E-mail whose links survive being copied: plain-text parts go out as 7bit (ASCII) or 8bit
(other text), never quoted-printable.

Python's e-mail package picks quoted-printable for any text with a line longer than 78
characters, and quoted-printable breaks such lines with a soft "=" line end. A mail client
joins them again, but the console backend (the default: the mail is printed in the ``serve``
output) and any raw view show the link cut in two, and a copied link is dead. Lines are never
longer than 998 characters (RFC 5322), so 7bit or 8bit is always valid for what we send; 8BITMIME
is universal among SMTP servers.
"""

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.utils.encoding import force_str

MAX_LINE = 998  # RFC 5322's hard limit on a line; beyond it the default encoding is kept


def text_transfer_encoding(text: str) -> str | None:
    """7bit for ASCII, 8bit otherwise; None (Python's choice) for a line no SMTP may carry."""
    if any(len(line.encode()) > MAX_LINE for line in text.splitlines()):
        return None
    return "7bit" if text.isascii() else "8bit"


class TextEmailMessage(EmailMultiAlternatives):
    """An e-mail whose plain-text body (and text alternatives) are never quoted-printable."""

    def _add_bodies(self, msg):
        if not self.body and self.alternatives:
            return super()._add_bodies(msg)
        encoding = self.encoding or settings.DEFAULT_CHARSET
        body = force_str(self.body or "", encoding=encoding, errors="surrogateescape")
        msg.set_content(
            body,
            subtype=self.content_subtype,
            charset=encoding,
            cte=text_transfer_encoding(body),
        )
        for alternative in self.alternatives:
            msg.make_alternative()
            maintype, subtype = alternative.mimetype.split("/", 1)
            content = alternative.content
            if maintype == "text":
                content = content.decode() if isinstance(content, bytes) else content
                msg.add_alternative(
                    content, subtype=subtype, charset=encoding, cte=text_transfer_encoding(content)
                )
            else:
                msg.add_alternative(content, maintype=maintype, subtype=subtype)
        return msg


def as_text_email(message) -> TextEmailMessage:
    """The same e-mail (recipients, headers, body, alternatives, attachments) as a
    ``TextEmailMessage``."""
    copy = TextEmailMessage(
        subject=message.subject,
        body=message.body,
        from_email=message.from_email,
        to=message.to,
        bcc=message.bcc,
        cc=message.cc,
        reply_to=message.reply_to,
        headers=message.extra_headers,
        attachments=message.attachments,
        alternatives=getattr(message, "alternatives", None),
    )
    copy.content_subtype = message.content_subtype
    copy.encoding = message.encoding
    return copy


def send_text_mail(*, subject: str, message: str, recipient_list: list[str], from_email=None):
    """``django.core.mail.send_mail`` for plain text, with links that survive a copy."""
    return TextEmailMessage(
        subject=subject, body=message, from_email=from_email, to=recipient_list
    ).send()

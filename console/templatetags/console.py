"""Template helpers for console pages."""

from django import template
from django.template.loader import render_to_string
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()

# 24x24 stroke icons, drawn for ByteSpike.
ICON_PATHS = {
    "home": "M3 11l9-7 9 7v9a1 1 0 0 1-1 1h-5v-6h-6v6H4a1 1 0 0 1-1-1z",
    "key": "M11.5 12.5L20 4M16 8l3 3M14 10l2 2M12 16a4 4 0 1 1-8 0 4 4 0 0 1 8 0z",
    "chart": "M3 20h18M6 16v-5M11 16V6M16 16v-8M21 16v-3",
    "wallet": "M3 7h16a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V7zm0 0l12-4v4M16 13.5h.01",
    "spark": "M12 3l2.2 6.8L21 12l-6.8 2.2L12 21l-2.2-6.8L3 12l6.8-2.2z",
    "list": "M8 6h13M8 12h13M8 18h13M3.5 6h.01M3.5 12h.01M3.5 18h.01",
    "users": "M2 20c0-3.5 3-6 7-6s7 2.5 7 6M12.5 8a3.5 3.5 0 1 1-7 0 3.5 3.5 0 0 1 7 0z"
    "M16 4.5a3.5 3.5 0 0 1 0 7M18 14.2c2.3.7 4 2.8 4 5.8",
    "gear": "M15 12a3 3 0 1 1-6 0 3 3 0 0 1 6 0zM12 2v3M12 19v3M2 12h3M19 12h3"
    "M4.9 4.9L7 7M17 17l2.1 2.1M4.9 19.1L7 17M17 7l2.1-2.1",
    "logout": "M15 4h4a1 1 0 0 1 1 1v14a1 1 0 0 1-1 1h-4M10 17l-5-5 5-5M5 12h11",
    "chevron": "M6 9l6 6 6-6",
    "copy": "M9 9h10a1 1 0 0 1 1 1v10a1 1 0 0 1-1 1H9a1 1 0 0 1-1-1V10a1 1 0 0 1 1-1z"
    "M5 15H4a1 1 0 0 1-1-1V4a1 1 0 0 1 1-1h10a1 1 0 0 1 1 1v1",
    "plus": "M12 5v14M5 12h14",
    "check": "M5 12l5 5L20 7",
    "bolt": "M13 2L4 14h7l-1 8 9-12h-7z",
    "layers": "M12 3l9 5-9 5-9-5 9-5zM3 13l9 5 9-5M3 17.5l9 5 9-5",
    "folder": "M3 6a1 1 0 0 1 1-1h5l2 2h9a1 1 0 0 1 1 1v10a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1z",
    "mail": "M3 6h18v12H3zM3 7l9 6 9-6",
    "shield": "M12 3l8 3v6c0 5-3.5 8-8 9-4.5-1-8-4-8-9V6z",
    "alert": "M12 9v4M12 17h.01M10.3 3.9L2 18a2 2 0 0 0 1.7 3h16.6"
    "a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0z",
    "pulse": "M3 12h4l3-7 4 14 3-7h4",
}


@register.simple_tag
def icon(name: str, size: int = 18) -> str:
    return format_html(
        '<svg class="icon" width="{}" height="{}" viewBox="0 0 24 24" fill="none" '
        'stroke="currentColor" stroke-width="1.8" stroke-linecap="round" '
        'stroke-linejoin="round" aria-hidden="true" focusable="false"><path d="{}"/></svg>',
        size,
        size,
        ICON_PATHS[name],
    )


@register.simple_block_tag
def empty_state(
    content: str,
    *,
    title: str,
    icon: str = "",
    title_id: str = "",
    colspan: int = 0,
    action_url: str = "",
    action_label: str = "",
    action_icon: str = "",
) -> str:
    """What a list or panel shows when it has nothing: an icon, a title, the tag's content as
    the explanation, and an optional action. With ``colspan`` it is a whole table row.

    {% empty_state icon="key" title="No API keys yet" colspan=10 %}Create a key…{% endempty_state %}
    """
    return render_to_string(
        "partials/empty_state.html",
        {
            "text": mark_safe(content.strip()),  # noqa: S308 - rendered template output
            "title": title,
            "icon": icon,
            "title_id": title_id,
            "colspan": colspan,
            "action_url": action_url,
            "action_label": action_label,
            "action_icon": action_icon,
        },
    )

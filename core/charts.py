"""Server-rendered SVG charts: the dashboard's daily spend by key, the usage page's buckets and a
key's daily spend.

The geometry is computed here and drawn by ``templates/partials/chart.html``: no chart library,
no script and no inline styles (the CSP forbids them). Positions and sizes are SVG presentation
attributes; colours are CSS classes (``series-0`` … ``series-7``) that the legends share.
Amounts are micro-credits; days and hours are in the report's time zone.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from math import ceil, floor, log10

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from core.money import format_credits, format_credits_exact

SERIES_COLOURS = 8
# Keys beyond the first seven are drawn together, in the eighth colour.
TOP_SERIES = SERIES_COLOURS - 1
WIDTH = 1080
ROWS_WIDTH = 900  # horizontal bars carry more text: a narrower box draws it larger
MAX_ROWS = 12
LABEL_CHARS = 30


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str
    url: str = ""  # where a click on the bar leads (the bucket's own report)


@dataclass(frozen=True)
class Tick:
    """A labelled position on an axis (x for the time axis, y for the value axis)."""

    at: float
    label: str


@dataclass(frozen=True)
class RowLabel:
    """A horizontal bar's name (left of the plot) and value (right of the bar)."""

    y: float
    text: str
    full: str
    value_x: float
    value: str


@dataclass(frozen=True)
class LegendItem:
    css: str
    name: str
    total: int


@dataclass
class Chart:
    id: str
    title: str
    description: str
    kind: str  # "columns" (time on x) or "rows" (ranked horizontal bars)
    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float
    rects: list[Rect] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    rows: list[RowLabel] = field(default_factory=list)
    legend: list[LegendItem] = field(default_factory=list)
    # The numbers again, for a visually hidden table (columns, then (label, values, total)).
    table_columns: list[str] = field(default_factory=list)
    table_rows: list[tuple[str, list[int], int]] = field(default_factory=list)
    empty: bool = False
    hidden_rows: int = 0

    @property
    def y_label_x(self) -> float:
        return self.left - 8

    @property
    def x_label_y(self) -> float:
        return self.bottom + 18

    @property
    def label_x(self) -> float:
        return self.left - 10

    @property
    def bars_svg(self) -> SafeString:
        """The bars' SVG elements, built here rather than in the template: a stacked chart has
        hundreds of bars, and the template would look up and localise each attribute of each
        (a fifth of a usage page's time)."""
        rx = 3 if self.kind == "rows" else 1.5
        parts = []
        for rect in self.rects:
            bar = format_html(
                '<rect class="{}" x="{}" y="{}" width="{}" height="{}" rx="{}"><title>{}</title>'
                "</rect>",
                rect.css, rect.x, rect.y, rect.width, rect.height, rx, rect.title,
            )  # fmt: skip
            if rect.url:
                link = '<a class="chart-link" href="{}" aria-label="{}">{}</a>'
                bar = format_html(link, rect.url, rect.title, bar)
            parts.append(bar)
        return mark_safe("".join(parts))  # noqa: S308 (each part escaped by format_html)

    @property
    def table_cells(self) -> list[tuple[str, list[str], str]]:
        """``table_rows`` with the amounts written out exactly, as the hidden table shows them."""
        return [
            (label, [format_credits_exact(value) for value in values], format_credits_exact(total))
            for label, values, total in self.table_rows
        ]


def nice_step(peak: int, ticks: int = 4) -> int:
    """A round step (1, 2, 2.5 or 5 times a power of ten) so ``ticks`` steps cover ``peak``."""
    raw = max(peak / ticks, 1)
    magnitude = 10 ** floor(log10(raw))
    factors = (1, 2, 2.5, 5, 10) if magnitude >= 10 else (1, 2, 5, 10)
    for factor in factors:
        if factor * magnitude >= raw:
            return int(factor * magnitude)
    return int(10 * magnitude)  # pragma: no cover (10x always covers raw)


def _value_axis(peak: int, top: float, bottom: float) -> tuple[float, list[Tick]]:
    """The scale (plot units per micro-credit) and the gridlines of a value axis."""
    step = nice_step(peak)
    steps = max(1, ceil(peak / step))
    scale = (bottom - top) / (step * steps)
    ticks = [
        Tick(_r(bottom - step * i * scale), format_credits_exact(step * i))
        for i in range(steps + 1)
    ]
    return scale, ticks


def _r(value: float) -> float:
    return round(value, 2)


def day_label(day: date) -> str:
    return f"{day.day} {day:%b}"


def _shorten(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\N{HORIZONTAL ELLIPSIS}"


def _day_ticks(days: list[date], left: float, slot: float, most: int = 8) -> list[Tick]:
    """Day labels, evenly spaced and always including the last (most recent) day."""
    every = max(1, ceil(len(days) / most))
    last = len(days) - 1
    return [
        Tick(_r(left + (index + 0.5) * slot), day_label(day))
        for index, day in enumerate(days)
        if (last - index) % every == 0
    ]


def _top_series(series: list[dict], noun: str = "keys") -> list[dict]:
    """The biggest get their own colour; the rest are summed as one series ("other")."""
    ranked = sorted(series, key=lambda entry: -entry["total"])
    kept = [
        {"name": entry["name"], "values": entry["values"], "css": f"series-{index}"}
        for index, entry in enumerate(ranked[:TOP_SERIES])
    ]
    rest = ranked[TOP_SERIES:]
    if len(rest) == 1:
        kept.append({"name": rest[0]["name"], "values": rest[0]["values"], "css": "series-7"})
    elif rest:
        kept.append(
            {
                "name": f"{len(rest)} other {noun}",
                "values": [sum(day) for day in zip(*(e["values"] for e in rest), strict=True)],
                "css": "series-7",
            }
        )
    return kept


def stacked_days(
    days: list[date], series: list[dict], *, id: str, title: str, height: int = 260,
    noun: str = "keys", zone: str = "UTC",
) -> Chart:  # fmt: skip
    """Stacked columns, one per day, one segment per series (``daily_spend_by_key`` rows:
    ``{"name", "values", "total"}`` with one value per day): the biggest series, and the rest
    as one "other" segment. ``noun`` names what the series are (keys, models, projects...)."""
    series = _top_series([entry for entry in series if entry["total"]], noun)
    chart = Chart(
        id=id,
        title=title,
        description="",
        kind="columns",
        width=WIDTH,
        height=height,
        left=72,
        top=12,
        right=WIDTH - 8,
        bottom=height - 28,
    )
    totals = [sum(entry["values"][index] for entry in series) for index in range(len(days))]
    peak = max(totals, default=0)
    chart.legend = [
        LegendItem(entry["css"], entry["name"], sum(entry["values"])) for entry in series
    ]
    chart.table_columns = [entry["name"] for entry in series]
    chart.table_rows = [
        (day_label(day), [entry["values"][index] for entry in series], totals[index])
        for index, day in enumerate(days)
    ]
    if days:
        one = noun[:-1] if noun.endswith("s") else noun
        keys = f", split by {len(series)} {noun if len(series) != 1 else one}" if series else ""
        chart.description = (
            f"Daily spend from {day_label(days[0])} to {day_label(days[-1])} ({zone}), "
            f"{format_credits_exact(sum(totals))} credits in all{keys}."
        )
    if not days or peak == 0:
        chart.empty = True
        return chart
    scale, chart.y_ticks = _value_axis(peak, chart.top, chart.bottom)
    slot = (chart.right - chart.left) / len(days)
    width = slot * 0.7 if slot >= 6 else slot
    offset = (slot - width) / 2
    for index, day in enumerate(days):
        y = chart.bottom
        for entry in series:
            value = entry["values"][index]
            if value <= 0:
                continue
            bar = value * scale
            y -= bar
            chart.rects.append(
                Rect(
                    _r(chart.left + index * slot + offset),
                    _r(y),
                    _r(width),
                    _r(bar),
                    entry["css"],
                    f"{day_label(day)}: {entry['name']}, {format_credits_exact(value)} credits",
                )
            )
    chart.x_ticks = _day_ticks(days, chart.left, slot)
    return chart


def time_columns(
    buckets: list[dict],
    *,
    since: datetime,
    until: datetime,
    hourly: bool,
    id: str,
    title: str,
    height: int = 240,
    links: dict[str, str] | None = None,
    zone: str = "UTC",
) -> Chart:
    """One column per day or hour between ``since`` and ``until`` (``usage_report`` buckets,
    whose ``bucket`` is an ISO time; days are those of ``since``'s time zone); days and hours
    without usage stay empty. ``links``: a bucket's drill-down URL, by its ``bucket``."""
    links = links or {}
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    origin = since if hourly else since.replace(hour=0, minute=0, second=0, microsecond=0)
    if hourly:
        slots = max(1, ceil((until - origin) / step))
    else:  # counted in dates: a day of a daylight-saving change is 23 or 25 hours long
        last = (until - timedelta(microseconds=1)).date()
        slots = max(1, (last - origin.date()).days + 1)
    chart = Chart(
        id=id,
        title=title,
        description="",
        kind="columns",
        width=WIDTH,
        height=height,
        left=72,
        top=12,
        right=WIDTH - 8,
        bottom=height - 28,
    )
    total = sum(bucket["credits"] for bucket in buckets)
    unit = "hour" if hourly else "day"
    chart.description = (
        f"Spend per {unit} ({zone}), {format_credits_exact(total)} credits in all. "
        "The table below lists every bucket."
    )
    peak = max((bucket["credits"] for bucket in buckets), default=0)
    if peak <= 0:
        chart.empty = True
        return chart
    scale, chart.y_ticks = _value_axis(peak, chart.top, chart.bottom)
    slot = (chart.right - chart.left) / slots
    width = slot * 0.7 if slot >= 6 else slot
    offset = (slot - width) / 2
    for bucket in buckets:
        moment = datetime.fromisoformat(bucket["bucket"]).astimezone(origin.tzinfo)
        index = int((moment - origin) / step) if hourly else (moment.date() - origin.date()).days
        if not 0 <= index < slots or bucket["credits"] <= 0:
            continue
        bar = bucket["credits"] * scale
        when = f"{day_label(moment.date())}, {moment:%H}:00" if hourly else day_label(moment)
        chart.rects.append(
            Rect(
                _r(chart.left + index * slot + offset),
                _r(chart.bottom - bar),
                _r(width),
                _r(bar),
                "series-0",
                f"{when}: {format_credits_exact(bucket['credits'])} credits, "
                f"{bucket['calls']} calls",
                links.get(bucket["bucket"], ""),
            )
        )
    if hourly and slots <= 72:
        chart.x_ticks = [
            Tick(
                _r(chart.left + (index + 0.5) * slot),
                day_label(moment.date()) if moment.hour == 0 else f"{moment:%H}:00",
            )
            for index in range(slots)
            if (moment := origin + index * step).hour % 6 == 0
        ]
    elif hourly:
        days = ceil(slots / 24)
        every = max(1, ceil(days / 8))
        chart.x_ticks = [
            Tick(_r(chart.left + index * slot), day_label(moment.date()))
            for index in range(0, slots, 24)
            if (moment := origin + index * step) and (index // 24) % every == 0
        ]
    else:
        chart.x_ticks = _day_ticks(
            [origin.date() + timedelta(days=index) for index in range(slots)], chart.left, slot
        )
    return chart


def ranked_rows(items: list[tuple], *, id: str, title: str) -> Chart:
    """Horizontal bars, biggest first (``items`` are (label, micro-credits), optionally with a
    drill-down URL and a shorter label to draw, already ranked)."""
    shorts = {index: item[3] for index, item in enumerate(items) if len(item) > 3 and item[3]}
    items = [(item[0], item[1], item[2] if len(item) > 2 else "") for item in items]
    shown = items[:MAX_ROWS]
    row_height, label_width, value_width = 28, 200, 100
    top, bottom_margin = 8, 8
    height = top + max(1, len(shown)) * row_height + bottom_margin
    chart = Chart(
        id=id,
        title=title,
        description="",
        kind="rows",
        width=ROWS_WIDTH,
        height=height,
        left=label_width,
        top=top,
        right=ROWS_WIDTH - value_width,
        bottom=height - bottom_margin,
        hidden_rows=max(0, len(items) - MAX_ROWS),
    )
    total = sum(value for _, value, _ in items)
    chart.description = (
        f"Spend of {len(items)} bucket{'s' if len(items) != 1 else ''}, biggest first, "
        f"{format_credits_exact(total)} credits in all. The table below lists every bucket."
    )
    peak = max((value for _, value, _ in shown), default=0)
    if peak <= 0:
        chart.empty = True
        return chart
    scale = (chart.right - chart.left) / peak
    for index, (label, value, url) in enumerate(shown):
        y = top + index * row_height
        bar = max(value * scale, 1.5 if value > 0 else 0)
        chart.rects.append(
            Rect(
                chart.left,
                _r(y + 5),
                _r(bar),
                18,
                f"series-{min(index, SERIES_COLOURS - 1)}",
                f"{label}: {format_credits_exact(value)} credits",
                url,
            )
        )
        chart.rows.append(
            RowLabel(
                _r(y + 14),
                shorts.get(index) or _shorten(label),
                label,
                _r(chart.left + bar + 8),
                format_credits(value),
            )
        )
    return chart

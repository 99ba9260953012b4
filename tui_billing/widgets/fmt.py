"""How the console writes times, states and money (presentation only).

Pure functions: no database, no Textual; the clock comes from workflow.Ctx.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from rich.cells import cell_len
from rich.measure import Measurement
from rich.text import Text

from .. import statuses as S
from ..clock import Clock
from ..money import format_amount, format_money
from ..risk import compact, is_flagged
from ..text import shown

# Styles that read on both the light and the dark theme (ANSI names follow
# the theme's ANSI palette).
STATUS_STYLES = {
    S.OPEN: "blue",
    S.UNDER_REVIEW: "bold yellow",
    S.REJECTED: "bold magenta",
    S.APPROVED: "cyan",
    S.UNPAID: "",
    S.PAID: "green",
    S.OVERDUE: "bold red",
}
FLAGGED_STYLE = "bold red"  # risk.is_flagged: a person must look at it
HELD_STYLE = "bold red"
HELD = "held for a person"  # flagged, its hold ran out: the job loop left it for a person
SECOND = "1 of 2 approvals"  # four-eyes: the first approval given, a second person needed
SECOND_STYLE = "bold cyan"


def text_cell(value: object, style: str = "", **kwargs) -> Text:
    """Stored text (names, descriptions, numbers, reasons) as the console shows
    it: control characters made visible (text.shown: a terminal never obeys
    them) and never read as markup ("[bold]" stays "[bold]").  Every piece of
    imported or typed text reaches the screen through here."""
    return Text(shown(value), style=style, **kwargs)


def middle_cut(text: str, width: int) -> str:
    """`text` in `width` cells, cut in the middle when too long: the start and
    the end are kept ("Acme Wid… #33"), so that names that differ only at the
    end stay apart.  The end kept is the last word when it is short (" #33",
    " AB"), else the last 40 %."""
    if cell_len(text) <= width:
        return text
    if width <= 2:
        return "…"[: max(width, 0)]
    room = width - 1  # the "…"
    head_room = room - room * 2 // 5
    _, space, last = text.rpartition(" ")
    tail = " " + last if space and 0 < cell_len(last) + 1 <= (room + 1) // 2 else ""
    if not tail:
        tail = _last_cells(text, room - head_room)
    head = _first_cells(text, room - cell_len(tail)).rstrip()
    return head + "…" + tail


def _first_cells(text: str, width: int) -> str:
    out, used = [], 0
    for ch in text:
        used += cell_len(ch)
        if used > width:
            break
        out.append(ch)
    return "".join(out)


def _last_cells(text: str, width: int) -> str:
    return _first_cells(text[::-1], width)[::-1]


class MiddleCut:
    """A one-line table cell cut in the middle to the width of its column (the
    width is known only when it is drawn: a resize needs no new cells)."""

    def __init__(self, value: object, style: str = ""):
        self.plain = shown(value)
        self.style = style

    def __rich_console__(self, console, options):
        yield Text(middle_cut(self.plain, options.max_width), style=self.style, no_wrap=True, overflow="crop", end="")

    def __rich_measure__(self, console, options) -> Measurement:
        return Measurement(1, cell_len(self.plain))

    def __eq__(self, other) -> bool:
        return isinstance(other, MiddleCut) and (self.plain, self.style) == (other.plain, other.style)

    def __repr__(self) -> str:
        return f"MiddleCut({self.plain!r})"


def span(seconds: int) -> str:
    """4d 3h, 5h 20m, 2h, 12m — the largest two units, no zero tail."""
    seconds = abs(int(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m" if minutes else "<1m"


def time_left(deadline: dt.datetime | None, now: dt.datetime) -> str:
    """'4d 3h' until auto-approval, or 'due 2h ago' once the hold ran out (the
    job loop approves it on its next pass; not 'overdue', which is a payment
    status)."""
    if deadline is None:
        return "—"
    seconds = int((deadline - now).total_seconds())
    if seconds < 0:
        return f"due {span(seconds)} ago"
    return span(seconds)


def hold_ran_out(left: str) -> bool:
    return left.startswith("due ")


def local_time(clock: Clock, moment: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if moment is None:
        return "—"
    return clock.local(moment).strftime(fmt)


def when_short(clock: Clock, moment: dt.datetime) -> str:
    """01:00 when within the next 24 hours, else 'Sat 21 Nov 01:00'."""
    local, now = clock.local(moment), clock.local()
    if dt.timedelta(0) <= local - now < dt.timedelta(hours=24):
        return local.strftime("%H:%M")
    return local.strftime("%a %d %b %H:%M")


def status_text(status: str) -> Text:
    return Text(S.label(S.INVOICE_STATUSES, status), style=STATUS_STYLES.get(status, ""))


def reissue_when(clock: Clock, mode: str | None, after: dt.datetime | None) -> str:
    """When a rejected invoice is reissued: 'off-peak, from 01:00', 'off-peak, due now', 'now'."""
    if mode == "off_peak":
        if after is not None and after > clock.now():
            return f"off-peak, from {when_short(clock, after)}"
        return "off-peak, due now"
    return "now"


def reissue_words(clock: Clock, mode: str | None, after: dt.datetime | None, *, wide: bool) -> str:
    """A rejected invoice: 'awaiting reissue (off-peak, from 01:00)'."""
    if wide:
        return f"awaiting reissue ({reissue_when(clock, mode, after)})"
    if mode == "off_peak":
        if after is not None and after > clock.now():
            return f"reissue off-peak {when_short(clock, after)}"
        return "reissue off-peak, due"
    return "reissue now"


def reissue_short(clock: Clock, mode: str | None, after: dt.datetime | None) -> str:
    """A rejected invoice in a narrow cell: 'reissue 01:00', 'reissue now'."""
    if mode == "off_peak":
        if after is not None and after > clock.now():
            local, now = clock.local(after), clock.local()
            at = local.strftime("%H:%M") if local - now < dt.timedelta(hours=24) else local.strftime("%a %H:%M")
            return f"reissue {at}"
        return "reissue due"
    return "reissue now"


def review_state(row, clock: Clock, *, wide: bool, width: int | None = None) -> Text:
    """The queue's state cell: time left, overdue, held, or awaiting reissue.

    `width`: the narrow cell's width; shorter words when the usual ones do
    not fit (80 columns: 'reissue 01:00', 'due 12h ago')."""
    if row.status == S.REJECTED:
        words = reissue_words(clock, row.reissue_mode, row.reissue_after, wide=wide)
        if not wide and width is not None and len(words) > width:
            words = reissue_short(clock, row.reissue_mode, row.reissue_after)
        return Text(words, style=STATUS_STYLES[S.REJECTED])
    if row.status == S.UNDER_REVIEW:
        if getattr(row, "first_approved_by", None):  # four-eyes: what it waits for is a second person
            words = SECOND if width is None or len(SECOND) <= width else "1 of 2"
            return Text(words, style=SECOND_STYLE)
        if getattr(row, "held", False):  # its hold ran out; the job loop left it for a person
            words = HELD if width is None or len(HELD) <= width else "held"
            return Text(words, style=HELD_STYLE)
        left = time_left(row.review_deadline, clock.now())
        past = hold_ran_out(left)
        if wide:
            return Text("Under review", style=STATUS_STYLES[S.UNDER_REVIEW])
        words = left if past else f"{left} left"
        if width is not None and len(words) > width:  # 'due 12h ago', '12h 30m'
            words = f"due {left.split(' ')[1]} ago" if past else left
        return Text(words, style="bold red" if past else "")
    return status_text(row.status)


def review_or_flags(row, clock: Clock, width: int) -> Text:
    """The queue's Review cell when the table is too narrow for a Flags
    column: a flagged invoice waits for a person, so what a reviewer needs is
    why (its flags, after "held:" once its hold ran out); any other invoice,
    when it goes out on its own (review_state)."""
    if row.status == S.UNDER_REVIEW and row.flagged and row.flags:
        prefix = "held: " if row.held else ""
        return Text(
            prefix + flag_words(row.flags, max(width - len(prefix), 1)),
            style=FLAGGED_STYLE,
            no_wrap=True,
            overflow="ellipsis",
        )
    return review_state(row, clock, wide=False, width=width)


def flag_words(flags, width: int | None) -> str:
    """One flag: its word (the cell cuts it with an ellipsis); several: risk.compact ("spike +1")."""
    return flags[0].short if len(flags) == 1 else compact(flags, width)


def flags_cell(row, width: int | None = None) -> Text:
    """'spike, tax' (risk.compact), or a dim dot when the invoice has no flags."""
    flags = getattr(row, "flags", ())
    if not flags:
        return Text("·", style="dim")
    return Text(
        flag_words(flags, width),
        style=FLAGGED_STYLE if is_flagged(row.risk_score) else "yellow",
        no_wrap=True,
        overflow="ellipsis",
    )


def left_cell(row, clock: Clock) -> Text:
    if row.status != S.UNDER_REVIEW:
        return Text("—", style="dim")
    if getattr(row, "held", False):
        return Text("held", style=HELD_STYLE)
    left = time_left(row.review_deadline, clock.now())
    return Text(left, style="bold red" if hold_ran_out(left) else "")


def money_cell(amount: Decimal | None, currency: str, *, blank: bool = False) -> Text:
    """`blank`: nothing (not "—") when there is no amount, e.g. no expected total."""
    if amount is None:
        return Text("" if blank else "—", justify="right")
    # Too wide for its column (80 columns, a huge amount): it ends in "…", never cut silently.
    return Text(format_money(amount, currency), justify="right", no_wrap=True, overflow="ellipsis")


def amount_cell(amount: Decimal | None, currency: str, *, blank: bool = False) -> Text:
    if amount is None:
        return Text("" if blank else "—", justify="right")
    return Text(format_amount(amount, currency), justify="right", no_wrap=True, overflow="ellipsis")


def totals_line(sums: dict[str, Decimal]) -> str:
    """'1,234.50 EUR + 99.00 USD' — one sum per currency, never mixed."""
    if not sums:
        return "nothing"
    return " + ".join(format_money(v, k) for k, v in sorted(sums.items()))


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")

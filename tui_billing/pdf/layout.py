"""Layout: an invoice becomes a display list per page.

Everything is placed here (advance widths, wrapping, ellipses, decimal and
right alignment, pagination), so the page count is known before anything is
drawn ("Page 1 of 3") and drawing is a plain walk over the list (paint.py
for the fast path, fpdf_public.py for the fallback).  A display list is a
list of tuples in mm from the page's top-left corner:

    ("text", x, baseline, string, style, size_pt, rgb)
    ("rect", x, y, w, h, rgb)                       filled, no stroke
    ("line", x1, y1, x2, y2, rgb, width_mm)

The words are the customer's: nothing internal is printed (no revision, no
review status, no seed-001 console columns such as "Current Debt Changed" or
"Approved at"; corrections read as "Adjustments", credit or charge).
Quantities carry their unit when the caller gives one.  A total of zero says
there is nothing to pay, a negative total is shown as a credit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from ..money import SYMBOLS, format_amount
from .measure import Text
from .model import InvoiceDocument

PAGE_W, PAGE_H = 210.0, 297.0
MARGIN = 15.0
CONTENT_W = PAGE_W - 2 * MARGIN
CONTENT_BOTTOM = PAGE_H - 20.0  # footer below
INK = (30, 30, 30)
MUTED = (105, 105, 105)
ACCENT = (28, 58, 105)
ALERT = (170, 25, 25)
RULE = (210, 210, 210)
HEADER_FILL = (232, 236, 242)
TOTAL_FILL = (242, 244, 247)

BODY = 8.0
ROW_LINE = 3.6  # mm between wrapped lines in a row
ROW_PAD = 1.2  # mm above/below the text of a row
CELL_PAD = 1.5  # mm left/right inside a column


def _fmt_quantity(q: Decimal) -> str:
    q = Decimal(q).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)
    s = f"{q:,.3f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def _fmt_signed(amount: Decimal, currency: str) -> str:
    return ("-" if amount < 0 else "") + format_amount(abs(amount), currency)


def _fmt_quantity_unit(q: Decimal, unit: str, text: Text) -> str:
    """The quantity cell: "1,234.5 min" (number, one space, unit)."""
    unit = text.clean(unit) if unit else ""
    return f"{_fmt_quantity(q)} {unit}" if unit else _fmt_quantity(q)


def draft_word(note: str, text: Text) -> str:
    """The watermark word of a draft's status note ("DRAFT — …" -> "DRAFT")."""
    words = text.clean(note).split()
    return (words[0].strip(" -–—:,.").upper() if words else "") or "DRAFT"


# How a customer reads the payment model (the store's names are internal).
_BILLING = {"postpay": "Postpaid", "prepay": "Prepaid"}


def _billing_label(model: str, text: Text) -> str:
    model = text.clean(model)
    return _BILLING.get(model.lower(), model.replace("_", " ").capitalize())


@dataclass(frozen=True)
class Column:
    title: str
    width: float
    align: str = "L"  # "L", "R" or "D" (right, decimal points aligned, up to 3 decimals)
    wrap: bool = False


class Layout:
    """One document's display lists: ``build()`` lays out the body pages,
    ``footer(n, count)`` the footer of page ``n``."""

    def __init__(self, doc: InvoiceDocument, text: Text):
        self.doc = doc
        self.t = text
        self.pages: list[list[tuple]] = []
        self.y = 0.0
        self.number = text.clean(doc.number)
        self.seller = text.clean(doc.seller.name)

    # -- primitives ------------------------------------------------------
    def text(
        self,
        x: float,
        baseline: float,
        s: str,
        style: str = "",
        size: float = BODY,
        color=INK,
        align: str = "L",
        width: float = 0.0,
        shrink: bool = False,
    ) -> None:
        """Draw ``s``; with ``width`` (the box from ``x``) it is fitted: numbers
        (right-aligned) and ``shrink`` text get smaller, down to 5.5 pt, before
        anything is cut with an ellipsis."""
        if not s:
            return
        if width:
            w = self.t.width(s, style, size)
            if w > width:
                if (shrink or align == "R") and size > 5.5:
                    size = max(5.5, size * width / w)
                if self.t.width(s, style, size) > width:
                    s = self.t.fit(s, style, size, width)
            if align == "R":
                x = x + width - self.t.width(s, style, size)
        elif align == "R":
            x -= self.t.width(s, style, size)
        self.pages[-1].append(("text", x, baseline, s, style, size, color))

    def paragraph(
        self,
        x: float,
        baseline: float,
        s: str,
        style: str,
        size: float,
        color,
        width: float,
        max_lines: int,
        line_h: float,
    ) -> float:
        """Wrapped text; returns the baseline after its last line."""
        for line in self.t.wrap(s, style, size, width, max_lines):
            self.text(x, baseline, line, style, size, color, width=width)
            baseline += line_h
        return baseline

    def rect(self, x, y, w, h, color) -> None:
        self.pages[-1].append(("rect", x, y, w, h, color))

    def rule(self, x1, y, x2, color=RULE, width=0.2) -> None:
        self.pages[-1].append(("line", x1, y, x2, y, color, width))

    def new_page(self) -> None:
        self.pages.append([])
        self.y = MARGIN
        if len(self.pages) > 1:
            self.text(MARGIN, self.y + 3, self.seller, "B", 8.5, ACCENT, width=CONTENT_W * 0.6)
            self.text(
                PAGE_W - MARGIN - CONTENT_W * 0.4,
                self.y + 3,
                f"Invoice {self.number} (continued)",
                "",
                8,
                MUTED,
                align="R",
                width=CONTENT_W * 0.4,
            )
            self.rule(MARGIN, self.y + 5, PAGE_W - MARGIN)
            self.y += 9

    def ensure(self, height: float) -> bool:
        if self.y + height > CONTENT_BOTTOM:
            self.new_page()
            return True
        return False

    # -- blocks ------------------------------------------------------------
    def heading(self) -> None:
        d, t = self.doc, self.t
        self.new_page()
        top = MARGIN
        left_w = CONTENT_W * 0.55
        y = self.paragraph(MARGIN, top + 5, self.seller, "B", 13, ACCENT, left_w, 2, 5.5) + 0.2
        for line in d.seller.lines[:6]:
            y = self.paragraph(MARGIN, y, t.clean(line), "", 8, MUTED, left_w, 2, 3.7)
        right = PAGE_W - MARGIN
        self.text(right, top + 6, "INVOICE", "B", 20, ACCENT, align="R")
        self.text(right - 70, top + 12, self.number, "B", 10, INK, align="R", width=70, shrink=True)
        y_right = top + 12
        if d.status_note.strip():
            y_right += 5
            self.text(
                right - 80,
                y_right,
                f"{draft_word(d.status_note, t)} — not yet issued",
                "B",
                8.5,
                ALERT,
                align="R",
                width=80,
            )
        self.y = max(y, y_right + 2) + 6

        # Bill to (left) and invoice facts (right)
        block_top = self.y
        self.text(MARGIN, block_top, "BILL TO", "B", 7, MUTED)
        y = self.paragraph(MARGIN, block_top + 5, t.clean(d.customer.name), "B", 10, INK, left_w, 2, 4.5) - 0.5
        for line in d.customer.lines[:8]:
            y = self.paragraph(MARGIN, y, t.clean(line), "", 8.5, INK, left_w, 2, 4)
        if d.total <= 0:
            due = "Nothing to pay"
        else:
            due = d.due_date.isoformat() if d.due_date else "—"
        facts = [
            ("Invoice number", self.number),
            ("Issue date", d.issue_date.isoformat()),
            ("Due date", due),
            ("Service period", f"{d.period_from.isoformat()} – {d.period_to.isoformat()}"),
            ("Payment terms", t.clean(d.payment_terms)),
            ("Billing", _billing_label(d.payment_model, t)),
            ("Currency", t.clean(d.currency)),
        ]
        label_x = MARGIN + CONTENT_W * 0.58
        value_x = label_x + 27
        fy = block_top
        for label, value in facts:
            self.text(label_x, fy, label, "", 8, MUTED)
            self.text(value_x, fy, value, "", 8.5, INK, width=PAGE_W - MARGIN - value_x, shrink=True)
            fy += 4.3
        self.y = max(y, fy) + 4

    def table(
        self, title: str, columns: Sequence[Column], rows: Iterable[Sequence[str]], max_lines: int = 3, empty: str = ""
    ) -> None:
        """A titled table whose header repeats on every page it spans; rows
        grow for wrapped cells.  No rows: nothing, or the ``empty`` line."""
        t = self.t
        header_h = 6.0
        title_h = 7.5

        def draw_header(cont: bool) -> None:
            self.text(MARGIN, self.y + 5, f"{title} (continued)" if cont else title, "B", 10, ACCENT)
            self.y += title_h
            self.rect(MARGIN, self.y, CONTENT_W, header_h, HEADER_FILL)
            x = MARGIN
            for col in columns:
                self.text(
                    x + CELL_PAD,
                    self.y + 4.1,
                    col.title,
                    "B",
                    7.5,
                    INK,
                    align="L" if col.align == "L" else "R",
                    width=col.width - 2 * CELL_PAD,
                )
                x += col.width
            self.y += header_h

        laid_out = []
        for row in rows:
            cells = []
            n_lines = 1
            for col, value in zip(columns, row):
                if col.wrap:
                    lines = t.wrap(value, "", BODY, col.width - 2 * CELL_PAD, max_lines)
                    n_lines = max(n_lines, len(lines))
                else:
                    lines = [value]
                cells.append(lines)
            laid_out.append((cells, 2 * ROW_PAD + ROW_LINE * (n_lines - 1) + 3.0))
        if not laid_out:
            if empty:
                self.ensure(title_h + header_h + 6)
                draw_header(False)
                self.text(MARGIN + columns[0].width + CELL_PAD, self.y + ROW_PAD + 2.6, empty, "", BODY, MUTED)
                self.y += 5.4
                self.rule(MARGIN, self.y, PAGE_W - MARGIN)
                self.y += 5
            return
        # a short table stays on one page; a long one starts with >= 3 rows
        keep = laid_out if len(laid_out) <= 6 else laid_out[:3]
        self.ensure(title_h + header_h + sum(h for _, h in keep))
        draw_header(False)
        # Decimal columns ("number" or "number unit"): the width of the longest
        # ".ddd" part, and of the longest " unit" (the room the numbers leave, at
        # least half the column).
        fraction_w, unit_w = {}, {}
        for i, col in enumerate(columns):
            if col.align == "D":
                numbers = [cells[i][0].partition(" ") for cells, _ in laid_out]
                fraction_w[i] = max(t.width(n[n.find(".") :], "", BODY) if "." in n else 0.0 for n, _, _ in numbers)
                if any(u for _, _, u in numbers):
                    room = (
                        col.width
                        - 2 * CELL_PAD
                        - fraction_w[i]
                        - max(t.width(n.partition(".")[0], "", BODY) for n, _, _ in numbers)
                    )
                    unit_w[i] = min(
                        max(t.width(" " + u, "", BODY) for _, _, u in numbers),
                        max(room, (col.width - 2 * CELL_PAD) / 2),
                    )
                else:
                    unit_w[i] = 0.0
        for cells, row_h in laid_out:
            if self.ensure(row_h):
                draw_header(True)
            x = MARGIN
            base = self.y + ROW_PAD + 2.6
            for i, (col, lines) in enumerate(zip(columns, cells)):
                width = col.width - 2 * CELL_PAD
                if col.align == "D":  # decimal points line up (digits are tabular), units after them
                    value, _, unit = lines[0].partition(" ")
                    dot = value.find(".")
                    pad = fraction_w[i] - (t.width(value[dot:], "", BODY) if dot >= 0 else 0.0)
                    box = width - unit_w[i]
                    self.text(x + CELL_PAD, base, value, "", BODY, INK, align="R", width=box - pad)
                    if unit:
                        space = t.width(" ", "", BODY)
                        self.text(x + CELL_PAD + box + space, base, unit, "", BODY, INK, width=unit_w[i] - space)
                else:
                    for n, line in enumerate(lines):
                        self.text(x + CELL_PAD, base + n * ROW_LINE, line, "", BODY, INK, align=col.align, width=width)
                x += col.width
            self.y += row_h
            self.rule(MARGIN, self.y, PAGE_W - MARGIN)
        self.y += 5

    def totals(self) -> None:
        d, cur = self.doc, self.doc.currency
        discount = -abs(d.discount_total)
        lines = [
            ("Charges", _fmt_signed(d.subtotal, cur)),
            ("Discounts", _fmt_signed(discount, cur)),
            ("Taxes", _fmt_signed(d.tax_total, cur)),
            ("Adjustments", _fmt_signed(d.correction_total, cur)),
        ]
        symbol = SYMBOLS.get(cur.upper())

        def money(amount: Decimal) -> str:
            value = _fmt_signed(amount, cur)
            return f"{symbol} {value}" if symbol and symbol != cur.upper() else f"{value} {self.t.clean(cur)}"

        # A negative total is a credit: shown as such, never as "-12.00 to pay".
        credit = d.total < 0
        total_text = money(-d.total if credit else d.total)
        block_h = 5 * len(lines) + 12
        self.ensure(block_h + 14)
        width = 82.0
        x = PAGE_W - MARGIN - width
        for label, value in lines:
            self.text(x + CELL_PAD, self.y + 3.5, label, "", 8.5, MUTED)
            self.text(x + 30, self.y + 3.5, value, "", 8.5, INK, align="R", width=width - 30 - CELL_PAD)
            self.y += 5
        self.y += 1.5
        self.rect(x, self.y, width, 9, TOTAL_FILL)
        self.rule(x, self.y, x + width, ACCENT, 0.4)
        self.text(
            x + CELL_PAD, self.y + 6, f"{'Credit' if credit else 'Total'} ({self.t.clean(cur)})", "B", 10.5, ACCENT
        )
        self.text(x + 28, self.y + 6, total_text, "B", 11, INK, align="R", width=width - 28 - CELL_PAD)
        self.y += 14
        if credit:
            terms = f"This invoice is a credit of {total_text} in your favour: there is nothing to pay."
        elif d.total == 0:
            terms = f"Nothing to pay: this invoice totals {total_text}."
        else:
            terms = f"Payment terms: {self.t.clean(d.payment_terms)}"
            if d.due_date:
                terms += f" — please pay by {d.due_date.isoformat()}"
            terms += f", quoting invoice {self.number}."
        self.text(MARGIN, self.y, terms, "", 8.5, INK, width=CONTENT_W)
        self.y += 5

    # -- the document --------------------------------------------------------
    def build(self) -> list[list[tuple]]:
        d, t, cur = self.doc, self.t, self.doc.currency
        self.heading()
        num_w = 10.0
        qty_w = 22.0
        if any(c.unit for c in d.charges):  # "1,234.5 min": as wide as the longest number and unit need
            quantities = [_fmt_quantity_unit(c.quantity, c.unit, t).partition(" ") for c in d.charges]
            need = (
                max(t.width(n.partition(".")[0], "", BODY) for n, _, _ in quantities)  # decimal points
                + max(t.width("".join(n.partition(".")[1:]), "", BODY) for n, _, _ in quantities)  # line up
                + max(t.width(" " + u, "", BODY) for _, _, u in quantities)
                + 2 * CELL_PAD
                + 0.5
            )
            qty_w = min(max(qty_w, need), 40.0)
        self.table(
            "Charges",
            (
                Column("#", num_w, "R"),
                Column("Description", CONTENT_W - num_w - qty_w - 24 - 28, "L", wrap=True),
                Column("Quantity", qty_w, "D"),
                Column("Discount", 24, "R"),
                Column("Amount", 28, "R"),
            ),
            (
                (
                    str(c.position),
                    t.clean(c.description),
                    _fmt_quantity_unit(c.quantity, c.unit, t),
                    format_amount(c.discount, cur) if c.discount else "—",
                    _fmt_signed(c.amount, cur),
                )
                for c in d.charges
            ),
            empty="No charges for this period",
        )
        if d.taxes:
            self.table(
                "Taxes",
                (
                    Column("#", num_w, "R"),
                    Column("Tax", 38, "L"),
                    Column("Description", CONTENT_W - num_w - 38 - 20 - 28, "L", wrap=True),
                    Column("Type", 20, "L"),
                    Column("Amount", 28, "R"),
                ),
                (
                    (
                        str(x.position),
                        t.clean(x.name),
                        t.clean(x.description),
                        "Refund" if x.amount < 0 else "Tax",
                        _fmt_signed(x.amount, cur),
                    )
                    for x in d.taxes
                ),
            )
        if d.corrections:
            # Seed 001's "Current Debt Changed" (▼/▲) and "Approved at" are the
            # console's view; the customer reads a credit or a charge and its amount.
            self.table(
                "Adjustments",
                (
                    Column("#", num_w, "R"),
                    Column("Description", CONTENT_W - num_w - 20 - 28, "L", wrap=True),
                    Column("Type", 20, "L"),
                    Column("Amount", 28, "R"),
                ),
                (
                    (
                        str(c.position),
                        t.clean(c.description),
                        "Credit" if c.amount < 0 else "Charge",
                        _fmt_signed(c.amount, cur),
                    )
                    for c in d.corrections
                ),
            )
        self.totals()
        return self.pages

    def footer(self, page: int, count: int) -> list[tuple]:
        self.pages.append([])  # scratch page for the ops
        y = PAGE_H - 12
        self.rule(MARGIN, y - 4, PAGE_W - MARGIN)
        left = f"Invoice {self.number} · Payment terms: {self.t.clean(self.doc.payment_terms)} · {self.seller}"
        self.text(MARGIN, y, left, "", 7.5, MUTED, width=CONTENT_W - 30)
        self.text(PAGE_W - MARGIN, y, f"Page {page} of {count}", "", 7.5, MUTED, align="R")
        return self.pages.pop()

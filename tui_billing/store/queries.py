"""Finder queries: filters, keyset paging, counts per status.

Never loads every row: pages are fetched by keyset (the last row's sort value
and id), so page N costs the same as page 1 on a million invoices.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from peewee import OP, SQL, Expression, NodeList, SqliteDatabase, Value, fn

from .. import statuses as S
from ..errors import FieldError
from ..risk import FLAGGED, parse_flags
from ..text import fold
from . import counts as maintained_counts
from . import search_index
from .models import Account, CustomerClass, Invoice, Payment, database, tuple_rows

SORTS: dict[str, tuple[Any, bool]] = {  # name -> (column, default descending?)
    "issue_date": (Invoice.issue_date, True),
    "number": (Invoice.number, False),
    "total": (Invoice.total, True),
    "deadline": (Invoice.review_deadline, False),
    # Risk review queue: highest score first, then the nearest deadline
    # (no deadline last), then id; keyset on all three (see page()).
    "risk": (Invoice.risk_score, True),
}
MAX_LIMIT = 5000


class FilterError(FieldError):
    """A filter refused; `.field` is the filter's name (the CLI flag, the filter bar's field)."""


@dataclass(frozen=True)
class Filters:
    statuses: tuple[str, ...] = ()
    account_type: str | None = None
    customer: str | None = None  # any part of the account name or email, accents and case ignored
    customer_class: str | None = None  # class name
    number: str | None = None  # any part of the invoice number, case ignored
    date_from: dt.date | None = None  # issue date range, inclusive
    date_to: dt.date | None = None
    flagged: bool = False
    payment_status: str | None = None  # invoices with a payment in this status (collections, receipts to make)

    def with_(self, **changes) -> "Filters":
        return replace(self, **changes)


def parse_date(field_name: str, text: str | None) -> dt.date | None:
    if text is None or text == "":
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise FilterError(field_name, f"{text!r} is not a date like 2026-03-01") from None


def make_filters(
    *,
    status=None,
    account_type=None,
    customer=None,
    customer_class=None,
    number=None,
    date_from=None,
    date_to=None,
    flagged=False,
    payment_status=None,
) -> Filters:
    """Validate raw filter text (CLI flags, filter bar); FilterError names the field."""
    statuses: tuple[str, ...] = ()
    if status:
        items = status if isinstance(status, (list, tuple)) else str(status).split(",")
        statuses = tuple(s.strip().lower().replace(" ", "_").replace("-", "_") for s in items if s.strip())
        unknown = [s for s in statuses if s not in S.INVOICE_STATUSES]
        if unknown:
            raise FilterError("status", f"{unknown[0]!r} is not one of {', '.join(S.INVOICE_STATUSES)}")
    if account_type and account_type not in S.ACCOUNT_TYPES:
        raise FilterError("account-type", f"{account_type!r} is not one of {', '.join(S.ACCOUNT_TYPES)}")
    d_from, d_to = parse_date("from", date_from), parse_date("to", date_to)
    if d_from and d_to and d_from > d_to:
        raise FilterError("to", f"{d_to} is before --from {d_from}")
    if customer_class and not CustomerClass.select().where(CustomerClass.name == customer_class).exists():
        raise FilterError("class", f"no customer class named {customer_class!r}")
    payment = (payment_status or "").strip().lower().replace(" ", "_").replace("-", "_") or None
    if payment and payment not in S.PAYMENT_STATUSES:
        raise FilterError("payment-status", f"{payment_status!r} is not one of {', '.join(S.PAYMENT_STATUSES)}")
    return Filters(
        statuses,
        account_type or None,
        (customer or "").strip() or None,
        customer_class or None,
        (number or "").strip() or None,
        d_from,
        d_to,
        flagged,
        payment,
    )


def _like_pattern(text: str) -> str:
    """'%text%' for LIKE … ESCAPE '\\', with %, _ and \\ in text matched literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _like_part(column, text: str):
    """column LIKE '%text%', with %, _ and \\ in text matched literally.

    A plain LIKE, the same on SQLite and PostgreSQL: the callers compare
    folded text (text.fold) with folded text, so no collation, LOWER() or
    ILIKE is involved ('Ōsaka' -> 'osaka' on both backends)."""
    # Spelled out: peewee renders OP.LIKE as GLOB on SQLite, which has no ESCAPE.
    return NodeList(
        (column, SQL("LIKE"), Value(_like_pattern(text), converter=False), SQL("ESCAPE"), Value("\\", converter=False))
    )


def customer_matches(text: str):
    """Accounts whose name or email contains `text`, accents and case ignored
    ("angstrom" and "ANGSTR" find "Ångström Labs"): their ids, as a sub-query.
    Matched on the folded copy the account keeps (Account.search_text): the
    accounts the search index names (SQLite, 3 characters or more) checked
    with the LIKE, so exactly the scan's result; else the LIKE alone (on
    PostgreSQL served by its trigram index).  See store/search_index.py."""
    folded = fold(text)
    query = Account.select(Account.id).where(_like_part(Account.search_text, folded))
    ids = search_index.candidates(search_index.ACCOUNT_FTS, folded)
    return query if ids is None else query.where(Account.id.in_(ids))


# A page of a text search on SQLite is read one of two ways: every match (found
# by an index) read and sorted, about 3 µs a match; or the page's order walked
# (its index) and each row checked until the page is full, about 1 µs a row
# and 100 × invoices / matches rows.  The first wins for few matches, the
# second for many; they cost the same near matches² = 35 × invoices (measured
# on a demo store of 100,000 invoices: 1,900 matches there, 6,000 at a million).
# The matches are counted as they come, up to that number and one.
# (PostgreSQL's planner makes that choice itself, from its statistics.)


def _crossover() -> int:
    """The number of matches above which a search page walks its order (see above)."""
    return max(500, math.isqrt(35 * (Invoice.select(fn.MAX(Invoice.id)).scalar() or 0)))


def _many(sql: str, params: list) -> bool:
    """Does `sql` (a SELECT of invoices) give more rows than the crossover?"""
    n = _crossover()
    return database.obj.execute_sql(f"SELECT count(*) FROM ({sql} LIMIT {n + 1})", params).fetchone()[0] > n


def _many_customer_invoices(folded: str) -> bool:
    """Do many invoices (see above) belong to accounts that match `folded`?
    The accounts one by one (from the index, or scanned), each one's
    invoices by their index, until there are enough."""
    if search_index.usable(folded):
        return _many(
            f'SELECT 1 FROM "{search_index.ACCOUNT_FTS}"(?) AS a CROSS JOIN "invoice" AS i ON i."account_id" = a.rowid',
            [search_index.phrase(folded)],
        )
    return _many(
        'SELECT 1 FROM "account" AS a CROSS JOIN "invoice" AS i ON i."account_id" = a."id" '
        "WHERE a.\"search_text\" LIKE ? ESCAPE '\\'",
        [_like_pattern(folded)],
    )


_OWNER = Account.alias("owner")  # built once: peewee makes a class per aliased field
_OWNER_TYPE, _OWNER_ID, _OWNER_TEXT = _OWNER.account_type, _OWNER.id, _OWNER.search_text


def _where(f: Filters, paged: bool = False):
    cond = []
    walk = paged and isinstance(database.obj, SqliteDatabase)  # a search page may walk its order (see _many)
    if f.statuses:
        cond.append(Invoice.status.in_(list(f.statuses)))
    if f.account_type and paged:
        # A page: a correlated lookup, not the joined column.  With the join's
        # column SQLite first builds a Bloom filter over every account of the
        # type (10 ms at a million invoices); this walks the page's index and
        # reads each row's account (0.3 ms).
        cond.append(Expression(_OWNER.select(_OWNER_TYPE).where(_OWNER_ID == Invoice.account), OP.EQ, f.account_type))
    elif f.account_type:  # counts, sums, all matching ids: every row is read, a join is best
        cond.append(Account.account_type == f.account_type)
    if f.customer:
        folded = fold(f.customer)
        if walk and _many_customer_invoices(folded):
            # Many invoices: the page's order walked, each row's account
            # checked (a correlated lookup, as for the type above).
            cond.append(_like_part(_OWNER.select(_OWNER_TEXT).where(_OWNER_ID == Invoice.account), folded))
        else:
            # The matching accounts found once (by the search index, or a scan
            # of the account table, not of the invoices' joined rows), then
            # their invoices by their account's index.
            cond.append(Invoice.account.in_(customer_matches(f.customer)))
    if f.customer_class:
        cond.append(
            Invoice.customer_class
            == CustomerClass.select(CustomerClass.id).where(CustomerClass.name == f.customer_class)
        )
    if f.number:  # any part: "000658" finds INV-2026-000658
        # The invoices the search index names (SQLite, 3 characters or more)
        # checked with the LIKE; for a page of many, the LIKE alone (the walk).
        ids = search_index.candidates(search_index.NUMBER_FTS, f.number)
        if ids is not None and not (
            walk and _many(f'SELECT rowid FROM "{search_index.NUMBER_FTS}"(?)', [search_index.phrase(f.number)])
        ):
            cond.append(Invoice.id.in_(ids))
        cond.append(Invoice.number.contains(f.number))
    if f.payment_status:  # through the index payment(status, due_date)
        cond.append(Invoice.id.in_(Payment.select(Payment.invoice).where(Payment.status == f.payment_status)))
    if f.date_from:
        cond.append(Invoice.issue_date >= f.date_from)
    if f.date_to:
        cond.append(Invoice.issue_date <= f.date_to)
    if f.flagged:
        cond.append(Invoice.risk_score >= FLAGGED)
    return cond


# What a results page shows (finder, queue, find --json): fewer columns than
# the whole row keeps a page of 100 at a few milliseconds on a million rows.
INVOICE_PAGE_COLUMNS = (
    Invoice.id,
    Invoice.number,
    Invoice.account,
    Invoice.customer_class,
    Invoice.kind,
    Invoice.payment_model,
    Invoice.status,
    Invoice.currency,
    Invoice.period_from,
    Invoice.period_to,
    Invoice.issue_date,
    Invoice.due_date,
    Invoice.review_deadline,
    Invoice.total,
    Invoice.outstanding,
    Invoice.external_total,
    Invoice.external_currency,
    Invoice.approved_at,
    Invoice.revision,
    Invoice.reissue_mode,
    Invoice.reissue_after,
    Invoice.risk_score,
    Invoice.risk_flags,
    Invoice.expected_total,
    Invoice.risk_at_stake,
    Invoice.held_at,
    Invoice.approved_by,
    Invoice.first_approved_by,
    Invoice.first_approved_at,
    Invoice.changed_by,
)
_N = len(INVOICE_PAGE_COLUMNS)  # then the joined account (3 columns) and class (2)
PAGE_COLUMNS = INVOICE_PAGE_COLUMNS + (
    Account.id,
    Account.name,
    Account.account_type,
    CustomerClass.id,
    CustomerClass.name,
)


def base_query(f: Filters, *columns, paged: bool = False):
    """Invoices matching f with their account and class joined; `paged` when
    only the first rows in an index order are read (page_query)."""
    query = Invoice.select(*columns) if columns else Invoice.select(_page_select())
    query = (
        query.join(Account, on=(Invoice.account == Account.id))
        .switch(Invoice)
        .join(CustomerClass, on=(Invoice.customer_class == CustomerClass.id))
    )
    for c in _where(f, paged):
        query = query.where(c)
    return query


def ids_matching(f: Filters):
    """A sub-query of matching ids: 'select all matching' without loading rows."""
    return base_query(f, Invoice.id)


@dataclass(frozen=True)
class PageKey:
    value: Any  # the sort column's value; risk: (risk_score, review_deadline)
    id: int


class Ref:
    """The joined account or class of a page row: just what a page shows."""

    __slots__ = ("id", "name", "account_type")

    def __init__(self, id, name, account_type=None):
        self.id, self.name, self.account_type = id, name, account_type


def _money_of(field):
    scale = -field.scale
    return lambda v: None if v is None else Decimal(int(v)).scaleb(scale)


def _date(v):
    return v if v is None or isinstance(v, dt.date) else dt.date.fromisoformat(v)


def _datetime(v):
    return v if v is None or isinstance(v, dt.datetime) else dt.datetime.fromisoformat(v)


_money = _money_of(Invoice.total)


class InvoiceRow:
    """One row of a results page: Invoice's attributes for PAGE_COLUMNS.

    Built straight from the cursor, one statement per column (a page of 100
    peewee models with two joined models each cost ~5 ms; these ~0.3 ms, see
    bench_store.py).  Read-only: to change an invoice, call workflow with its id.
    """

    __slots__ = tuple(c.name for c in INVOICE_PAGE_COLUMNS) + ("account", "customer_class")

    def __init__(self, v):
        (self.id, self.number, _, _, self.kind, self.payment_model, self.status, self.currency) = v[:8]
        self.period_from, self.period_to = _date(v[8]), _date(v[9])
        self.issue_date, self.due_date = _date(v[10]), _date(v[11])
        self.review_deadline = _datetime(v[12])
        self.total, self.outstanding, self.external_total = _money(v[13]), _money(v[14]), _money(v[15])
        self.external_currency = v[16]
        self.approved_at = _datetime(v[17])
        self.revision, self.reissue_mode = v[18], v[19]
        self.reissue_after = _datetime(v[20])
        self.risk_score, self.risk_flags = v[21], v[22]
        self.expected_total, self.risk_at_stake = _money(v[23]), _money(v[24])
        self.held_at = _datetime(v[25])
        self.approved_by, self.first_approved_by = v[26], v[27]  # four-eyes (present.approvals)
        self.first_approved_at, self.changed_by = _datetime(v[28]), v[29]
        self.account = Ref(v[_N], v[_N + 1], v[_N + 2])
        self.customer_class = Ref(v[_N + 3], v[_N + 4])

    @property
    def account_id(self):
        return self.account.id

    @property
    def customer_class_id(self):
        return self.customer_class.id

    @property
    def flags(self):
        """The risk flags (risk.Flag, heaviest first) stored on the invoice."""
        return parse_flags(self.risk_flags)


# InvoiceRow.__init__ reads the columns by position: keep it in step.
assert [c.name for c in INVOICE_PAGE_COLUMNS] == [
    "id",
    "number",
    "account",
    "customer_class",
    "kind",
    "payment_model",
    "status",
    "currency",
    "period_from",
    "period_to",
    "issue_date",
    "due_date",
    "review_deadline",
    "total",
    "outstanding",
    "external_total",
    "external_currency",
    "approved_at",
    "revision",
    "reissue_mode",
    "reissue_after",
    "risk_score",
    "risk_flags",
    "expected_total",
    "risk_at_stake",
    "held_at",
    "approved_by",
    "first_approved_by",
    "first_approved_at",
    "changed_by",
]
assert all(
    getattr(Invoice, n).scale == Invoice.total.scale
    for n in ("outstanding", "external_total", "expected_total", "risk_at_stake")
)


def _page_select():
    """PAGE_COLUMNS as one SQL fragment, rendered once: peewee takes ~0.5 ms
    to render 31 columns for every page.  t1/t2/t3 are the aliases peewee
    gives invoice, account and customer_class in base_query's FROM."""
    global _PAGE_SELECT
    if _PAGE_SELECT is None:
        alias = {Invoice: "t1", Account: "t2", CustomerClass: "t3"}
        _PAGE_SELECT = SQL(", ".join(f'"{alias[c.model]}"."{c.column_name}"' for c in PAGE_COLUMNS))
    return _PAGE_SELECT


_PAGE_SELECT = None


def _rows(query) -> list[InvoiceRow]:
    sql, params = query.sql()
    return [InvoiceRow(values) for values in Invoice._meta.database.execute_sql(sql, params)]


def rows_by_id(ids) -> list[InvoiceRow]:
    """The page rows of these invoices (any order; missing ids left out)."""
    ids = list(ids)
    out: list[InvoiceRow] = []
    for start in range(0, len(ids), 500):  # under every backend's parameter limit
        out += _rows(base_query(Filters()).where(Invoice.id.in_(ids[start : start + 500])))
    return out


def page(
    f: Filters,
    *,
    sort: str = "issue_date",
    descending: bool | None = None,
    after: PageKey | None = None,
    limit: int = 100,
) -> list[InvoiceRow]:
    """One page of invoices after `after` (None: the first page)."""
    _checked(sort, limit)
    return _fetch(f, sort, _descending(sort, descending), after, limit)


def page_query(f: Filters, *, sort: str, descending: bool, after: PageKey | None, limit: int):
    """The one SELECT of a page for every sort but risk (bench_store.py runs its SQL raw)."""
    column, _ = SORTS[sort]
    query = base_query(f, paged=True)
    if sort == "deadline":  # only invoices with a deadline sort by it
        query = query.where(Invoice.review_deadline.is_null(False))
    if after is not None:
        # The plain bound first (column <= value) lets the index seek to the
        # key: with the OR alone SQLite walks the index from its start, so
        # page N, and every batch of find --all, cost more the deeper it is.
        if descending:
            query = query.where(column <= after.value).where(
                (column < after.value) | ((column == after.value) & (Invoice.id < after.id))
            )
        else:
            query = query.where(column >= after.value).where(
                (column > after.value) | ((column == after.value) & (Invoice.id > after.id))
            )
    order = (column.desc(), Invoice.id.desc()) if descending else (column.asc(), Invoice.id.asc())
    return query.order_by(*order).limit(limit)


def _has_undated(status: str) -> bool:
    """Whether an invoice of this status has no review deadline, read from
    the index (status, review_deadline) whatever the planner expects."""
    deadline = Invoice.review_deadline
    if isinstance(database.obj, SqliteDatabase):  # NULL sorts first: the index answers IS NULL itself
        return Invoice.select(Invoice.id).where((Invoice.status == status) & deadline.is_null()).limit(1).exists()
    # PostgreSQL expected hundreds of undated invoices under review (there
    # are none) and scanned the table for one: 14 ms at 30,000 invoices.
    # Read backwards, the index gives the undated rows first: 0.2 ms.
    first = (
        Invoice.select(deadline.is_null())
        .where(Invoice.status == status)
        .order_by(deadline.desc(nulls="FIRST"))
        .limit(1)
        .scalar()
    )
    return bool(first)


def _risk_page(f: Filters, desc: bool, after: PageKey | None, limit: int) -> list[InvoiceRow]:
    """risk_score DESC, review_deadline ASC (no deadline last), id ASC — or all reversed.

    Read as index range scans, not one big sort: per status asked for (the
    queue: under review, rejected; else over every status) one stream of rows
    with a deadline and one of rows without, each in the order of
    (status,) risk_score DESC, review_deadline, id; the streams' pages are
    merged here.  The key's value is (risk_score, review_deadline).
    """
    score, deadline, id_ = Invoice.risk_score, Invoice.review_deadline, Invoice.id
    base = base_query(f.with_(statuses=()), paged=True)
    order = (score.desc(), deadline.asc(), id_.asc()) if desc else (score.asc(), deadline.desc(), id_.desc())
    rows: list[InvoiceRow] = []
    for status in f.statuses or (None,):
        for dated in (True, False):
            query = base.where(deadline.is_null(not dated))
            if status is not None:
                if not dated and not _has_undated(status):
                    # Nothing to read (the usual case in the queue: every invoice under
                    # review has a deadline); skipping it spares the planner a long
                    # walk of the undated rows of every other status.
                    continue
                query = query.where(Invoice.status == status)
            if after is not None:  # the plain bound on the score first: see page_query
                bound = score <= after.value[0] if desc else score >= after.value[0]
                query = query.where(bound).where(_risk_after(after, desc, dated))
            rows += _rows(query.order_by(*order).limit(limit))
    rows.sort(key=_risk_key, reverse=not desc)
    return rows[:limit]


def _risk_key(row) -> tuple:
    return (-row.risk_score, row.review_deadline is None, row.review_deadline or dt.datetime.min, row.id)


def _risk_after(after: PageKey, desc: bool, dated: bool):
    """Rows of one stream (with a deadline or without) that come after the key."""
    score, deadline, id_ = Invoice.risk_score, Invoice.review_deadline, Invoice.id
    s, d = after.value
    if desc:  # score desc; within a score: dated rows (deadline asc, id asc), then undated (id asc)
        if dated:
            return (
                (score < s)
                if d is None
                else ((score < s) | ((score == s) & ((deadline > d) | ((deadline == d) & (id_ > after.id)))))
            )
        return ((score < s) | ((score == s) & (id_ > after.id))) if d is None else (score <= s)
    # the exact reverse: score asc; within a score: undated (id desc), then dated (deadline desc, id desc)
    if dated:
        return (
            (score >= s)
            if d is None
            else ((score > s) | ((score == s) & ((deadline < d) | ((deadline == d) & (id_ < after.id)))))
        )
    return ((score > s) | ((score == s) & (id_ < after.id))) if d is None else (score > s)


def key_of(inv: Invoice | InvoiceRow, sort: str) -> PageKey:
    if sort == "risk":
        return PageKey((inv.risk_score, inv.review_deadline), inv.id)
    column, _ = SORTS[sort]
    return PageKey(getattr(inv, column.name), inv.id)


def counts_by_status(f: Filters) -> dict[str, int]:
    """{status: invoices matching f (its statuses aside)}.  Filtered by nothing
    but account type and class: the counts the database keeps (store/counts.py),
    a lookup; any other filter: counted."""
    f = f.with_(statuses=())
    counts = {s: 0 for s in S.INVOICE_STATUSES}
    if f.with_(account_type=None, customer_class=None) == Filters():
        class_id = None
        if f.customer_class:
            class_id = CustomerClass.select(CustomerClass.id).where(CustomerClass.name == f.customer_class).scalar()
            if class_id is None:  # (make_filters refuses an unknown class)
                return counts
        counts.update(maintained_counts.by_status(f.account_type, class_id))
        return counts
    query = base_query(f, Invoice.status, fn.COUNT(Invoice.id)).group_by(Invoice.status)
    for status, n in tuple_rows(query.tuples()):
        counts[status] = n
    return counts


def totals_by_status(
    ids: list[int] | None = None, f: Filters | None = None
) -> dict[str, tuple[int, dict[str, Decimal]]]:
    """{status: (how many, {currency: sum of totals})} of these invoices, or of
    all matching f in one query (for confirmations: what an action will
    change, and what it will refuse)."""
    columns = (Invoice.status, Invoice.currency, fn.COUNT(Invoice.id), fn.SUM(Invoice.total))
    if f is not None:
        queries = [base_query(f, *columns)]
    else:
        ids = ids or []
        queries = [
            Invoice.select(*columns).where(Invoice.id.in_(ids[start : start + 500]))
            for start in range(0, len(ids), 500)
        ]
    out: dict[str, tuple[int, dict[str, Decimal]]] = {}
    for query in queries:
        for status, currency, n, total in query.group_by(Invoice.status, Invoice.currency).tuples():
            count, sums = out.get(status, (0, {}))
            sums[currency] = sums.get(currency, Decimal(0)) + _money(total or 0)
            out[status] = (count + n, sums)
    return out


# --------------------------------------------------------------------------
# `find` (CLI): a page and whether more follow, the total, every match
# streamed, and a cursor that names the position after a page.


def count_matching(f: Filters) -> int:
    """How many invoices match f (one COUNT; the finder's counts do it per status).
    The account and class are joined only when a filter reads the joined
    account (its type): on a million invoices the joins double the count's cost."""
    if f.account_type:
        return base_query(f, fn.COUNT(Invoice.id)).scalar() or 0
    query = Invoice.select(fn.COUNT(Invoice.id))
    for c in _where(f):
        query = query.where(c)
    return query.scalar() or 0


def _checked(sort: str, limit: int) -> None:
    if sort not in SORTS:
        raise FilterError("sort", f"{sort!r} is not one of {', '.join(SORTS)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise FilterError("limit", f"must be between 1 and {MAX_LIMIT}")


def _descending(sort: str, descending: bool | None) -> bool:
    return SORTS[sort][1] if descending is None else descending


def _fetch(f: Filters, sort: str, desc: bool, after: PageKey | None, limit: int) -> list[InvoiceRow]:
    if sort == "risk":
        return _risk_page(f, desc, after, limit)
    return _rows(page_query(f, sort=sort, descending=desc, after=after, limit=limit))


def find_page(
    f: Filters,
    *,
    sort: str = "issue_date",
    descending: bool | None = None,
    after: PageKey | None = None,
    limit: int = 50,
) -> tuple[list[InvoiceRow], bool]:
    """One page after `after` and whether more invoices follow it (one row
    more is read to know; no count)."""
    _checked(sort, limit)
    rows = _fetch(f, sort, _descending(sort, descending), after, limit + 1)
    return rows[:limit], len(rows) > limit


def iter_matching(
    f: Filters,
    *,
    sort: str = "issue_date",
    descending: bool | None = None,
    after: PageKey | None = None,
    batch: int = 1000,
):
    """Every invoice matching f, in the page order, streamed: read in keyset
    batches of `batch` rows (each one query of the same cost, wherever it
    is), so memory stays constant however many match."""
    _checked(sort, batch)
    desc = _descending(sort, descending)
    while True:
        rows = _fetch(f, sort, desc, after, batch)
        yield from rows
        if len(rows) < batch:
            return
        after = key_of(rows[-1], sort)


# A cursor is "SORT:asc|desc:VALUE:ID" (VALUE of the risk order: "SCORE,DEADLINE").
# Scripts should treat it as opaque: pass it back with the same --sort/--asc.


def _value_text(sort: str, value) -> str:
    if sort == "risk":
        score, deadline = value
        return f"{score},{deadline.isoformat() if deadline else ''}"
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else str(value)


def _value_of(sort: str, text: str):
    if sort == "issue_date":
        return dt.date.fromisoformat(text)
    if sort == "deadline":
        return dt.datetime.fromisoformat(text)
    if sort == "total":
        value = Decimal(text)
        if not value.is_finite():
            raise ValueError(text)
        return value
    if sort == "risk":
        score, _, deadline = text.partition(",")
        return int(score), (dt.datetime.fromisoformat(deadline) if deadline else None)
    return text  # number


def cursor_of(row, sort: str, descending: bool | None = None) -> str:
    """The cursor for the position after `row` in the order (sort, descending)."""
    desc = _descending(sort, descending)
    key = key_of(row, sort)
    return f"{sort}:{'desc' if desc else 'asc'}:{_value_text(sort, key.value)}:{key.id}"


def after_key(text: str, *, sort: str, descending: bool | None = None) -> PageKey:
    """The position a find --after names: a cursor from cursor_of (find's
    `next`), or an invoice number (the page after that invoice, in this
    order).  FilterError("after") for anything else, or a cursor of another
    order."""
    desc = _descending(sort, descending)
    text = (text or "").strip()
    head, sep, rest = text.partition(":")
    if sep and head in SORTS:
        direction, _, rest = rest.partition(":")
        value_text, _, id_text = rest.rpartition(":")
        try:
            key = PageKey(_value_of(head, value_text), int(id_text))
        except (ValueError, ArithmeticError):
            key = None
        if key is not None and direction in ("asc", "desc"):
            if (head, direction == "desc") != (sort, desc):
                order = f"--sort {head}" + (" --asc" if direction == "asc" and SORTS[head][1] else "")
                raise FilterError(
                    "after", f"the cursor continues the order of {order}; repeat the options of the first page"
                )
            return key
    inv = Invoice.get_or_none(Invoice.number == text) if text else None
    if inv is None:
        raise FilterError("after", f'{text!r} is neither a cursor from find (its "next") nor an invoice number')
    key = key_of(inv, sort)
    if key.value is None:  # only --sort deadline has a column that can be empty
        raise FilterError("after", f"{inv.number} has no review deadline, so no place in --sort {sort}")
    return key

"""Risk flags from the store: load an invoice's facts and its account's
history (and the period's population), assess them with the pure
`risk.evaluate`, save score, flags, expected total and money at stake.

History lookups are set-based: one windowed query for the last N issued
regular invoices of any number of accounts (the bill run asks for a whole
chunk at once), one query for their charge lines.
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal

from .. import risk
from .. import statuses as S
from ..money import ZERO
from .bulk import db_rows, update_rows
from .db import connect, is_sqlite
from .fields import MONEY_SCALE, QUANTITY_SCALE
from .models import Correction, Invoice, database, tuple_rows
from .settings import load_settings

CHUNK = 500


def settings() -> risk.RiskSettings:
    return load_settings().risk


# --------------------------------------------------------------------------
# Loading facts


def load_subscriptions(ids: Iterable[int | None]) -> dict[int, risk.SubscriptionFact]:
    ids = sorted({i for i in ids if i})
    out: dict[int, risk.SubscriptionFact] = {}
    db = database.obj
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        for sub_id, name, status, active_from, active_to in db.execute_sql(
            "SELECT id, name, status, active_from, active_to FROM subscription "
            f"WHERE id IN ({', '.join([db.param] * len(chunk))})",
            chunk,
        ):
            out[sub_id] = risk.SubscriptionFact(sub_id, name, status, _day(active_from), _day(active_to))
    return out


_LINE_SQL = (
    "SELECT invoice_id, service, description, amount, discount, subscription_id, quantity, records, "
    "days, duplicates, duplicate_amount FROM charge_line WHERE invoice_id IN ({}) "
    "ORDER BY invoice_id, position"
)


def _scaled(scale: int) -> Callable:
    """MoneyField/QuantityField.python_value without the method call (a hot loop)."""

    def convert(value, _d=Decimal, _s=-scale, _zero=ZERO):
        return _d(value).scaleb(_s) if value else (None if value is None else _zero)

    return convert


def _day(value) -> dt.date:
    """A DATE column as read: SQLite gives text, PostgreSQL a date."""
    return dt.date.fromisoformat(value[:10]) if isinstance(value, str) else value


def _lines_and_corrections(inv_ids: Sequence[int]) -> tuple[dict[int, list[risk.ChargeFact]], dict[int, list[Decimal]]]:
    """Charge lines (as risk facts) and correction amounts of these invoices.
    Raw SQL on purpose: assessing a bill run's 100,000 invoices reads
    millions of lines, and building models for them cost more than the SQL."""
    db = database.obj
    money, qty = _scaled(MONEY_SCALE), _scaled(QUANTITY_SCALE)
    lines: dict[int, list[risk.ChargeFact]] = {}
    corrections: dict[int, list[Decimal]] = {}
    # A line read again (a monthly fee, month after month) is the same
    # immutable fact: built once.
    built: dict[tuple, risk.ChargeFact] = {}
    for start in range(0, len(inv_ids), CHUNK):
        chunk = list(inv_ids[start : start + CHUNK])
        marks = ", ".join([db.param] * len(chunk))
        for inv_id, *line in db.execute_sql(_LINE_SQL.format(marks), chunk):
            key = tuple(line)
            fact = built.get(key)
            if fact is None:
                service, description, amount, discount, sub_id, quantity, records, days, dups, dup_amount = line
                fact = built[key] = risk.ChargeFact(
                    service or "",
                    description,
                    money(amount),
                    money(discount),
                    sub_id,
                    qty(quantity) or ZERO,
                    records or 0,
                    days or 0,
                    dups or 0,
                    money(dup_amount) or ZERO,
                )
            lines.setdefault(inv_id, []).append(fact)
        for inv_id, amount in db.execute_sql(
            f"SELECT invoice_id, amount FROM correction WHERE invoice_id IN ({marks}) ORDER BY invoice_id, position",
            chunk,
        ):
            corrections.setdefault(inv_id, []).append(money(amount))
    return lines, corrections


def load_facts(inv: Invoice) -> risk.InvoiceFacts:
    """The invoice's current revision: totals, charge lines, corrections and
    the subscriptions its fee lines charge."""
    return _load_many_facts([inv])[inv.id]


def load_histories(
    account_ids: Iterable[int], before: dt.date, n: int = risk.DEFAULT_SETTINGS.history
) -> dict[int, list[risk.PastInvoice]]:
    """Per account: its last `n` issued (not open) regular invoices whose
    period starts before `before`, newest first, with their lines and
    corrections."""
    ids = sorted(set(account_ids))
    out: dict[int, list[risk.PastInvoice]] = {a: [] for a in ids}
    if not ids:
        return out
    db = database.obj
    p = db.param
    rows: list[tuple] = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        cursor = db.execute_sql(
            "SELECT id, account_id, period_from, total, subtotal, discount_total, tax_total FROM ("
            "SELECT id, account_id, period_from, total, subtotal, discount_total, tax_total, "
            "ROW_NUMBER() OVER (PARTITION BY account_id ORDER BY period_from DESC, id DESC) AS rn "
            f"FROM invoice WHERE account_id IN ({', '.join([p] * len(chunk))}) AND kind = {p} "
            f"AND status <> {p} AND period_from < {p}) h WHERE rn <= {int(n)} "
            "ORDER BY account_id, period_from DESC, id DESC",
            [*chunk, "regular", S.OPEN, Invoice.period_from.db_value(before)],
        )
        rows.extend(cursor.fetchall())
    money = _scaled(MONEY_SCALE)
    lines, corrections = _lines_and_corrections([r[0] for r in rows])
    for inv_id, acc_id, period_from, total, subtotal, discount_total, tax_total in rows:
        out[acc_id].append(
            risk.PastInvoice(
                _day(period_from),
                money(total),
                money(subtotal) - money(discount_total),
                money(tax_total),
                tuple(lines.get(inv_id, ())),
                tuple(corrections.get(inv_id, ())),
            )
        )
    return out


# --------------------------------------------------------------------------
# The population: other accounts' prices per unit, the store's corrections.
# One scan per period, kept for POPULATION_TTL seconds per process: an
# adjust in the console must not rescan the period.

POPULATION_TTL = 300.0
POPULATION_SAMPLE = 10_000  # usage lines read per period (a median needs no more)
_population_cache: dict[tuple, tuple[float, risk.Population]] = {}


def population(period_from: dt.date, cfg: risk.RiskSettings | None = None) -> risk.Population:
    import time

    db = database.obj
    key = (type(db).__name__, str(getattr(db, "database", "")), period_from, cfg)
    hit = _population_cache.get(key)
    now = time.monotonic()
    if hit and now - hit[0] < POPULATION_TTL:
        return hit[1]
    cfg = cfg or settings()
    prices: dict[tuple[str, str], list[Decimal]] = {}
    p = db.param
    money, qty = _scaled(MONEY_SCALE), _scaled(QUANTITY_SCALE)
    for currency, service, amount, quantity in db.execute_sql(
        "SELECT i.currency, l.service, l.amount, l.quantity FROM charge_line l "
        f"JOIN invoice i ON i.id = l.invoice_id WHERE i.period_from = {p} AND i.kind = {p} "
        f"AND l.subscription_id IS NULL AND l.quantity > 0 LIMIT {POPULATION_SAMPLE}",
        [Invoice.period_from.db_value(period_from), "regular"],
    ):
        prices.setdefault((currency, service or ""), []).append(money(amount) / qty(quantity))
    unit_prices = {k: (risk.median(v), len(v)) for k, v in prices.items()}
    recent = [
        cfg.to_reporting(abs(amount), currency)
        for amount, currency in tuple_rows(
            Correction.select(Correction.amount, Invoice.currency)
            .join(Invoice, on=(Correction.invoice == Invoice.id))
            .where(Correction.kind.in_(["manual_credit", "manual_charge"]))
            .order_by(Correction.id.desc())
            .limit(2000)
            .tuples()
        )
    ]
    typical = None
    if len(recent) >= 20:
        recent.sort()
        typical = recent[int(len(recent) * 0.95)].quantize(Decimal("0.01"))
    result = risk.Population(unit_prices, typical)
    _population_cache[key] = (now, result)
    return result


# --------------------------------------------------------------------------
# Assess and save

DRAFT = risk.Assessment([], None, ZERO, 0)  # an open invoice: no flags until it closes
STORED_COLUMNS = ("risk_score", "risk_flags", "expected_total", "risk_at_stake")


def stored(result: risk.Assessment) -> dict:
    """The invoice columns an assessment sets (STORED_COLUMNS)."""
    return {
        "risk_score": result.score,
        "risk_flags": risk.dumps_flags(result.flags),
        "expected_total": result.expected,
        "risk_at_stake": result.at_stake,
    }


def assess_invoice(
    inv: Invoice, cfg: risk.RiskSettings | None = None, *, save: bool = True
) -> tuple[int, list[risk.Flag]]:
    """Flags of the invoice's current revision; saved on its row (call inside
    the transaction that changed it).  Open invoices are drafts: no flags."""
    if inv.status == S.OPEN:
        result = DRAFT
    else:
        cfg = cfg or settings()
        history = load_histories([inv.account_id], inv.period_from, cfg.history)[inv.account_id]
        result = risk.evaluate(load_facts(inv), history, cfg, population(inv.period_from, cfg))
    if save:
        columns = stored(result)
        Invoice.update(**columns).where(Invoice.id == inv.id).execute()
        for key, value in columns.items():
            setattr(inv, key, value)
    return result.score, result.flags


Items = Sequence[tuple[int, risk.InvoiceFacts]]  # (account id, facts) of invoices about to be written


Histories = dict[int, list[risk.PastInvoice]]  # load_histories: per account


def assess_new(
    items: Items,
    cfg: risk.RiskSettings | None = None,
    populations: Mapping[dt.date, risk.Population] | None = None,
    known: Callable[[dt.date, int], Histories] | None = None,
) -> list[dict]:
    """The stored columns of invoices about to be written, each given as
    (account id, its facts from the calculation): the flags assess_invoice
    would save once they are, with one history query per period for all of
    them (the bill run's chunk, the off-peak reissue's batch).  known(before,
    n): histories read already (ahead, in a worker), the others are read."""
    cfg = cfg or settings()
    out: list[dict] = [{} for _ in items]
    by_period: dict[dt.date, list[int]] = {}
    for k, (_, facts) in enumerate(items):
        by_period.setdefault(facts.period_from, []).append(k)
    for period_from, group in by_period.items():
        histories = dict(known(period_from, cfg.history)) if known else {}
        missing = [items[k][0] for k in group if items[k][0] not in histories]
        if missing:
            histories.update(load_histories(missing, period_from, cfg.history))
        pop = populations[period_from] if populations is not None else population(period_from, cfg)
        for k in group:
            acc_id, facts = items[k]
            out[k] = stored(risk.evaluate(facts, histories[acc_id], cfg, pop))
    return out


ASSESSOR_MIN_CHUNKS = 10  # fewer: not worth starting a worker process (about a second)


# In an assessor's worker: the histories of the next chunks, read while the
# main process was busy with the one before (the newest AHEAD_KEPT reads).
AHEAD_KEPT = 2
_ahead: list[tuple[tuple[dt.date, int], Histories]] = []


def _read_ahead(account_ids: list[int], before: dt.date, n: int) -> None:
    del _ahead[: max(0, len(_ahead) - AHEAD_KEPT + 1)]
    _ahead.append(((before, n), load_histories(account_ids, before, n)))


def _known(before: dt.date, n: int) -> Histories:
    out: Histories = {}
    for key, histories in _ahead:
        if key == (before, n):
            out.update(histories)
    return out


def _assess_in_worker(task: bytes) -> list[dict]:
    items, cfg, pops = pickle.loads(task)
    return assess_new(items, cfg, pops, _known)


class Assessing:
    """assess_new of one chunk, under way: `ready` when done in this
    process (the columns can go into the rows written), else `result()`
    waits for the worker."""

    def __init__(self, done: list[dict] | None = None, future=None, retry: Callable[[], list[dict]] | None = None):
        self._done, self._future, self._retry = done, future, retry
        self._asked: Callable[[], None] | None = None  # called at the first result() (_InWorker: the read ahead)

    @property
    def ready(self) -> bool:
        return self._done is not None

    def result(self) -> list[dict]:
        if self._asked is not None:  # the caller is done asking for this chunk (its parts all given)
            asked, self._asked = self._asked, None
            asked()
        if self._done is None:
            try:
                self._done = self._future.result()
            except Exception:  # the worker died (or failed): assessed here instead
                assert self._retry is not None
                self._done = self._retry()
        return self._done


class Joined(Assessing):
    """The parts of a chunk, asked one after the other (the first part is
    assessed while the next is calculated), as one."""

    def __init__(self, parts: Sequence[Assessing]) -> None:
        super().__init__()
        self.parts = list(parts)

    @property
    def ready(self) -> bool:
        return all(part.ready for part in self.parts)

    def result(self) -> list[dict]:
        if self._done is None:
            self._done = [columns for part in self.parts for columns in part.result()]
        return self._done


class Assessor:
    """What risk_store.assessor yields: `assessor(items)` assesses a chunk of
    a job, `assessor.ahead(account_ids, before)` says whose histories the
    next chunk will want (read meanwhile by a worker; here, nothing)."""

    _cfg: risk.RiskSettings | None = None

    def cfg(self) -> risk.RiskSettings:
        """The risk settings, read once: a job assesses all its chunks with the
        settings as they were at its first (a read took 1 ms, two a chunk)."""
        if self._cfg is None:
            self._cfg = settings()
        return self._cfg

    def __call__(self, items: Items) -> Assessing:
        return Assessing(assess_new(items, self.cfg()))

    def ahead(self, account_ids: Sequence[int], before: dt.date, *, now: bool = False) -> None:
        """`now`: for the chunk about to be worked, not the next."""


class _InWorker(Assessor):
    def __init__(self, pool) -> None:
        self.pool = pool
        self.up = pool.submit(os.getpid)  # done once the worker has started (about a second)
        self._ahead: tuple[list[int], dt.date] | None = None  # the next chunk's accounts, not yet sent

    def __call__(self, items: Items) -> Assessing:
        assessing = self._assess(items)
        assessing._asked = self._send_ahead  # once the chunk's result is asked for: all its parts are given
        return assessing

    def _assess(self, items: Items) -> Assessing:
        cfg = self.cfg()
        # The population as this process sees it (cached per period), as assess_new here would use.
        pops = {day: population(day, cfg) for day in {facts.period_from for _, facts in items}}
        items = list(items)
        if not self.up.done():  # the first chunks: here rather than wait for the worker to start
            return Assessing(assess_new(items, cfg, pops))
        try:
            # Pickled here, not by the pool's feeder thread: that thread gets
            # the interpreter only between this one's 5 ms turns, and the
            # worker started a chunk about 10 ms after it was asked.
            task = pickle.dumps((items, cfg, pops), protocol=pickle.HIGHEST_PROTOCOL)
            future = self.pool.submit(_assess_in_worker, task)
        except Exception:  # the worker died: here instead
            return Assessing(assess_new(items, cfg, pops))
        return Assessing(None, future, lambda: assess_new(items, cfg, pops))

    def ahead(self, account_ids: Sequence[int], before: dt.date, *, now: bool = False) -> None:
        # Sent after this chunk's assessment, not before: the worker takes its
        # tasks in turn, and the chunk's assessment, which the main process
        # waits for, waited for the next chunk's histories (main process: 1.1
        # s of 4.8 waiting, closing 8,402 invoices).  So it goes when the
        # chunk's result is first asked for: a chunk may be asked in parts.
        # `now` (the off-peak reissue, which knows a batch only once it has
        # claimed it): at once, while the batch is calculated.
        self._ahead = (list(account_ids), before)
        if now:
            self._send_ahead()

    def _send_ahead(self) -> None:
        if self._ahead is None:
            return
        (account_ids, before), self._ahead = self._ahead, None
        try:
            self.pool.submit(_read_ahead, account_ids, before, self.cfg().history)
        except Exception:  # the worker died: the chunk reads its histories itself
            pass


@contextmanager
def assessor(chunks: int, workers: int | None = None) -> Iterator[Assessor]:
    """Assesses the chunks of a job (the bill run, the off-peak reissue).  On
    a SQLite file store or a PostgreSQL server, for a job of
    ASSESSOR_MIN_CHUNKS chunks or more, with more than one core: in a worker
    process with its own connection, which reads the histories and
    evaluates while this process writes the chunk (a reader never waits for
    the writer: SQLite's WAL, PostgreSQL's snapshots; and histories are
    invoices of earlier periods, which these jobs do not write), and reads
    the next chunk's histories while this process calculates it (`ahead`).
    Otherwise, and inside a caller's transaction (whose rows a worker would
    not see), here, at once."""
    store = _worker_store()
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if workers <= 1 or chunks < ASSESSOR_MIN_CHUNKS or store is None or database.in_transaction():
        yield Assessor()
        return
    with _worker_pool(1, store) as pool:
        yield _InWorker(pool)


# What assessing needs of the invoice row itself (assess_many reads no more).
_FACT_COLUMNS = (
    Invoice.id,
    Invoice.account.alias("account_id"),
    Invoice.status,
    Invoice.currency,
    Invoice.period_from,
    Invoice.period_to,
    Invoice.total,
    Invoice.subtotal,
    Invoice.discount_total,
    Invoice.tax_total,
    Invoice.correction_total,
    Invoice.external_total,
    Invoice.external_currency,
)


POOL_MIN_CHUNKS = 4  # fewer chunks than this: not worth starting worker processes


def assess_many(
    ids: Sequence[int], progress: Callable[[int, int], None] | None = None, workers: int | None = None
) -> dict[str, int]:
    """Recompute and save flags of these invoices (after an upgrade, or a
    change of the risk settings).

    Chunks of CHUNK invoices of one period (one history query, one line
    query and one population each); each chunk's scores are written in one
    transaction, in order, by this process.  On a SQLite file store or a
    PostgreSQL server with enough chunks, the reading and assessing (pure
    Python, most of the time) runs in `workers` processes (default: one per
    core) while this one writes: readers never wait for the writer, and what
    a chunk writes (risk columns) is nothing another chunk reads."""
    cfg = settings()
    counts = {"assessed": 0, "flagged": 0}
    ids = _by_period(ids)
    chunks = [ids[start : start + CHUNK] for start in range(0, len(ids), CHUNK)]
    workers = pool_size(workers, len(chunks))
    if workers > 1:
        store = _worker_store()
        assert store is not None  # pool_size: more than one worker only on a store they can open
        with _worker_pool(workers, store) as pool:
            results = pool.map(_assess_chunk, chunks, [cfg] * len(chunks))
            _write_results(results, len(ids), counts, progress)
    else:
        _write_results((_assess_chunk(chunk, cfg) for chunk in chunks), len(ids), counts, progress)
    return counts


def pool_size(workers: int | None, chunks: int) -> int:
    """Worker processes for assess_many: 1 (in this process) unless the store
    is a SQLite file or a PostgreSQL server and there are POOL_MIN_CHUNKS
    chunks or more."""
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if workers <= 1 or chunks < POOL_MIN_CHUNKS or _worker_store() is None:
        return 1
    return min(workers, chunks)


def _write_results(results, total: int, counts: dict[str, int], progress) -> None:
    done = 0
    for updates, flagged in results:
        with database.atomic():
            update_rows(Invoice, list(STORED_COLUMNS), updates)
        done += len(updates)
        counts["assessed"] += len(updates)
        counts["flagged"] += flagged
        if progress:
            progress(done, total)


def _assess_chunk(chunk: list[int], cfg: risk.RiskSettings) -> tuple[list[tuple], int]:
    """(rows for update_rows, how many flagged) of one chunk; reads only."""
    invoices = list(Invoice.select(*_FACT_COLUMNS).where(Invoice.id.in_(chunk)).order_by(Invoice.id).namedtuples())
    facts = _load_many_facts([i for i in invoices if i.status != S.OPEN])
    by_period: dict[dt.date, list] = {}
    for inv in invoices:
        by_period.setdefault(inv.period_from, []).append(inv)
    updates, flagged = [], 0
    for period_from, group in by_period.items():
        histories = load_histories([i.account_id for i in group], period_from, cfg.history)
        pop = population(period_from, cfg)
        for inv in group:
            if inv.status == S.OPEN:
                result = DRAFT
            else:
                result = risk.evaluate(facts[inv.id], histories[inv.account_id], cfg, pop)
            updates.append((*stored(result).values(), inv.id))
            flagged += result.flagged
    return db_rows(Invoice, [*STORED_COLUMNS, "id"], updates), flagged


# How a worker process opens this store: a SQLite file by its URL, a
# PostgreSQL server by this connection's class and parameters (the same
# login, without the URL having to be known here).
WorkerStore = str | tuple[type, str, dict]


def _worker_store() -> WorkerStore | None:
    """None: the store cannot be opened from another process (SQLite in memory)."""
    db = database.obj
    if not is_sqlite(db):
        return (type(db), db.database, dict(db.connect_params))
    path = getattr(db, "database", "")
    if not path or path == ":memory:" or str(path).startswith("file:"):
        return None
    return f"sqlite:///{os.path.abspath(path)}"


def _worker_pool(workers: int, store: WorkerStore):
    """Processes that each open `store` themselves (assessor, assess_many)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: a forked child would share this process's open connection.
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_open,
        initargs=(store,),
    )


def _worker_open(store: WorkerStore) -> None:
    """A pool worker's own connection to the store (schema already current)."""
    if isinstance(store, str):
        connect(store, migrate=False)
        return
    cls, name, params = store
    db = cls(name, **params)
    database.initialize(db)
    db.connect()


def _by_period(ids: Sequence[int]) -> list[int]:
    keyed: list[tuple] = []
    unique = sorted(set(ids))
    for start in range(0, len(unique), 5 * CHUNK):
        keyed.extend(
            tuple_rows(
                Invoice.select(Invoice.period_from, Invoice.id)
                .where(Invoice.id.in_(unique[start : start + 5 * CHUNK]))
                .tuples()
            )
        )
    keyed.sort()
    return [i for _, i in keyed]


def _load_many_facts(invoices: list) -> dict[int, risk.InvoiceFacts]:
    """load_facts for many invoices: one query each for lines, corrections, subscriptions."""
    lines, corrections = _lines_and_corrections([i.id for i in invoices])
    subs = load_subscriptions(c.subscription_id for v in lines.values() for c in v if c.subscription_id)
    return {
        inv.id: risk.InvoiceFacts(
            inv.currency,
            inv.period_from,
            inv.period_to,
            inv.total,
            inv.subtotal,
            inv.discount_total,
            inv.tax_total,
            inv.correction_total,
            tuple(lines.get(inv.id, ())),
            tuple(corrections.get(inv.id, ())),
            subs,
            inv.external_total,
            inv.external_currency,
        )
        for inv in invoices
    }


def flags_of(inv) -> list[risk.Flag]:
    """The stored flags of an Invoice or a results-page row."""
    return risk.parse_flags(getattr(inv, "risk_flags", "") or "")

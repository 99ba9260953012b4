"""Planted billing errors for an independent evaluation of the review queue.

    from plant import plant_errors          # with bench/ on sys.path
    plants = plant_errors(ctx, 20, seed=1, workdir=tmp)

Plants `n` errors on distinct invoices under review (one error per invoice,
one invoice per account), picked with a seeded RNG, through the real
workflow wherever the application is the source of the data:

    usage_feed    extra usage of one service imported with xdr_import.import_xdrs
                  (quantity and amount x factor, 1.5-100x), then reissued
    tariff        the service's xDRs re-rated: amount x or / factor, quantity
                  unchanged (direct write: the rating system is upstream)
    units         quantity x or / factor, amount unchanged (or both x factor)
    resent        the service's records imported again under new xdr_ids
                  (once or twice: 2x or 3x)
    feed_stopped  the account's xDRs after day 8-15 of the period deleted
    catalogue     a billed subscription's fee x or / factor, or a digit typo
                  (x10, /10, two digits swapped: 89.00 -> 98.00)
    discount      the account's discount percent x10 or /10 (10 -> 100,
                  15 -> 1.5), or a 50 % / 100 % discount added
    manual        workflow.adjust with a plausible amount (5-250, JPY x150)
                  typed x10 or x100; a credit the domain refuses is redrawn
    scale         every usage record of a large account x 1.5-3

Direct writes are used only where an upstream system is the source (rated
xDRs, the catalogue, the account's discount); every planted invoice is then
reissued "now" with workflow.reissue_many (the manual kind uses
workflow.adjust), so the stored lines, totals and risk assessment are the
application's own.

Honesty: nothing here reads risk scores or flags, or knows the engine.
Invoices are chosen from status, account and the invoice's own lines,
xDRs, subscriptions and discounts only.  Factors are drawn log-uniformly.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import random
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from tui_billing import statuses as S
from tui_billing import workflow as W
from tui_billing import xdr_import as U
from tui_billing.billing import BILLABLE_SUBSCRIPTION_STATUSES, period_bounds_utc
from tui_billing.money import quantize
from tui_billing.store.models import ChargeLine, Discount, Invoice, Subscription, Xdr, database

KINDS = ("usage_feed", "tariff", "units", "resent", "feed_stopped", "catalogue", "discount", "manual", "scale")
Q3, Q4 = Decimal("0.001"), Decimal("0.0001")
LARGE_SHARE = 0.2  # "large account": its invoice is in the top fifth of the candidates by total


@dataclass
class Plant:
    invoice_id: int
    number: str
    account_id: int
    currency: str
    kind: str
    factor: float | None  # new / old of the planted quantity (< 1: downwards); None: n/a
    detail: str
    total_before: Decimal
    total_after: Decimal | None = None

    @property
    def total_ratio(self) -> float | None:
        if self.total_after is None or not self.total_before:
            return None
        return float(self.total_after / self.total_before)


def size(f: float | None) -> str:
    """x2.50 upwards, /2.50 downwards."""
    if f is None:
        return "-"
    if f <= 0:
        return "to <=0"
    return f"x{f:.2f}" if f >= 1 else f"/{1 / f:.2f}"


def log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


@dataclass
class _Candidate:
    id: int
    number: str
    account_id: int
    currency: str
    total: Decimal
    period_from: dt.date
    period_to: dt.date
    large: bool = False


@dataclass
class Planter:
    ctx: W.Ctx
    rng: random.Random
    workdir: Path
    tag: str = "plant"
    seq: int = 0
    plants: list[Plant] = field(default_factory=list)

    # -- reading the invoice's own data ------------------------------------
    def _xdrs(self, c: _Candidate, service: str | None = None) -> list[Xdr]:
        start, end = period_bounds_utc(c.period_from, c.period_to)
        q = Xdr.select().where((Xdr.account == c.account_id) & (Xdr.time >= start) & (Xdr.time < end))
        if service is not None:
            q = q.where(Xdr.service == service)
        return list(q.order_by(Xdr.time, Xdr.id))

    def _service(self, c: _Candidate) -> tuple[str, list[Xdr]] | None:
        """One usage service of the period with a positive amount, at random."""
        by_service: dict[str, list[Xdr]] = {}
        for x in self._xdrs(c):
            by_service.setdefault(x.service, []).append(x)
        usable = sorted(s for s, rows in by_service.items() if sum(r.amount for r in rows) > 0)
        if not usable:
            return None
        s = self.rng.choice(usable)
        return s, by_service[s]

    # -- writing -----------------------------------------------------------
    def _import(self, rows: list[tuple[str, int, str, dt.datetime, Decimal, Decimal]]) -> None:
        """Through the real xDR import; times are naive UTC, written with +00:00."""
        self.seq += 1
        path = self.workdir / f"{self.tag}-{self.seq:03d}.csv"
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(U.COLUMNS)
            for xid, acc, service, when, q, a in rows:
                w.writerow([xid, acc, service, when.isoformat() + "+00:00", f"{q:.3f}", f"{a:.4f}"])
        result = U.import_xdrs(path)
        if not result.committed or result.imported != len(rows):
            raise RuntimeError(f"plant import failed: {result.as_dict()}")

    def _reissue(self, c: _Candidate) -> None:
        result = W.reissue_many(self.ctx, [c.id], "now")
        if not result.ok:
            raise RuntimeError(f"plant reissue of {c.number} failed: {result.failed}")

    # -- the kinds: each returns (factor, detail) or None (does not apply) --
    def usage_feed(self, c):
        picked = self._service(c)
        if picked is None:
            return None
        service, rows = picked
        f = log_uniform(self.rng, 1.5, 100)
        q = sum(r.quantity for r in rows)
        a = sum(r.amount for r in rows)
        extra_q, extra_a = (q * Decimal(f - 1)).quantize(Q3), (a * Decimal(f - 1)).quantize(Q4)
        start, end = period_bounds_utc(c.period_from, c.period_to)
        days = max((end - start).days, 1)
        parts = 3
        out = []
        for p in range(parts):
            if p < parts - 1:
                pq, pa = (extra_q / parts).quantize(Q3), (extra_a / parts).quantize(Q4)
            else:
                pq = extra_q - sum(r[4] for r in out)
                pa = extra_a - sum(r[5] for r in out)
            when = start + dt.timedelta(days=min(2 + 9 * p, days - 1), hours=12, minutes=self.rng.randrange(600))
            out.append((f"{self.tag}-feed-{c.id}-{p}", c.account_id, service, when, pq, pa))
        self._import(out)
        return f, f"{service}: +{len(out)} records"

    def tariff(self, c):
        picked = self._service(c)
        if picked is None:
            return None
        service, rows = picked
        f = log_uniform(self.rng, 1.5, 100)
        if self.rng.random() < 0.5:
            f = 1 / f
        with database.atomic():
            for r in rows:
                Xdr.update(amount=(r.amount * Decimal(f)).quantize(Q4)).where(Xdr.id == r.id).execute()
        return f, f"{service}: amount re-rated"

    def units(self, c):
        picked = self._service(c)
        if picked is None:
            return None
        service, rows = picked
        both = self.rng.random() < 1 / 3
        f = log_uniform(self.rng, 1.5, 100)
        if not both and self.rng.random() < 0.5:
            f = 1 / f
        with database.atomic():
            for r in rows:
                changes = {"quantity": (r.quantity * Decimal(f)).quantize(Q3)}
                if both:
                    changes["amount"] = (r.amount * Decimal(f)).quantize(Q4)
                Xdr.update(**changes).where(Xdr.id == r.id).execute()
        return f, f"{service}: quantity{' and amount' if both else ' only'}"

    def resent(self, c):
        picked = self._service(c)
        if picked is None:
            return None
        service, rows = picked
        copies = self.rng.choice([1, 1, 2])
        out = [
            (f"{self.tag}-resend{k}-{r.xdr_id}"[:64], c.account_id, service, r.time, r.quantity, r.amount)
            for k in range(1, copies + 1)
            for r in rows
        ]
        self._import(out)
        return float(1 + copies), f"{service}: {len(rows)} records sent {copies + 1}x"

    def feed_stopped(self, c):
        rows = self._xdrs(c)
        start, _ = period_bounds_utc(c.period_from, c.period_to)
        cut = self.rng.randint(8, 15)
        boundary = start + dt.timedelta(days=cut)
        before = [r for r in rows if r.time < boundary]
        after = [r for r in rows if r.time >= boundary]
        a_all, a_kept = sum((r.amount for r in rows), Decimal(0)), sum((r.amount for r in before), Decimal(0))
        if not after or a_all <= 0 or not before:
            return None
        with database.atomic():
            for start_i in range(0, len(after), 500):
                Xdr.delete().where(Xdr.id.in_([r.id for r in after[start_i : start_i + 500]])).execute()
        return float(a_kept / a_all), f"no records after day {cut} ({len(after)} of {len(rows)} gone)"

    def catalogue(self, c):
        sub_ids = [
            s
            for (s,) in ChargeLine.select(ChargeLine.subscription)
            .where((ChargeLine.invoice == c.id) & ChargeLine.subscription.is_null(False))
            .tuples()
        ]
        subs = [
            s
            for s in Subscription.select().where(Subscription.id.in_(sub_ids or [0])).order_by(Subscription.id)
            if s.status in BILLABLE_SUBSCRIPTION_STATUSES and s.fee > 0
        ]
        if not subs:
            return None
        sub = self.rng.choice(subs)
        old = sub.fee
        how = self.rng.choice(["factor", "x10", "/10", "swap"])
        if how == "swap":
            new = _swapped(self.rng, old, c.currency)
            how = "digits swapped" if new is not None else "x10"
        if how == "factor":
            f = log_uniform(self.rng, 1.5, 100)
            new = quantize(old * Decimal(f if self.rng.random() < 0.5 else 1 / f), c.currency)
        elif how == "x10":
            new = old * 10
        elif how == "/10":
            new = quantize(old / 10, c.currency)
        if new == old or new <= 0:
            return None
        Subscription.update(fee=new).where(Subscription.id == sub.id).execute()
        return float(new / old), f"{sub.name} fee {old:.2f} -> {new:.2f} ({how})"

    def discount(self, c):
        services = {s for (s,) in ChargeLine.select(ChargeLine.service).where(ChargeLine.invoice == c.id).tuples()}
        rules = [
            d
            for d in Discount.select().where(Discount.account == c.account_id).order_by(Discount.id)
            if d.service is None or d.service in services
        ]
        if rules:
            d = self.rng.choice(rules)
            old = d.percent
            options = [(old / 10).quantize(Q3)]
            if old * 10 <= 100:
                options.append(old * 10)
            new = self.rng.choice(options)
            if new == old or new <= 0:
                return None
            Discount.update(percent=new).where(Discount.id == d.id).execute()
            return float(new / old), f"discount {old.normalize():f} % -> {new.normalize():f} %"
        pct = Decimal(self.rng.choice([50, 100]))
        Discount.create(account=c.account_id, service=None, percent=pct, description="Loyalty discount")
        return None, f"discount {pct} % added"

    def manual(self, c):
        jpy = 150 if c.currency == "JPY" else 1
        for _ in range(20):
            plausible = quantize(Decimal(self.rng.randint(500, 25_000)) / 100 * jpy, c.currency)
            times = self.rng.choice([10, 100])
            kind = self.rng.choice(["credit", "charge"])
            desc = (
                self.rng.choice(
                    [
                        "Service credit per SLA",
                        "Goodwill credit for outage 12 May",
                        "Promotional credit: spring campaign",
                    ]
                )
                if kind == "credit"
                else self.rng.choice(["On-site support visit (4 h)", "Porting fee", "Hardware replacement"])
            )
            try:
                W.adjust(self.ctx, c.id, kind, plausible * times, desc)
            except W.BadInput:
                continue  # e.g. a credit larger than the total: refused, draw another
            return float(times), f"{kind} {plausible * times:.2f} (meant {plausible:.2f})"
        return None

    def scale(self, c):
        if not c.large:
            return None
        rows = self._xdrs(c)
        if not rows or sum(r.amount for r in rows) <= 0:
            return None
        f = log_uniform(self.rng, 1.5, 3)
        with database.atomic():
            for r in rows:
                Xdr.update(
                    quantity=(r.quantity * Decimal(f)).quantize(Q3), amount=(r.amount * Decimal(f)).quantize(Q4)
                ).where(Xdr.id == r.id).execute()
        return f, f"all usage ({len(rows)} records)"

    # -- one plant -----------------------------------------------------------
    def plant(self, kind: str, c: _Candidate) -> Plant | None:
        done = getattr(self, kind)(c)
        if done is None:
            return None
        factor, detail = done
        p = Plant(c.id, c.number, c.account_id, c.currency, kind, factor, detail, c.total)
        if kind != "manual":
            self._reissue(c)
        p.total_after = Invoice.get_by_id(c.id).total
        self.plants.append(p)
        return p


def _swapped(rng: random.Random, amount: Decimal, currency: str) -> Decimal | None:
    """Two adjacent different digits of the integer part swapped (89 -> 98)."""
    whole, _, frac = f"{amount:f}".partition(".")
    spots = [i for i in range(len(whole) - 1) if whole[i] != whole[i + 1] and not (i == 0 and whole[1] == "0")]
    if not spots:
        return None
    i = rng.choice(spots)
    digits = whole[:i] + whole[i + 1] + whole[i] + whole[i + 2 :]
    return quantize(Decimal(digits + ("." + frac if frac else "")), currency)


def candidates() -> list[_Candidate]:
    """Regular invoices under review, by id; the top fifth by total (JPY /150) are 'large'."""
    out = [
        _Candidate(i, n, a, cur, t, pf, pt)
        for i, n, a, cur, t, pf, pt in Invoice.select(
            Invoice.id,
            Invoice.number,
            Invoice.account,
            Invoice.currency,
            Invoice.total,
            Invoice.period_from,
            Invoice.period_to,
        )
        .where((Invoice.status == S.UNDER_REVIEW) & (Invoice.kind == "regular"))
        .order_by(Invoice.id)
        .tuples()
    ]
    norm = sorted((c.total / (150 if c.currency == "JPY" else 1) for c in out), reverse=True)
    if norm:
        threshold = norm[max(int(len(norm) * LARGE_SHARE) - 1, 0)]
        for c in out:
            c.large = c.total / (150 if c.currency == "JPY" else 1) >= threshold
    return out


def plant_errors(ctx: W.Ctx, n: int, seed: int, *, workdir: str | Path, kinds=KINDS) -> list[Plant]:
    """Plant n errors (fewer if the store runs out of invoices); see the module docstring."""
    rng = random.Random(f"{seed}:plant")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    planter = Planter(ctx, rng, workdir, tag=f"plant{seed}")
    pool = candidates()
    rng.shuffle(pool)
    order = list(kinds)
    rng.shuffle(order)
    used_accounts: set[int] = set()
    for i in range(n):
        # Round-robin over the kinds (shuffled per seed); a kind that fits no
        # remaining invoice gives way to the next one.
        for k in range(len(order)):
            kind = order[(i + k) % len(order)]
            placed = None
            for c in pool:
                if c.account_id in used_accounts:
                    continue
                placed = planter.plant(kind, c)
                if placed is not None:
                    used_accounts.add(c.account_id)
                    break
            if placed is not None:
                break
        else:
            break  # nothing fits any more
    return planter.plants

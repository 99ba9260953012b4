"""jobs run and outbox: the job loop and mail delivery."""

from __future__ import annotations

import signal
import threading

from ..errors import ConfigError
from .common import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    ID_MAX,
    Env,
    UsageError,
    add_global_options,
    add_json,
    ascii_int,
    eprint,
)

OUTBOX_LIMIT = 100_000


def register(sub) -> None:
    from ..jobs import JOBS

    p = sub.add_parser(
        "jobs",
        help="the background job loop (headless)",
        description="Auto-approve, off-peak reissue, dispatch, postpay closing, payment expiry, "
        "admin digest and email delivery.",
    )
    add_global_options(p)
    actions = p.add_subparsers(dest="jobs_action", metavar="ACTION", parser_class=type(p))
    p.set_defaults(handler=_missing_action)

    r = actions.add_parser(
        "run",
        help="run the job loop until SIGTERM/SIGINT (or once, for cron)",
        description="Every job runs at start, then every minute (per-job intervals: [jobs] in the config "
        "file, in seconds; 0 disables one).  One greppable line per action goes to stderr.  "
        "SIGTERM or SIGINT finishes the item in hand and exits 0.  SQLite: one loop per "
        "store, a second one exits 1 (or waits with --wait).  PostgreSQL: several loops (on "
        "any hosts) share the work; each item is claimed by one of them.",
    )
    add_global_options(r)
    r.add_argument("--once", action="store_true", help="run every job once and exit (cron); exit 1 if any item failed")
    r.add_argument(
        "--wait",
        action="store_true",
        help="SQLite: if another loop runs on this store, wait for it to stop "
        "(PostgreSQL loops never wait: they share the work)",
    )
    r.add_argument(
        "--job",
        action="append",
        choices=list(JOBS),
        metavar="NAME",
        help=f"run only this job (repeatable): {', '.join(JOBS)}",
    )
    r.set_defaults(handler=cmd_jobs_run, needs="jobs")

    o = sub.add_parser(
        "outbox",
        help="emails waiting, failed or uncertain",
        description="Lists messages not (known to be) delivered: queued, sending, uncertain, "
        "failed.  --failed: only those an operator must look at.",
    )
    add_global_options(o)
    o.add_argument("--failed", action="store_true", help="only failed and uncertain deliveries")
    o.add_argument("--all", action="store_true", help="also messages already sent")
    o.add_argument(
        "--limit",
        type=ascii_int("limit", 1, OUTBOX_LIMIT),
        default=200,
        metavar="N",
        help=f"at most N messages (default 200, at most {OUTBOX_LIMIT:,})",
    )
    g = o.add_mutually_exclusive_group()
    g.add_argument(
        "--retry",
        type=ascii_int("retry", 1, ID_MAX),
        nargs="+",
        metavar="ID",
        help="put failed/uncertain messages back in the queue (an uncertain one may arrive twice)",
    )
    g.add_argument(
        "--mark-sent",
        type=ascii_int("mark-sent", 1, ID_MAX),
        nargs="+",
        metavar="ID",
        help="record uncertain messages as delivered (found in the server's log)",
    )
    add_json(o)
    o.set_defaults(handler=cmd_outbox, needs="view")


def _missing_action(env: Env, args) -> int:
    raise UsageError("usage", "jobs: choose an action: run")


# --------------------------------------------------------------------------


def cmd_jobs_run(env: Env, args) -> int:
    from ..jobs import LoopBusy, run_loop

    stop = threading.Event()
    previous = {}

    def on_signal(signum, frame):
        if stop.is_set():  # a second signal: stop now, like an interrupt
            raise KeyboardInterrupt
        stop.set()  # the loop notices between items and finishes the one in hand

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        summary = run_loop(env, stop, once=args.once, wait=args.wait, only=args.job)
    except LoopBusy as exc:
        eprint(f"tui-billing: {exc}")
        return EXIT_SOME_FAILED
    except ConfigError as exc:
        raise UsageError(exc.field, exc.reason) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if summary.lost_lock:
        eprint("tui-billing: another job loop took the job lock over; stopped")
        return EXIT_SOME_FAILED
    if args.once and not summary.ok:
        return EXIT_SOME_FAILED
    return EXIT_OK


def cmd_outbox(env: Env, args) -> int:
    from .. import mail
    from ..present import dumps, table

    if args.retry or args.mark_sent:
        ctx = env.ctx
        done, refused = mail.retry(ctx, args.retry) if args.retry else mail.mark_mail_sent(ctx, args.mark_sent)
        verb = "requeued" if args.retry else "marked sent"
        if env.json:
            env.print(dumps({"done": done, "failed": [{"id": i, "reason": r} for i, r in refused]}))
        else:
            env.print(f"{verb}: {len(done)} done, {len(refused)} failed")
            for msg_id, reason in refused:
                eprint(f"  {msg_id}: {reason}")
        return EXIT_SOME_FAILED if refused else EXIT_OK

    statuses = mail.PROBLEM_STATUSES if args.failed else (None if args.all else mail.PENDING_STATUSES)
    rows = mail.list_messages(statuses, args.limit)
    if env.json:
        env.print(dumps({"messages": [mail.message_dict(m, env.clock) for m in rows], "counts": mail.counts()}))
        return EXIT_OK
    if not rows:
        env.print(
            "no failed deliveries"
            if args.failed
            else "outbox empty: every message was delivered"
            if not args.all
            else "no messages"
        )
    else:

        def when(m):
            if m.status == mail.QUEUED and m.next_attempt_at:
                return env.clock.local(m.next_attempt_at).strftime("%Y-%m-%d %H:%M")
            return ""

        env.print(
            table(
                [
                    [
                        str(m.id),
                        m.status,
                        m.kind,
                        m.invoice.number if m.invoice_id and m.invoice else "",
                        m.recipient[:40],
                        str(m.attempts),
                        when(m),
                        (m.last_error or "")[:70],
                    ]
                    for m in rows
                ],
                ["ID", "Status", "Kind", "Invoice", "Recipient", "Tries", "Next attempt", "Last error"],
                right={0, 5},
            )
        )
    counts = mail.counts()
    env.print("\n" + "  ".join(f"{k}: {v:,}" for k, v in counts.items()))
    if counts[mail.UNCERTAIN]:
        env.print(
            "uncertain: the process stopped after handing the message to the SMTP server and before its "
            "reply; look for its Message-ID in the server's log, then --mark-sent ID or --retry ID"
        )
    return EXIT_OK

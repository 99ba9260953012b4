"""Kill test: `jobs run` SIGKILLed at random moments during dispatch, 20 times.

Every approved invoice must reach the SMTP server exactly once (counted by
Message-ID at the server), with exactly one outbox row and one payment.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter

import pytest

from tests.test_jobs_support import SmtpServer, cli_env, make_approved, run_cli, spawn, terminated
from tui_billing import mail
from tui_billing import statuses as S
from tui_billing.store import db as store_db
from tui_billing.store.models import Invoice, OutboxMessage, Payment

KILLS = 20
PER_ROUND = 6  # new approved invoices before each restart, so every run has work in hand


@pytest.mark.slow
def test_sigkill_during_dispatch_never_loses_or_duplicates_mail(store_url, tmp_path):
    """On both backends: on PostgreSQL a killed loop leaves row claims and a
    registration behind, which the next loop gives back (same host, process gone)."""
    url = store_url
    server = SmtpServer().start()
    seed = random.randrange(1 << 30)  # the moments differ every run; the seed is in any failure
    rng = random.Random(seed)
    env = cli_env(**server.env())
    args = ["--db", url, "--now", "2026-11-20T10:00:00Z", "jobs", "run"]
    log = tmp_path / "loop.log"
    started = time.monotonic()
    try:
        for round_no in range(KILLS):
            make_approved(PER_ROUND, prefix=f"R{round_no}-")
            store_db.close()  # the loop has the store to itself while it runs
            seen = len(server.inbox.messages())
            with terminated(spawn(args, env, log)) as proc:
                if round_no % 2 == 0:
                    # Startup takes ~0.25 s, dispatching a round ~0.3 s: the kill lands
                    # during startup, PDF rendering, a commit, or the SMTP dialogue.
                    time.sleep(rng.uniform(0.2, 0.8))
                else:
                    # Aim at the SMTP dialogue: once this run's first message went out,
                    # kill within the next few messages (each takes a few ms).
                    deadline = time.monotonic() + 10
                    while len(server.inbox.messages()) == seen and proc.poll() is None and time.monotonic() < deadline:
                        time.sleep(0.001)
                    time.sleep(rng.uniform(0, 0.015))
                proc.send_signal(signal.SIGKILL)
                assert proc.wait(10) == -signal.SIGKILL
            store_db.connect(url)
        store_db.close()
        final = run_cli(["--db", url, "--now", "2026-11-20T10:00:00Z", "jobs", "run", "--once"], env, timeout=60)
        assert final.returncode == 0, (seed, final.stderr)
        store_db.connect(url)

        invoices = list(Invoice.select())
        assert len(invoices) == KILLS * PER_ROUND
        assert {i.status for i in invoices} <= {S.PAID, S.UNPAID}

        outbox = list(OutboxMessage.select().where(OutboxMessage.kind == mail.INVOICE))
        assert Counter(m.invoice_id for m in outbox) == Counter({i.id: 1 for i in invoices})
        assert Counter(p.invoice_id for p in Payment.select()) == Counter({i.id: 1 for i in invoices})

        at_server = Counter(server.inbox.message_ids())
        duplicates = {mid: n for mid, n in at_server.items() if n > 1}
        assert not duplicates, f"seed {seed}: delivered more than once: {duplicates}"
        # The one documented loss: a kill in the microseconds between recording
        # "uncertain" and writing the final "." -- then the row says uncertain.
        missing = [m for m in outbox if m.message_id not in at_server]
        assert all(m.status == mail.UNCERTAIN for m in missing), (
            f"seed {seed}: never delivered and not listed as uncertain: {[m.message_id for m in missing]}"
        )
        assert set(at_server) <= {m.message_id for m in outbox}
        # Rows a kill caught between the final "." and the reply stay "uncertain"
        # (listed for an operator, not resent); the server has each exactly once.
        assert {m.status for m in outbox} <= {mail.SENT, mail.UNCERTAIN}
        text = log.read_text()
        print(
            f"\nseed {seed}: {KILLS} kills in {time.monotonic() - started:.1f}s; "
            f"statuses {Counter(m.status for m in outbox)}; "
            f"takeovers {text.count('action=took_over')}; requeued after a kill "
            f"{text.count('requeued=')}"
        )
    finally:
        server.stop()
        store_db.close()

"""The command palette (Ctrl+P): every action of the console, by name."""
from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

# (title, help, where: "app" or the screen action name, argument)
COMMANDS = [
    ("Review queue", "Invoices under review and rejected, riskiest first (F2)", "app", "mode:queue"),
    ("Find invoices", "Filter every invoice by status, account type, customer… (F3)", "app", "mode:finder"),
    ("Customer classes", "Send mode, hold-for-review days, Net days (F4)", "app", "mode:classes"),
    ("Approve", "Approve the marked invoices (or the one under the cursor)", "screen", "approve"),
    ("Adjust", "One manual credit or charge on the invoice under the cursor", "screen", "adjust"),
    ("Reissue", "Recalculate now or in the off-peak window", "screen", "reissue"),
    ("Download PDFs", "Write PDFs to a directory, optionally one merged file", "screen", "download"),
    ("PDF text", "Show the text of the current PDF", "screen", "pdf_text"),
    ("Mark all on page", "Mark every loaded row", "screen", "mark_page"),
    ("Mark all matching", "Mark every invoice matching the filter (kept as a query)", "screen", "mark_matching"),
    ("Unmark all", "Clear the marks", "screen", "unmark"),
    ("Filter", "Focus the filter bar (/)", "screen", "focus_filter"),
    ("Flagged only", "Only invoices with a risk flag; again for all (f)", "screen", "toggle_flagged"),
    ("Sort by risk / deadline", "Review queue: risk score then deadline, or deadline only (s)", "screen",
     "toggle_sort"),
    ("Sort by risk", "Finder: highest risk score first (k)", "screen", "sort:risk"),
    ("Sort by issue date", "Finder: newest first; again to reverse", "screen", "sort:issue_date"),
    ("Sort by number", "Finder", "screen", "sort:number"),
    ("Sort by total", "Finder: largest first", "screen", "sort:total"),
    ("Next tab", "Invoice detail: the next table", "screen", "next_tab"),
    ("Mark revision reviewed", "Invoice detail: the Changes tab starts from this revision (v)", "screen",
     "mark_reviewed"),
    ("Refresh", "Reload what this screen shows (F5)", "screen", "reload"),
    ("Save class", "Customer classes: save the form (Ctrl+S)", "screen", "save"),
    ("Email problems", "Failed and uncertain deliveries: retry, mark sent (F7)", "app", "outbox"),
    ("Job loop log", "What the in-console job loop did (F8)", "app", "job_log"),
    ("Toggle light/dark theme", "F9", "app", "toggle_theme"),
    ("Keys", "Every key of every screen (F1, ?)", "app", "help"),
    ("Quit", "Leave the console (Ctrl+Q)", "app", "quit"),
]


class BillingCommands(Provider):
    def _available(self):
        screen = self.screen
        for title, help_text, where, name in COMMANDS:
            if where == "app":
                if name.startswith("mode:"):
                    yield title, help_text, partial(self.app.switch_mode, name[5:])
                else:
                    yield title, help_text, partial(self.app.run_action, name)
                continue
            action, _, arg = name.partition(":")
            method = getattr(screen, f"action_{action}", None)
            if method is None:
                continue
            yield title, help_text, (partial(method, arg) if arg else method)

    async def discover(self) -> Hits:
        for title, help_text, callback in self._available():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._available():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)

"""The command palette (Ctrl+P): every action of the console, by name, each
with the key that does it on this screen (as remapped in `[keys]`), and each
once: the palette is the console's own list, not Textual's system commands
beside it (they named Quit, Keys and the theme a second time)."""

from __future__ import annotations

from functools import partial

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content

# (title, help, where: "app" or "screen", the action: the method called and the
# binding whose key is shown)
COMMANDS = [
    ("Review queue", "Invoices under review and rejected, riskiest first", "app", "switch_mode('queue')"),
    ("Find invoices", "Filter every invoice by status, account type, customer…", "app", "switch_mode('finder')"),
    ("Customer classes", "Send mode, hold-for-review days, Net days", "app", "switch_mode('classes')"),
    ("Approve", "Approve the marked invoices (or the one under the cursor)", "screen", "approve"),
    ("Adjust", "One manual credit or charge on the invoice under the cursor", "screen", "adjust"),
    ("Reissue", "Recalculate now or in the off-peak window", "screen", "reissue"),
    ("Download PDFs", "Write PDFs to a directory, optionally one merged file", "screen", "download"),
    (
        "PDF",
        "Show the current PDF: the page as a picture where the terminal draws one, its text otherwise",
        "screen",
        "pdf_text",
    ),
    ("Mark all on page", "Mark every loaded row", "screen", "mark_page"),
    ("Mark all matching", "Mark every invoice matching the filter (kept as a query)", "screen", "mark_matching"),
    ("Unmark all", "Clear the marks", "screen", "unmark"),
    ("Filter", "Focus the filter bar", "screen", "focus_filter"),
    ("Flagged only", "Only invoices with a risk flag; again for all", "screen", "toggle_flagged"),
    ("Sort by risk / deadline", "Review queue: risk score then deadline, or deadline only", "screen", "toggle_sort"),
    ("Sort by risk", "Finder: highest risk score first", "screen", "sort('risk')"),
    ("Sort by issue date", "Finder: newest first; again to reverse", "screen", "sort('issue_date')"),
    ("Sort by number", "Finder; again to reverse", "screen", "sort('number')"),
    ("Sort by total", "Finder: largest first; again to reverse", "screen", "sort('total')"),
    ("Next tab", "Invoice detail: the next table", "screen", "next_tab"),
    ("Mark revision reviewed", "Invoice detail: the Changes tab starts from this revision", "screen", "mark_reviewed"),
    ("Edit class", "Customer classes: edit the highlighted class in the form", "screen", "edit"),
    ("Save class", "Customer classes: save the form (asks first, with the values before and after)", "screen", "save"),
    ("Refresh", "Reload what this screen shows", "screen", "reload"),
    ("Email problems", "Failed and uncertain deliveries: retry, mark sent", "app", "outbox"),
    ("Job loop log", "What the in-console job loop did", "app", "job_log"),
    ("Toggle light/dark theme", "Switch between the light and the dark theme", "app", "toggle_theme"),
    ("Keys", "Every key of every screen", "app", "help"),
    ("Quit", "Leave the console", "app", "quit"),
]


def _method(node, action: str):
    """The bound method an action string names on node ("sort('risk')" -> node.action_sort, "risk")."""
    name, _, arg = action.partition("(")
    method = getattr(node, f"action_{name}", None)
    if method is None or not arg:
        return method
    return partial(method, arg.rstrip(")").strip("'\""))


def key_of(app, screen, action: str) -> str:
    """The key(s) of `action` on `screen` (its focused widget and the app
    included), as the footer writes them; "" when no key does it there."""
    nodes = [screen, app]
    focused = screen.focused
    if focused is not None:
        nodes[1:1] = [n for n in focused.ancestors_with_self if n is not screen and n is not app]
    keymap = getattr(app, "keymap", {}) or {}
    keys: list[str] = []
    for node in nodes:
        for bindings in node._bindings.key_to_bindings.values():
            for b in bindings:
                if b.action != action:
                    continue
                for k in (keymap[b.id] if b.id in keymap else b.key).split(","):
                    k = k.strip()
                    if k and k not in keys:
                        keys.append(k)
        if keys:
            break
    return " ".join(app.get_key_display(Binding(k, action)) for k in keys)


class BillingCommands(Provider):
    def _available(self):
        """(title, help, key, callback) of every command that works on this screen, once each."""
        screen, app = self.screen, self.app
        seen = set()
        for title, help_text, where, action in COMMANDS:
            if title in seen:
                continue
            if where == "app":
                if action.startswith("switch_mode("):
                    callback = partial(app.switch_mode, action[len("switch_mode('") : -2])
                else:
                    callback = _method(app, action)
            else:
                callback = _method(screen, action)
            if callback is None:
                continue
            seen.add(title)
            yield title, help_text, key_of(app, screen, action), callback

    @staticmethod
    def _display(title: Content | str, key: str) -> Content:
        """The title, then its key ("Approve  a")."""
        title = title if isinstance(title, Content) else Content(title)
        return Content.assemble(title, ("  " + key, "bold $text-accent")) if key else title

    async def discover(self) -> Hits:
        for title, help_text, key, callback in self._available():
            yield DiscoveryHit(self._display(title, key), callback, text=title, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, key, callback in self._available():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, self._display(matcher.highlight(title), key), callback, text=title, help=help_text)

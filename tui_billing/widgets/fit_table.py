"""A DataTable whose columns fit the terminal: fixed columns keep their width,
one flexible column takes what is left, and columns marked `min_table` appear
only when the table is at least that wide (80 columns never scroll sideways).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rich.console import JustifyMethod
from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from ..text import shown


@dataclass(frozen=True)
class Col:
    key: str
    label: str
    width: int = 0  # 0: the flexible column
    justify: JustifyMethod = "left"
    min_table: int = 0  # shown only when the table is at least this wide
    max_table: int = 0  # shown only when the table is narrower than this
    wide_width: int = 0  # width when the table is wide (>= WIDE), if different
    max_width: int = 0  # grows up to this to fit its longest cell (FitTable.measure); 0: fixed


WIDE = 110  # a table this wide shows the extra columns


class FitTable(DataTable):
    """Rows are (key, item); `render_cells(item, columns, wide)` makes the cells."""

    DEFAULT_CSS = """
    FitTable { height: 1fr; }
    """

    def __init__(self, columns: list[Col], render_cells: Callable | None = None, *, min_flex: int = 8, **kwargs):
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", False)
        super().__init__(**kwargs)
        self.specs = list(columns)
        self._render_cells = render_cells
        self.min_flex = min_flex
        self.items: dict[str, Any] = {}  # the rows' objects (render_cells reads them)
        self.order: list[str] = []
        self._layout: tuple[Any, ...] | None = None  # (visible column keys, widths)
        self._built = False
        self._unsized_tries = 0  # relayout retries while the table has no width yet
        self._content: dict[str, int] = {}  # longest cell seen, for columns with max_width

    # -- layout ---------------------------------------------------------------
    def _available(self) -> int:
        width = self.size.width
        return max(width - self.styles.scrollbar_size_vertical, 0)

    def _compute_layout(self, width: int) -> tuple[tuple[str, ...], tuple[int, ...], bool]:
        wide = width >= WIDE
        visible = [
            c
            for c in self.specs
            if (not c.min_table or width >= c.min_table) and (not c.max_table or width < c.max_table)
        ]
        pad = 2 * self.cell_padding

        def base_width(c: Col) -> int:
            return c.wide_width if wide and c.wide_width else c.width

        flex_cols = [c for c in visible if not c.width]
        fixed = sum(base_width(c) + pad for c in visible if c.width)
        # Growing columns take room from the flexible one, never past min_flex:
        # the table must not scroll sideways.
        room = max(width - fixed - len(flex_cols) * (self.min_flex + pad), 0)
        grown: dict[str, int] = {}
        for c in visible:
            if c.width and c.max_width:
                extra = min(max(min(self._content.get(c.key, 0), c.max_width) - base_width(c), 0), room)
                room -= extra
                grown[c.key] = base_width(c) + extra
        fixed += sum(grown[k] - base_width(c) for c in visible if (k := c.key) in grown)
        flex = max(self.min_flex, (width - fixed) // max(len(flex_cols), 1) - pad) if flex_cols else 0
        widths = tuple(grown.get(c.key, base_width(c)) if c.width else flex for c in visible)
        return tuple(c.key for c in visible), widths, wide

    def measure(self, item) -> dict[str, int]:  # pragma: no cover - overridden where used
        """Cell lengths of this item for columns with max_width."""
        return {}

    def _grew(self, items) -> bool:
        """Note the items' lengths; True when a growing column needs more room."""
        grew = False
        for item in items:
            for key, n in self.measure(item).items():
                if n > self._content.get(key, 0):
                    self._content[key] = n
                    grew = True
        return grew

    @property
    def wide(self) -> bool:
        return bool(self._layout and self._layout[2])

    def visible_specs(self) -> list[Col]:
        if not self._layout:
            return []
        keys = set(self._layout[0])
        return [c for c in self.specs if c.key in keys]

    def on_mount(self) -> None:
        # Not only on Resize: a table mounted while its screen was being
        # covered by a dialog got its size but never the event, and stayed
        # empty (a detail's charges, seen under the adjust dialog on CI).
        self.call_after_refresh(self.relayout)

    def on_resize(self) -> None:
        self.relayout()

    def relayout(self) -> None:
        width = self._available()
        if width <= 0:
            if not self._built and self.is_mounted and self._unsized_tries < 20:
                # Not laid out yet: sized later, maybe without a Resize event
                # (CI: a charges table sized but never filled). Again after the
                # next paint, a few times (a table on a hidden tab stays unsized).
                self._unsized_tries += 1
                self.call_after_refresh(self.relayout)
            return
        layout = self._compute_layout(width)
        if layout == self._layout and self._built:
            return
        old = self._layout
        self._layout = layout
        if old is not None and self._built and old[0] == layout[0] and old[2] == layout[2]:
            # Same columns: only widths changed (the flexible one).
            for key, w in zip(layout[0], layout[1]):
                self.columns[ColumnKey(key)].width = w
            self._clear_caches()
            self._require_update_dimensions = True
            self.refresh(layout=True)
            return
        self._rebuild()

    def _rebuild(self) -> None:
        cursor = self.cursor_row
        self.clear(columns=True)
        assert self._layout is not None  # set by the caller
        for col, width in zip(self.visible_specs(), self._layout[1]):
            label = Text(col.label, justify=col.justify)
            self.add_column(label, width=width, key=col.key)
        self._built = True
        wide = self.wide
        cols = self.visible_specs()
        self.add_rows_keyed((key, self._cells(self.items[key], cols, wide)) for key in self.order)
        if self.row_count:
            self.move_cursor(row=min(cursor, self.row_count - 1), animate=False, scroll=True)

    def add_rows_keyed(self, rows: Iterable[tuple[str, list]]) -> None:
        for key, cells in rows:
            self.add_row(*cells, key=key)

    def _cells(self, item, cols: list[Col], wide: bool) -> list:
        if self._render_cells is not None:
            cells = self._render_cells(item, cols, wide)
        else:
            cells = self.render_cells(item, cols, wide)
        # DataTable reads a str cell as markup: a plain string is shown as it is
        # (text.shown: control characters escaped), never interpreted.
        return [Text(shown(c)) if isinstance(c, str) else c for c in cells]

    def render_cells(self, item, cols: list[Col], wide: bool) -> list:
        return [item.get(c.key, "") for c in cols]

    # -- content --------------------------------------------------------------
    def set_items(self, items: Iterable[tuple[str, object]]) -> None:
        self.items = {}
        self.order = []
        self.clear()
        self.append_items(items)

    def append_items(self, items: Iterable[tuple[str, object]]) -> None:
        new = []
        for key, item in items:
            if key in self.items:
                continue
            self.items[key] = item
            self.order.append(key)
            new.append(key)
        grew = self._grew(self.items[key] for key in new)
        if not self._built or grew:
            self.relayout()  # a first layout builds every row; new widths may rebuild them
        if not self._built or self.row_count == len(self.order):
            return
        cols, wide = self.visible_specs(), self.wide
        self.add_rows_keyed((key, self._cells(self.items[key], cols, wide)) for key in new)

    def update_item(self, key: str, item) -> None:
        """Replace one row's item; repaint only the cells that changed."""
        if key not in self.items:
            return
        old = self.items[key]
        self.items[key] = item
        if not self._built:
            return
        if self._grew([item]):  # e.g. a total longer after an adjust: a wider column
            self.relayout()
        cols, wide = self.visible_specs(), self.wide
        before = self._cells(old, cols, wide)
        after = self._cells(item, cols, wide)
        for col, a, b in zip(cols, before, after):
            if plain_of(a) != plain_of(b) or _style(a) != _style(b):
                self.update_cell(key, col.key, b)

    def remove_item(self, key: str) -> None:
        if key not in self.items:
            return
        del self.items[key]
        self.order.remove(key)
        if self._built:
            self.remove_row(key)

    def current_key(self) -> str | None:
        if not self.row_count or not self._built:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return row_key.value


def plain_of(cell) -> str:
    plain = getattr(cell, "plain", None)
    return plain if isinstance(plain, str) else str(cell)


def _style(cell) -> str:
    return str(getattr(cell, "style", ""))

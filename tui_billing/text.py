"""Text that admins type and text that imports bring: what is refused, how it is shown.

Two rules (README, *Security*):
- Text an admin types (descriptions, class names, settings) may not contain
  control characters; blank or invisible-only text counts as empty.
- Text that arrives from imports (service names, customer names) is stored as
  it came, and every face shows it through `shown()`, which escapes control
  characters so that a terminal never obeys them.
Pure: no store, no Textual; imports nothing of tui_billing but errors.
"""

from __future__ import annotations

import unicodedata

from .errors import FieldError

# Cc: C0/C1 controls (ESC, NUL, CR, LF, DEL); Cf: format (bidi overrides, zero width);
# Zl/Zp: line/paragraph separators.  None of them belongs in typed text.
_CONTROL = {"Cc", "Cf", "Zl", "Zp"}
_INVISIBLE = _CONTROL | {"Zs", "Mn", "Me"}


class TextError(FieldError):
    """Refused text: names the field and the reason."""


def _bad_char(value: str) -> str | None:
    for ch in value:
        if unicodedata.category(ch) in _CONTROL:
            return ch
    return None


def is_blank(value: str | None) -> bool:
    """True for None, "", spaces, or only invisible characters (zero-width, combining marks)."""
    return not value or all(unicodedata.category(ch) in _INVISIBLE for ch in value)


def typed(field_name: str, value: str | None, *, max_len: int, required: bool = True) -> str:
    """Text an admin typed: whitespace runs collapsed, control characters refused.

    Returns "" for an optional empty value; raises TextError otherwise.
    """
    text = " ".join((value or "").split())
    if is_blank(text):
        if required:
            raise TextError(field_name, "is required")
        return ""
    ch = _bad_char(text)
    if ch is not None:
        raise TextError(field_name, f"contains a control character (U+{ord(ch):04X}); type plain text")
    if len(text) > max_len:
        raise TextError(field_name, f"is longer than {max_len} characters")
    return text


def check_stored(field_name: str, value: str, *, max_len: int) -> str:
    """Text from a file about to be stored: the same on SQLite and PostgreSQL.

    PostgreSQL refuses NUL in text, so NUL is refused everywhere; other control
    characters are kept (and escaped by `shown`).
    """
    if "\x00" in value:
        raise TextError(field_name, "contains a NUL byte")
    if len(value) > max_len:
        raise TextError(field_name, f"is longer than {max_len} characters")
    return value


def shown(value: object) -> str:
    """The text with every control character made visible (\\x1b, \\n, \\u202e).

    Printable text, including accents and non-Latin scripts, is unchanged.
    """
    text = "" if value is None else str(value)
    if _bad_char(text) is None:
        return text
    out = []
    for ch in text:
        if unicodedata.category(ch) in _CONTROL:
            code = ord(ch)
            out.append(
                {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch)
                or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
            )
        else:
            out.append(ch)
    return "".join(out)


# Letters that NFKD leaves whole (no base letter + combining mark), spelled the
# way a person types them on an ASCII keyboard.  Applied after casefold().
_FOLD_LETTERS = str.maketrans(
    {
        "ø": "o",
        "æ": "ae",
        "ß": "ss",
        "ł": "l",
        "đ": "d",
        "ð": "d",
        "þ": "th",
        "œ": "oe",
        "ı": "i",
        "ħ": "h",
        "ŧ": "t",
        "ŀ": "l",
        "ĸ": "k",
        "ŉ": "n",
        "ſ": "s",
    }
)


def fold(text: str | None) -> str:
    """Text for accent- and case-insensitive search: "Ångström Labs" -> "angstrom labs".

    NFKD, combining marks dropped, casefolded, the letters NFKD does not
    decompose (ø æ ß ł đ þ œ ı …) spelled out, whitespace runs collapsed to
    one space.  The same function folds what is stored and what is typed.
    """
    if not text:
        return ""
    out = unicodedata.normalize("NFKD", str(text).casefold())
    out = "".join(ch for ch in out if not unicodedata.combining(ch))
    out = unicodedata.normalize("NFKD", out.translate(_FOLD_LETTERS))
    out = "".join(ch for ch in out if not unicodedata.combining(ch))
    return " ".join(out.split())

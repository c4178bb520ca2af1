r"""Text on its way to a terminal: the characters a terminal would act on, shown escaped.

Much of what wfmctl prints is controlled by a workflow: its log lines (and the fields of its
events, whose JSON may decode `\u001b` into a real ESC), its metadata (names, descriptions,
labels, options), the values of its parameters, and the reasons and error messages that
quote them. Written raw to a terminal, a control character in them could retitle the
window, clear the screen, move the cursor, ring the bell or set the clipboard, and a bidi
override could show text in another order than the one stored.

So on a terminal wfmctl shows each such character as Python writes it in a string literal:
`\x1b`, `\r`, `\x9b`, `\u202e`. Tabs and newlines stay as they are. `--raw` turns this off.
A pipe or a file gets the text as stored, as `cat` would give it: that is what `grep` and
scripts expect, and a pager shows control characters safely by itself (`less`; `less -R`
passes colour and hyperlink sequences only).

JSON output escapes C0 controls already (msgspec writes `\u001b`); on a terminal, DEL, the
C1 controls and the bidi overrides get the same `\uXXXX` form, which decodes to the same
document.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls, bidi embeddings/overrides (U+202A-U+202E)
# and isolates (U+2066-U+2069). Text, compiled on first use; `re` caches it.
_UNSAFE = r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
# The same without C0, which JSON encoders escape themselves.
_UNSAFE_IN_JSON = r"[\x7f-\x9f\u202a-\u202e\u2066-\u2069]"


def _literal(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\r":
        return "\\r"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def escape(text: str) -> str:
    r"""`text` with every character a terminal would act on written as `\x1b`, `\r`,
    `\u202e`...; tabs and newlines kept."""
    if text.isprintable():  # the common case, checked in C: none of them (nor \t, \n)
        return text
    return re.sub(_UNSAFE, _literal, text)


def escape_json(text: str) -> str:
    r"""Encoded JSON with DEL, C1 controls and bidi overrides as `\uXXXX`: the same document
    (they can only occur inside its strings), safe on a terminal."""
    return re.sub(_UNSAFE_IN_JSON, _json_escape, text)

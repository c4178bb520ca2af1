"""Search queries: parse the user's words, phrases and prefixes; build the full-text index's
query for the rows that may hold a match; and check each line of those rows.

The index (`log_search`, see schema/) records which words each stored row holds, not where:
that keeps it small, and a line is a match only once `Terms.matches` has checked it. Words are
split by the index's own tokenizer (unicode61: runs of letters and digits, case and accents
ignored), so that a word of a query is always one word of the index.

Syntax: `word` (every word must appear in the line), `"a phrase"` (its words in a row),
`prefix*` (a word starting so).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import cast

import apsw

from wfmctl.protocol import ErrorCode
from wfmd.errors import Refused

# A query longer than this is refused: no one types it, and each term costs a lookup.
MAX_TERMS = 16

_QUERY = re.compile(r'"([^"]*)"?|(\S+)')


@dataclass(frozen=True, slots=True)
class Terms:
    words: tuple[str, ...]
    prefixes: tuple[str, ...]
    phrases: tuple[tuple[str, ...], ...]

    def fts_query(self) -> str:
        """The index query for rows that hold every word (a phrase's words anywhere in the row:
        the index does not know positions)."""
        parts = [_quoted(w) for w in self.words]
        parts += [f"{_quoted(p)}*" for p in self.prefixes]
        parts += [_quoted(w) for phrase in self.phrases for w in phrase]
        return " AND ".join(parts)

    def needle(self) -> bytes | None:
        """The longest ASCII word a matching line must contain, lower case, as bytes: lines
        without it need no tokenizing. None if no term is ASCII."""
        words = [*self.words, *self.prefixes, *(w for p in self.phrases for w in p)]
        ascii_words = [w for w in words if w.isascii()]
        return max(ascii_words, key=len).encode() if ascii_words else None

    def matches(self, text: str) -> bool:
        """Whether one line's text holds every term."""
        tokens = tokenize(text)
        if not tokens:
            return False
        present = set(tokens)
        if any(w not in present for w in self.words):
            return False
        if any(not any(t.startswith(p) for t in present) for p in self.prefixes):
            return False
        return all(_contains(tokens, phrase) for phrase in self.phrases)


def parse(query: str) -> Terms:
    """The terms of a query. Raises Refused (bad_request) for a query with no word in it."""
    words: list[str] = []
    prefixes: list[str] = []
    phrases: list[tuple[str, ...]] = []
    for quoted, bare in _QUERY.findall(query):
        if quoted or not bare:
            phrase = tuple(tokenize(quoted))
            if len(phrase) == 1:
                words.append(phrase[0])
            elif phrase:
                phrases.append(phrase)
            continue
        star = bare.endswith("*")
        tokens = tokenize(bare)
        if star and tokens:
            words.extend(tokens[:-1])
            prefixes.append(tokens[-1])
        elif len(tokens) > 1:  # `foo.bar` or `a-b`: the index sees two words side by side
            phrases.append(tuple(tokens))
        else:
            words.extend(tokens)
    terms = Terms(tuple(dict.fromkeys(words)), tuple(dict.fromkeys(prefixes)), tuple(phrases))
    count = len(terms.words) + len(terms.prefixes) + sum(len(p) for p in terms.phrases)
    if not count:
        raise Refused(ErrorCode.BAD_REQUEST, f"nothing to search for in {query!r}: no word")
    if count > MAX_TERMS:
        raise Refused(ErrorCode.BAD_REQUEST, f"too many words to search for (at most {MAX_TERMS})")
    return terms


def tokenize(text: str) -> list[str]:
    """The words of `text` as the index stores them: letters and digits, folded."""
    words = _tokenizer()(
        text.encode("utf-8", "replace"),
        apsw.FTS5_TOKENIZE_DOCUMENT,
        None,
        include_offsets=False,
        include_colocated=False,
    )
    return cast(list[str], words)  # those two flags make it a list of words


_local = threading.local()


def _tokenizer() -> apsw.FTS5Tokenizer:
    """This thread's unicode61 tokenizer, from a connection of its own (readers search on
    several threads at once)."""
    tokenizer = getattr(_local, "tokenizer", None)
    if tokenizer is None:
        tokenizer = _local.tokenizer = apsw.Connection(":memory:").fts5_tokenizer("unicode61")
    return tokenizer


def _contains(tokens: list[str], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    first = phrase[0]
    return any(
        tokens[i] == first and tuple(tokens[i : i + n]) == phrase
        for i in range(len(tokens) - n + 1)
    )


def _quoted(word: str) -> str:
    """A word as an FTS5 string, so that no character of it is query syntax."""
    return '"' + word.replace('"', '""') + '"'

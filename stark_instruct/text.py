"""Tokenisation shared by both index engines, so they agree on what "matches a query term" means.

Lower-cased alphanumeric runs, as tantivy's default tokenizer produces; query terms also drop English
stopwords, which would otherwise make nearly every product match a conversational query.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_MAX_TOKEN_LEN = 40  # tantivy's default tokenizer drops longer tokens; so do we.

STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be been being below between both but by
    can could did do does doing down during each few for from further had has have having he her here hers
    him his how i if in into is it its itself just me more most my no nor not now of off on once only or
    other our ours out over own same she should so some such than that the their theirs them then there
    these they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself please want need looking recommend suggest find help
    show give get something some thing things one ones like would i'm im""".split()
)


def tokenize(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if len(t) <= _MAX_TOKEN_LEN]


def query_terms(text: str) -> list[str]:
    """Distinct non-stopword tokens of a query, in order of first appearance."""
    seen: dict[str, None] = {}
    for t in tokenize(text):
        if t not in STOPWORDS:
            seen.setdefault(t, None)
    return list(seen)

"""What a social post says once its addressing is taken away.

A post to a company starts with handles ("@united", "@amazon") and may carry
links and hashtags.  Handles are names, not opinions: VADER reads "@united" as
the word "united" (positive) and "@amazon" as "amazon", so every complaint to
those companies looked a little happy.  Links say nothing either.  A hashtag's
word does ("#fail", "#epicfail"), so only its ``#`` goes.  Language detection,
sentiment and themes all read the text after this.
"""

from __future__ import annotations

import re

_ADDRESSING = re.compile(r"(?:^|(?<=\s))(?:RT\s+)?@\w+:?|https?://\S+|www\.\S+", re.IGNORECASE)
_HASH = re.compile(r"(?:^|(?<=\s))#(?=\w)")


def plain(text: str) -> str:
    """``text`` without handles, links and ``#`` signs; unchanged when it has none."""
    if "@" not in text and "#" not in text and "http" not in text and "www." not in text:
        return text  # the common case (survey answers): no copy, no regular expression
    return " ".join(_HASH.sub("", _ADDRESSING.sub(" ", text)).split())

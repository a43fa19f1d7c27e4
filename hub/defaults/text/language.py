"""Language of short customer text: lingua, restricted to the languages a hub expects.

Restricting the detector to the configured languages (``[enrich] languages``)
is what makes short posts work: "Ik ga overstappen" has to choose between
Dutch, English, German and French, not between 75 languages of which
Norwegian happens to fit three words better.  The detector is built once per
process and language set (lingua loads its models lazily, then keeps them).
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache

log = logging.getLogger(__name__)
_lock = threading.Lock()
_detectors: dict[tuple[str, ...], object] = {}


def _build(languages: tuple[str, ...]):
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    wanted = []
    for code in languages:
        iso = getattr(IsoCode639_1, code.upper(), None)
        if iso is None:
            log.warning("enrich.languages: %r is not an ISO 639-1 code lingua knows; ignored", code)
            continue
        wanted.append(Language.from_iso_code_639_1(iso))
    if len(wanted) < 2:
        return None  # nothing to choose between: a single configured language needs no detector
    return LanguageDetectorBuilder.from_languages(*wanted).build()


def detector(languages: tuple[str, ...]):
    """The process-wide detector for ``languages`` (None when fewer than two)."""
    try:
        return _detectors[languages]
    except KeyError:
        pass
    with _lock:
        if languages not in _detectors:
            _detectors[languages] = _build(languages)
        return _detectors[languages]


@lru_cache(maxsize=8192)
def detect_language(text: str, languages: tuple[str, ...] = ("nl", "en", "de", "fr"),
                    min_confidence: float = 0.5) -> str | None:
    """ISO 639-1 code of the most likely of ``languages``, or None when unsure.

    None for text without three letters, and when the best language's
    confidence stays under ``min_confidence`` ("Top" is as Dutch as English).
    """
    if sum(ch.isalpha() for ch in text) < 3:
        return None
    if len(languages) == 1:
        return languages[0]
    det = detector(languages)
    if det is None:
        return None
    # The first 200 characters decide: lingua's cost grows with the text, its certainty hardly.
    values = det.compute_language_confidence_values(text[:200])
    if not values or values[0].value < min_confidence:
        return None
    return values[0].language.iso_code_639_1.name.lower()

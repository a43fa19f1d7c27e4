"""Text understanding behind the default enricher and scorer.

One module per concept: :mod:`.language` (which language), :mod:`.dutch` and
:mod:`.english` (sentiment with the words that caused it), :mod:`.sentiment`
(picks one per language), :mod:`.phrases` (word and phrase lists: cues,
themes).  Everything heavy (detector models, lexicons) loads once per
process; results for one text are cached, so the enricher and the scorer may
both ask without paying twice.
"""

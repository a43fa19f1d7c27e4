"""twitter_webcare plugin (filled by its own issue)."""

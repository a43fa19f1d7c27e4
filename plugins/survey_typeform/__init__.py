"""survey_typeform plugin (filled by its own issue)."""

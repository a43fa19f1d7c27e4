"""crm_hubspot plugin (filled by its own issue)."""

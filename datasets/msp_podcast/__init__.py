"""MSP-Podcast (manual download)."""

"""Helpers every other module uses: errors, atomic file writes, seeding."""

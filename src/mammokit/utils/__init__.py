"""Small shared helpers: atomic file output, logging, progress, seeding."""

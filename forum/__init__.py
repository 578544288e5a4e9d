"""Per-challenge discussion with moderation. Knows users only through forum.interface."""

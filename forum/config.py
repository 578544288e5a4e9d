"""Forum policy knobs: moderation thresholds, rate limits, size limits.

The host builds one :class:`ForumConfig` (from its settings) and passes it to ``forum_routes``;
every field is documented in docs/forum.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ForumConfig:
    """Thresholds and limits; the defaults suit a challenge with a few thousand participants."""

    # A user's first N posts wait in the moderation queue until a moderator approves them.
    premoderated_posts: int = 2
    # Users with fewer approved posts than this are "new": many links hold their post.
    new_user_posts: int = 5
    new_user_max_links: int = 2
    # Flags count only from "trusted" users (at least this many approved posts, not sanctioned).
    trusted_user_posts: int = 5
    flags_to_hide: int = 3
    # Rate limits per account, counted in the database so they hold across worker processes.
    # None per client address: a hackathon room behind one address would share it.
    posts_per_minute_per_user: int = 6
    posts_per_hour_per_user: int = 60
    flags_per_hour_per_user: int = 20
    # Size limits.
    max_post_chars: int = 30_000
    max_title_chars: int = 200
    max_quote_depth: int = 5
    posts_per_page: int = 50
    threads_per_page: int = 30
    # Rendered posts kept per worker process (forum.fragments); each entry holds a post's HTML twice.
    fragment_cache_posts: int = 2000
    # Thread page bodies kept per worker process (forum.pagecache), ~50-100 KB each; 0 disables.
    page_cache_pages: int = 300
    # Images in posts: only site-relative URLs unless an admin lists more hosts here.
    image_hosts: frozenset[str] = field(default_factory=frozenset)

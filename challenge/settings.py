"""Settings: the one place that reads the environment (``PODIUM_*`` variables)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from forum.config import ForumConfig

PLACEHOLDER_SECRET = "dev-insecure-change-me"  # noqa: S105 - the value production refuses
_FORUM = ForumConfig()


def clone_var_dir() -> Path | None:
    """``var/`` of the source checkout this code runs from (``make demo``'s site), if it is one."""
    root = Path(__file__).resolve().parent.parent
    return root / "var" if (root / "pyproject.toml").is_file() else None


def site_config_file() -> Path:
    """The site config file: ``PODIUM_*`` lines read when the environment does not set them."""
    import os

    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "podium" / "site.env"


class Settings(BaseSettings):
    """Everything Podium needs to start. Each field is documented in docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix="PODIUM_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    secret_key: str = PLACEHOLDER_SECRET
    database_url: str = ""
    redis_url: str = ""
    data_dir: Path = Path("var/data")
    label_dir: Path = Path("var/labels")
    base_url: str = "http://127.0.0.1:8000"
    site_name: str = "Podium"
    max_upload_mb: int = Field(default=200, ge=1)
    score_bootstrap: int = Field(default=200, ge=0)
    sandbox_memory_mb: int = Field(default=2048, ge=64)
    sandbox_cpu_seconds: int = Field(default=60, ge=1)
    sandbox_wall_seconds: float = Field(default=120.0, gt=0)
    reconcile_after_seconds: int = Field(default=120, ge=5)
    login_rate_per_minute: int = Field(default=20, ge=1)
    secure_cookies: bool = False
    # E-mail notices (challenge/mail.py): SMTP when smtp_host is set, else .eml files in mail_dir.
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "Podium <podium@localhost>"
    smtp_starttls: bool = True
    smtp_timeout: float = Field(default=30.0, gt=0)
    mail_dir: Path | None = None  # default: var/mail (beside data_dir)
    # The forum's policy (forum.config.ForumConfig, docs/forum.md); defaults are ForumConfig's.
    forum_premoderated_posts: int = Field(default=_FORUM.premoderated_posts, ge=0)
    forum_new_user_posts: int = Field(default=_FORUM.new_user_posts, ge=0)
    forum_new_user_max_links: int = Field(default=_FORUM.new_user_max_links, ge=0)
    forum_trusted_user_posts: int = Field(default=_FORUM.trusted_user_posts, ge=0)
    forum_flags_to_hide: int = Field(default=_FORUM.flags_to_hide, ge=1)
    forum_posts_per_minute_per_user: int = Field(default=_FORUM.posts_per_minute_per_user, ge=1)
    forum_posts_per_hour_per_user: int = Field(default=_FORUM.posts_per_hour_per_user, ge=1)
    forum_posts_per_minute_per_ip: int = Field(default=_FORUM.posts_per_minute_per_ip, ge=1)
    forum_flags_per_hour_per_user: int = Field(default=_FORUM.flags_per_hour_per_user, ge=1)
    forum_max_post_chars: int = Field(default=_FORUM.max_post_chars, ge=1)
    forum_max_title_chars: int = Field(default=_FORUM.max_title_chars, ge=1, le=200)
    forum_max_quote_depth: int = Field(default=_FORUM.max_quote_depth, ge=1)
    forum_posts_per_page: int = Field(default=_FORUM.posts_per_page, ge=1)
    forum_threads_per_page: int = Field(default=_FORUM.threads_per_page, ge=1)
    forum_fragment_cache_posts: int = Field(default=_FORUM.fragment_cache_posts, ge=0)
    forum_page_cache_pages: int = Field(default=_FORUM.page_cache_pages, ge=0)
    forum_image_hosts: str = ""  # comma-separated https hosts whose images posts may show

    @model_validator(mode="after")
    def _defaults_and_guards(self) -> Settings:
        # Relative defaults would depend on the working directory (a command run elsewhere made
        # an empty var/ there): without PODIUM_DATA_DIR they are the clone's var/.
        var = clone_var_dir()
        if "data_dir" not in self.model_fields_set and var is not None:
            self.data_dir = var / "data"
        if "label_dir" not in self.model_fields_set:
            self.label_dir = self.data_dir.parent / "labels"
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir.parent / 'podium.db'}"
        if self.mail_dir is None:
            self.mail_dir = self.data_dir.parent / "mail"
        if self.env == "production" and (
            self.secret_key == PLACEHOLDER_SECRET or len(self.secret_key) < 32
        ):
            raise ValueError(
                "PODIUM_SECRET_KEY must be set to a random value of at least 32 characters "
                "in production (for example: python -c 'import secrets; print(secrets.token_hex(32))')"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def public_dir(self) -> Path:
        """Files anyone registered may download."""
        return self.data_dir / "public"

    @property
    def submissions_dir(self) -> Path:
        return self.data_dir / "submissions"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"


def load_settings(**overrides: object) -> Settings:
    """Read the environment once; tests pass explicit overrides."""
    config = site_config_file()
    if config.is_file():  # the environment still wins over the file
        return Settings(_env_file=config, **overrides)  # type: ignore[arg-type]
    return Settings(**overrides)  # type: ignore[arg-type]

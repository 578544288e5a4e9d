"""Settings: the one place that reads the environment (``PODIUM_*`` variables)."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from forum.config import ForumConfig

PLACEHOLDER_SECRET = "dev-insecure-change-me"  # noqa: S105 - the value every command refuses
MIN_SECRET_CHARS = 32
HOW_TO_SET_KEY = (
    "set PODIUM_SECRET_KEY to a random value of at least 32 characters, for example "
    "export PODIUM_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))') "
    "(only 'podium demo' makes one of its own)"
)
# Where compose (and Docker swarm, Kubernetes by convention) mounts secrets: a file named
# podium_secret_key there sets PODIUM_SECRET_KEY (any setting, name in lower case).
SECRETS_DIR = Path("/run/secrets")
_FORUM = ForumConfig()


class ConfigurationError(ValueError):
    """The environment does not describe a site Podium may run; the message says what to set."""


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
    # No usable default: a secret anyone can read would let anyone sign a session cookie.
    secret_key: SecretStr = SecretStr("")
    # Kept a plain string (every engine is built from it) but never shown: see database_url_safe.
    database_url: str = Field(default="", repr=False)
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
    # Code challenges (docs/codabench.md): extra pip arguments when building a challenge's
    # environment, whether code may run on a host missing a wall of the jail (an admin's
    # decision), and how much of a run's stdout and stderr is kept.
    code_pip_args: str = ""
    code_allow_partial_isolation: bool = False
    code_log_kb: int = Field(default=64, ge=1, le=4096)
    login_rate_per_minute: int = Field(default=20, ge=1)
    # Unset: on in production. The session cookie is then only sent over HTTPS.
    secure_cookies: bool | None = None
    # E-mail notices (challenge/mail.py): SMTP when smtp_host is set, else .eml files in mail_dir.
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_user: str = ""
    smtp_password: SecretStr = SecretStr("")
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
    forum_flags_per_hour_per_user: int = Field(default=_FORUM.flags_per_hour_per_user, ge=1)
    forum_max_post_chars: int = Field(default=_FORUM.max_post_chars, ge=1)
    forum_max_title_chars: int = Field(default=_FORUM.max_title_chars, ge=1, le=200)
    forum_max_quote_depth: int = Field(default=_FORUM.max_quote_depth, ge=1)
    forum_posts_per_page: int = Field(default=_FORUM.posts_per_page, ge=1)
    forum_threads_per_page: int = Field(default=_FORUM.threads_per_page, ge=1)
    forum_fragment_cache_posts: int = Field(default=_FORUM.fragment_cache_posts, ge=0)
    forum_page_cache_pages: int = Field(default=_FORUM.page_cache_pages, ge=0)
    forum_image_hosts: str = ""  # comma-separated https hosts whose images posts may show

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit values, then the environment, then secret files (when the folder exists:
        pydantic-settings warns about a missing one, and most machines have none)."""
        sources = [init_settings, env_settings, dotenv_settings]
        if SECRETS_DIR.is_dir():
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=SECRETS_DIR))
        return tuple(sources)

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
        if self.secure_cookies is None:
            self.secure_cookies = self.env == "production"
        # Every environment, "test" included: a site deployed without PODIUM_ENV must not fall
        # back to a secret that can be read in this file.
        secret = self.secret_key.get_secret_value()
        if not secret:
            raise ValueError(f"PODIUM_SECRET_KEY is not set: {HOW_TO_SET_KEY}")
        if secret == PLACEHOLDER_SECRET or len(secret) < MIN_SECRET_CHARS:
            raise ValueError(f"PODIUM_SECRET_KEY is too weak: {HOW_TO_SET_KEY}")
        return self

    @property
    def database_url_safe(self) -> str:
        """The database URL with its password masked, for messages and logs."""
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.database_url).render_as_string(hide_password=True)
        except Exception:  # not a URL SQLAlchemy can parse: show only its scheme
            return self.database_url.split(":", 1)[0] + "://…"

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
    """Read the environment once; tests pass explicit overrides.

    Raises :class:`ConfigurationError` (a readable message, not pydantic's report) when a setting
    is missing or wrong, the secret key above all.
    """
    config = site_config_file()
    try:
        if config.is_file():  # the environment still wins over the file
            return Settings(_env_file=config, **overrides)  # type: ignore[arg-type]
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            str(e["msg"]).removeprefix("Value error, ")
            + (f" (PODIUM_{str(e['loc'][0]).upper()})" if e["loc"] else "")
            for e in exc.errors()
        )
        raise ConfigurationError(problems) from None


SECRET_FILE = "secret_key"  # noqa: S105 - a file name


def site_secret(var_dir: Path) -> str:
    """The demo site's own random secret, kept in ``var_dir/secret_key`` (mode 0600).

    Made on first use, read on every later start (so logins survive a restart); a file that
    others may read is refused rather than trusted.
    """
    var_dir.mkdir(parents=True, exist_ok=True)
    path = var_dir / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        existing = path
    else:
        secret = secrets.token_urlsafe(48)
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
        return secret
    mode = stat.S_IMODE(existing.stat().st_mode)
    if mode & 0o077:
        raise ConfigurationError(
            f"{existing} may be read by other users (mode {mode:o}); run chmod 600 {existing}"
        )
    secret = existing.read_text().strip()
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigurationError(f"{existing} holds no usable secret; delete it to make a new one")
    return secret


def load_demo_settings() -> Settings:
    """``podium demo``'s settings: PODIUM_SECRET_KEY if set, else the site's own secret.

    The generated secret is put in this process's environment, so the worker processes the
    demo starts sign and check with the same one.
    """
    if not os.environ.get("PODIUM_SECRET_KEY"):
        probe = Settings(secret_key=SecretStr("x" * MIN_SECRET_CHARS))  # where is var/?
        os.environ["PODIUM_SECRET_KEY"] = site_secret(probe.data_dir.parent)
    return load_settings()

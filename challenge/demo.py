"""Seed the demo site: accounts and HiggsML-style challenges from the built-in toy generator."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlmodel import col, select

from challenge import storage
from challenge.accounts import create_user
from challenge.bundle import parse_bundle
from challenge.challenges import create_challenge, join_challenge, phases_of, prepare_challenge
from challenge.db import make_engine, session_scope
from challenge.models import Challenge, Phase, Submission, User, utcnow
from challenge.settings import Settings
from challenge.submissions import create_submission
from splitter.generate import generate_higgs

log = logging.getLogger(__name__)

DEMO_ACCOUNTS = {
    "admin": ("admin", "podium-admin"),
    "organizer": ("organizer", "podium-organizer"),
    "participant": ("alice", "podium-alice"),
}

DESCRIPTION = """\
Separate the H → ττ signal from the Z → ττ, top-pair and W backgrounds.

Each row is one simulated collision event with the HiggsML 2014 features (DER_* derived and PRI_*
primitive quantities; -999.0 marks a value that is undefined for the event). The training file has
the `Label` (s for signal, b for background) and the event `Weight`.

Submit a CSV with `EventId,RankOrder,Class`: `RankOrder` is a permutation of 1..N (N the number of
test events; higher means more signal-like) and `Class` is `s` or `b`. The score is the approximate
median significance (AMS) with b_reg = 10, computed on a public part of the test set; the private
part decides the final ranking and is revealed when the challenge closes.
"""


def _bundle_text(slug: str, title: str, summary: str, phases: str, seed: int) -> str:
    return textwrap.dedent(f"""\
        slug: {slug}
        title: {json.dumps(title)}
        summary: {json.dumps(summary)}
        description: description.md
        dataset: {slug}.csv
        license: CC-BY-4.0
        split: {{seed: {seed}, train: 0.5, public_test: 0.15, private_test: 0.35,
                stratify: Label, reweight: {{weight: Weight, by: Label}}}}
        submission: {{id: EventId, columns: {{RankOrder: rank, Class: {{values: [s, b]}}}}}}
        metric: {{name: ams, weight: Weight, label: Label, positive: s, b_reg: 10}}
        phases:
        @PHASES@
        limits: {{per_day: 10, total: 300, file_mb: 50, team_size: 4, final_selections: 2}}
        leaderboard: {{reveal: at_close}}
        """).replace("@PHASES@", phases.strip("\n"))


def demo_data(demo_dir: Path, slug: str, events: int, seed: int, position: int) -> Path:
    """The events of one demo challenge, generated with its own seed and its own EventId range
    (from position * 10^8): no two demo challenges share a row, so one challenge's public training
    labels say nothing about another's test set (the holdout ledger would refuse it anyway)."""
    data = demo_dir / f"{slug}.csv"
    if not data.is_file():
        log.info("generating %d HiggsML-like events for %s", events, slug)
        frame = generate_higgs(events, seed=seed)
        frame["EventId"] += position * DEMO_ID_STRIDE
        frame.to_csv(data, index=False)
    return data


DEMO_ID_STRIDE = 100_000_000


def seed_demo(settings: Settings, events: int = 50_000) -> dict[str, tuple[str, str]]:
    """Create the demo accounts and challenges unless they exist. Returns the accounts to print."""
    engine = make_engine(settings.database_url)
    with session_scope(engine) as session:
        for role, (name, password) in DEMO_ACCOUNTS.items():
            if session.exec(select(User).where(User.username == name)).first() is None:
                create_user(
                    session,
                    username=name,
                    email=f"{name}@demo.podium.invalid",
                    password=password,
                    role=role,
                )
    demo_dir = settings.data_dir.parent / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    (demo_dir / "description.md").write_text(DESCRIPTION, encoding="utf-8")

    now = utcnow().replace(minute=0, second=0, microsecond=0)
    hack_opens, hack_closes = hackathon_window(now)

    def iso(t: dt.datetime) -> str:
        return t.strftime("%Y-%m-%dT%H:%MZ")

    specs = [
        (
            "higgsml-demo",
            "HiggsML demo",
            "Find the Higgs boson in simulated ATLAS-like events.",
            f"  - {{name: competition, opens: {iso(now - dt.timedelta(days=2))}, "
            f"closes: {iso(now + dt.timedelta(days=30))}}}\n"
            f"  - {{name: {HACKATHON_PHASE}, opens: {iso(hack_opens)}, "
            f"closes: {iso(hack_closes)}}}",
            2014,
        ),
        (
            "higgsml-2027",
            "HiggsML 2027 (announced)",
            "The next edition: announced a month ahead.",
            f"  - {{name: announcement, opens: {iso(now - dt.timedelta(days=1))}}}\n"
            f"  - {{name: competition, opens: {iso(now + dt.timedelta(days=30))}, "
            f"closes: {iso(now + dt.timedelta(days=120))}}}",
            2027,
        ),
        (
            "higgsml-replay",
            "HiggsML replay (finished)",
            "A finished round: the private leaderboard and the shake-up are public.",
            f"  - {{name: competition, opens: {iso(now - dt.timedelta(days=20))}, "
            f"closes: {iso(now - dt.timedelta(days=1))}}}",
            2015,
        ),
    ]
    new_challenge = False
    for position, (slug, title, summary, phases, seed) in enumerate(specs):
        with session_scope(engine) as session:
            if session.exec(select(Challenge).where(Challenge.slug == slug)).first() is not None:
                continue
            data = demo_data(demo_dir, slug, events, seed, position)
            owner = session.exec(select(User).where(User.username == "organizer")).one()
            bundle_path = demo_dir / f"{slug}.yaml"
            bundle_path.write_text(
                _bundle_text(slug, title, summary, phases, seed), encoding="utf-8"
            )
            challenge = create_challenge(session, bundle=parse_bundle(bundle_path), creator=owner)
            assert data is not None
            prepare_challenge(settings, challenge, data, session=session)
            session.add(challenge)
            log.info("seeded challenge %s", slug)
            new_challenge = True
        if slug in BOT_CHALLENGES and new_challenge:
            seed_bot_submissions(settings, engine, slug)
        new_challenge = False
    seed_hackathon(settings, engine, now)
    seed_tracking_demo(settings, engine, now)
    seed_demo_forum(engine)
    return DEMO_ACCOUNTS


# The demo forum: a welcome thread with answers, and the participant past pre-moderation (their
# first replies approved by the admin through the moderation queue, as on a real site), so the
# forum is not empty and a demo participant's next post appears at once.
WELCOME_TITLE = "Welcome to the Podium demo forum"


def seed_demo_forum(engine: Any) -> None:
    from forum.access import Actor
    from forum.config import ForumConfig
    from forum.interface import ForumUser
    from forum.models import Thread
    from forum.moderation import run_action
    from forum.posting import create_reply, create_thread

    config = ForumConfig()
    with session_scope(engine) as session:
        if session.exec(select(Thread).where(Thread.title == WELCOME_TITLE)).first() is not None:
            return
        users = {
            u.username: u
            for u in session.exec(
                select(User).where(col(User.username).in_(["admin", "organizer", "alice"]))
            )
        }

        def actor(name: str, moderator: bool = False) -> Actor:
            user_id = users[name].id
            assert user_id is not None
            return Actor(ForumUser(user_id, name), site_moderator=moderator)

        admin = actor("admin", moderator=True)
        thread = create_thread(
            session, actor=admin, users=None, config=config, challenge_slug=None,
            category="general", title=WELCOME_TITLE,
            body_md=(
                "Ask about the challenges, the metrics and the platform here. Posts take "
                "**Markdown**, `code`, math such as $\\mathrm{AMS} = \\sqrt{2((s+b)\\ln(1+s/b)-s)}$ "
                "and @mentions."
            ),
        )  # fmt: skip
        for name, body in [
            ("alice", "Hello! Is the AMS computed on the public or the private rows?"),
            ("admin", "Both: the public board uses the public rows, the private one the rest."),
            ("organizer", "And the private board is revealed when the competition closes."),
            ("alice", "Thanks, that makes sense. Looking forward to the hackathon!"),
        ]:
            post = create_reply(
                session, actor=actor(name, moderator=name == "admin"), users=None,
                config=config, thread=thread, body_md=body,
            )  # fmt: skip
            if post.held_reason:  # a new account's first posts: the admin lets them through
                run_action(session, "approve_post", actor=admin, target_id=post.id or 0)


# A day-long hackathon inside the running demo challenge: its own boards, the projector room and
# an on-site check-in code, so the feature can be seen (docs/lifecycle.md, "Hackathon"). It is
# graded on the competition's private rows, so its private board and shake-up stay hidden until
# the competition closes too (reveal: at_close waits for the last phase; see
# challenges.private_scores_visible and tests/challenge/test_demo.py).
HACKATHON_CHALLENGE = "higgsml-demo"
HACKATHON_PHASE = "hackathon"


def onsite_code() -> str:
    """Eight random characters from an alphabet without look-alikes (40 bits): read aloud or
    from a screen, typed in any case, and with guesses rate-limited, out of reach of guessing."""
    alphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(8))


def hackathon_window(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """24 hours that started three hours ago: running whenever the demo is started."""
    return now - dt.timedelta(hours=3), now + dt.timedelta(hours=21)


def seed_hackathon(settings: Settings, engine: Any, now: dt.datetime) -> None:
    """Give the demo challenge its hackathon phase (added to a demo seeded before it existed),
    an on-site check-in code, and one honest upload per bot during it. Idempotent."""
    with session_scope(engine) as session:
        challenge = session.exec(
            select(Challenge).where(Challenge.slug == HACKATHON_CHALLENGE)
        ).first()
        if challenge is None:
            return
        assert challenge.id is not None
        phases = phases_of(session, challenge)
        phase = next((p for p in phases if p.name == HACKATHON_PHASE), None)
        if phase is None:
            opens, closes = hackathon_window(now)
            phase = Phase(
                challenge_id=challenge.id,
                name=HACKATHON_PHASE,
                position=max(p.position for p in phases) + 1,
                opens_at=opens,
                closes_at=closes,
            )
        if len(phase.registration_code) < 13:  # none yet, or a 24-bit one from before
            phase.registration_code = f"HACK-{onsite_code()}"
        session.add(phase)
        session.flush()
        seeded = session.exec(
            select(Submission.id).where(
                Submission.phase_id == phase.id, col(Submission.message).endswith("(hackathon)")
            )
        ).first()
        window = (phase.opens_at, min(phase.closes_at or utcnow(), utcnow()))
    if seeded is not None or window[1] <= window[0]:
        return
    test = pd.read_parquet(storage.public_dir(settings, HACKATHON_CHALLENGE) / "test.parquet")
    for i, (name, (title, feature, sign, cut)) in enumerate(BOTS.items()):
        frame = _bot_prediction(test, feature, sign, cut, seed=1000 + i)
        when = window[0] + (window[1] - window[0]) * (i + 1) / (len(BOTS) + 1)
        _bot_upload(
            settings, engine, HACKATHON_CHALLENGE, name, frame, f"{title} (hackathon)", when
        )


def hackathon_info(settings: Settings) -> dict[str, str] | None:
    """What the demo prints about its hackathon: the room's address and the check-in code."""
    engine = make_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            challenge = session.exec(
                select(Challenge).where(Challenge.slug == HACKATHON_CHALLENGE)
            ).first()
            phase = (
                next((p for p in phases_of(session, challenge) if p.name == HACKATHON_PHASE), None)
                if challenge is not None
                else None
            )
            if phase is None:
                return None
            return {
                "challenge": HACKATHON_CHALLENGE,
                "phase": phase.name,
                "code": phase.registration_code,
                "room": f"/c/{HACKATHON_CHALLENGE}/room?phase={phase.name}",
                "closes": f"{phase.closes_at:%Y-%m-%d %H:%M} UTC" if phase.closes_at else "",
            }
    finally:
        engine.dispose()


# Demo rivals: simple, honest strategies on public features only, so the boards have life.
BOTS = {
    "bot-mt": ("transverse-mass cut", "DER_mass_transverse_met_lep", -1.0, 0.80),
    "bot-mass": ("visible-mass window", "DER_mass_vis", 0.0, 0.85),
    "bot-ratio": ("pT-ratio ranking", "DER_pt_ratio_lep_tau", 1.0, 0.82),
    "bot-random": ("random guess", "", 0.0, 0.85),
}
BOT_CHALLENGES = ("higgsml-demo", "higgsml-replay")
# And one that is not honest: it has learnt the labels of part of the public test rows (as a
# prober learns them from many uploads; the demo simply reads the solution it generated) and
# guesses the rest with a poor model. It climbs to the top of the public board and falls on the
# private one, so the finished challenge's shake-up shows movement, as real ones do.
PROBER = "bot-probe"
PROBER_TITLE = "public-board prober"
PROBER_FITS = (0.2, 0.3, 0.4)  # the share of public rows whose label it knows, upload by upload


def _prober_prediction(
    test: pd.DataFrame, solution: pd.DataFrame, fit: float, cut: float, seed: int
) -> pd.DataFrame:
    """Perfect on a share ``fit`` of the public rows, a noisy visible-mass window elsewhere."""
    rng = np.random.default_rng(seed)
    rows = test[["EventId", "DER_mass_vis"]].merge(
        solution[["EventId", "Label", "Usage"]], on="EventId", how="left"
    )
    value = rows["DER_mass_vis"].where(rows["DER_mass_vis"] > -999, 1e4).to_numpy()
    score = -np.abs(value - 80.0) + rng.normal(0, 40.0, len(rows))
    known = (rows["Usage"].astype(str) == "Public").to_numpy() & (rng.random(len(rows)) < fit)
    signal = (rows["Label"].astype(str) == "s").to_numpy()
    score = np.where(known & signal, 1e6 + score, np.where(known & ~signal, -1e6 + score, score))
    rank = pd.Series(score).rank(method="first").astype(int).to_numpy()
    cls = np.where(rank > cut * len(rows), "s", "b")
    return pd.DataFrame({"EventId": rows["EventId"].to_numpy(), "RankOrder": rank, "Class": cls})


def _bot_prediction(
    test: pd.DataFrame, feature: str, sign: float, cut: float, seed: int
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1e-6, len(test))
    if not feature:
        score = rng.random(len(test))
    elif sign == 0.0:  # a window around the Higgs visible-mass peak
        value = test[feature].where(test[feature] > -999, 1e4)
        score = -np.abs(value - 80.0) + noise * 1e3
    else:
        value = test[feature].where(test[feature] > -999, 0.0)
        score = sign * value + noise
    rank = pd.Series(score).rank(method="first").astype(int).to_numpy()
    cls = np.where(rank > cut * len(test), "s", "b")
    return pd.DataFrame({"EventId": test["EventId"].to_numpy(), "RankOrder": rank, "Class": cls})


def seed_bot_submissions(settings: Settings, engine: Any, slug: str) -> None:
    """Bots join and upload a few predictions; the worker scores them when it starts."""
    test = pd.read_parquet(storage.public_dir(settings, slug) / "test.parquet")
    with session_scope(engine) as session:
        challenge = session.exec(select(Challenge).where(Challenge.slug == slug)).one()
        phases = [p for p in phases_of(session, challenge) if p.accepts_submissions]
        opens = min(p.opens_at for p in phases)
        closes = max((p.closes_at for p in phases if p.closes_at), default=None)
        hackathon = [p.opens_at for p in phases if p.name == HACKATHON_PHASE]
    # Spread the uploads over the time the challenge has been open (before its close, and before
    # the demo's hackathon, whose uploads seed_hackathon makes).
    end = min([utcnow(), *hackathon, *([closes] if closes is not None else [])])
    n_uploads = 3 * len(BOTS) + len(PROBER_FITS)
    for i, (name, (title, feature, sign, cut)) in enumerate(BOTS.items()):
        for attempt, shift in enumerate((-0.05, 0.0, 0.05)):
            frame = _bot_prediction(test, feature, sign, cut + shift, seed=100 * i + attempt)
            when = opens + (end - opens) * (3 * i + attempt + 1) / (n_uploads + 1)
            message = f"{title}, cut at {cut + shift:.2f}"
            _bot_upload(settings, engine, slug, name, frame, message, when)
    solution = pd.read_parquet(storage.solution_path(settings, slug))
    for attempt, fit in enumerate(PROBER_FITS):
        frame = _prober_prediction(test, solution, fit, 0.85, seed=900 + attempt)
        when = opens + (end - opens) * (3 * len(BOTS) + attempt + 1) / (n_uploads + 1)
        message = f"{PROBER_TITLE}, {fit:.0%} of the public labels"
        _bot_upload(settings, engine, slug, PROBER, frame, message, when)


def _bot_upload(
    settings: Settings,
    engine: Any,
    slug: str,
    name: str,
    frame: pd.DataFrame,
    message: str,
    when: dt.datetime,
) -> None:
    """The bot joins (once) and uploads ``frame`` as if at ``when``."""
    with session_scope(engine) as session:
        user = session.exec(select(User).where(User.username == name)).first()
        if user is None:
            user = create_user(
                session,
                username=name,
                email=f"{name}@demo.podium.invalid",
                password=secrets.token_urlsafe(16),
                role="participant",
            )
        challenge = session.exec(select(Challenge).where(Challenge.slug == slug)).one()
        join_challenge(session, challenge=challenge, user=user)
    path = storage.new_upload_path(settings, slug, "pred.csv")
    frame.to_csv(path, index=False)
    with session_scope(engine) as session:
        challenge = session.exec(select(Challenge).where(Challenge.slug == slug)).one()
        user = session.exec(select(User).where(User.username == name)).one()
        create_submission(
            session,
            challenge=challenge,
            user=user,
            stored_path=path,
            filename=path.name,
            size_bytes=path.stat().st_size,
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            message=message,
            now=when,
        )


# The fourth demo challenge: TrackML on simulated events, from the bundle shipped in
# docs/bundles/trackml/challenge.yaml (a test keeps the two the same), with its own events (so
# its test rows are its own) and two honest track finders on the board.
TRACKING_CHALLENGE = "trackml-sim"
TRACKING_EVENTS = 40
TRACKING_BUNDLE = """\
slug: trackml-sim
title: TrackML on simulated events
summary: Assign every hit of an event to a track; scored exactly like the TrackML Kaggle challenge.
description: trackml-description.md
dataset: tracking/tracking.parquet
license: CC-BY-4.0
split: {seed: 2018, train: 0.6, public_test: 0.1, private_test: 0.3, group: event_id,
        hidden: [tx, ty, tz, tpx, tpy, tpz]}
submission: {id: [event_id, hit_id], columns: {track_id: int}}
metric: {name: trackml, event: event_id, particle: particle_id, weight: weight, track: track_id}
phases:
@PHASES@
limits: {per_day: 5, total: 300, file_mb: 200, team_size: 4, final_selections: 2}
leaderboard: {reveal: at_close}
"""
TRACKING_DESCRIPTION = """\
Reconstruct the trajectories of charged particles from the hits they left in a silicon tracker.

Each event is a collision: about ten percent of its hits are noise, the others lie on the
helices of charged particles in a 2 T solenoid field. The training events come with their truth
(which particle made each hit and the hit's weight); the test events have the hits only.

Submit a CSV with the header `event_id,hit_id,track_id`: one row per hit of every test event
(hit ids restart at 1 in each event, as in TrackML). The score is TrackML's: a track counts when
more than half its hits come from one particle and they are more than half of that particle's
hits; the event's score is the weight of those hits, and events are averaged.
"""
# Track finders that use the hits only: bin the hits by azimuth and by the slope z / r of the
# line from the beam spot. Stiff tracks land in one bin; the many soft ones curl across bins, so
# these baselines score a few percent, leaving the board to real track finding.
TRACKING_BOTS = {
    "bot-cones": ("azimuth x slope cones, 30 x 10", 30, 10),
    "bot-fine-cones": ("azimuth x slope cones, 60 x 20", 60, 20),
}


def cone_tracks(test: pd.DataFrame, n_phi: int, n_slope: int) -> pd.DataFrame:
    """A Kaggle-format submission (event_id, hit_id, track_id) from azimuth x slope bins."""
    phi = np.arctan2(test["y"].to_numpy(), test["x"].to_numpy())
    slope = np.arctan2(test["z"].to_numpy(), np.hypot(test["x"], test["y"]).to_numpy())
    phi_bin = np.clip(((phi + np.pi) / (2 * np.pi) * n_phi).astype(np.int64), 0, n_phi - 1)
    slope_bin = np.clip(((slope + np.pi / 2) / np.pi * n_slope).astype(np.int64), 0,
                        n_slope - 1)
    return pd.DataFrame({
        "event_id": test["event_id"].to_numpy(),
        "hit_id": test["hit_id"].to_numpy(),
        "track_id": phi_bin * n_slope + slope_bin + 1,
    })


def seed_tracking_demo(settings: Settings, engine: Any, now: dt.datetime) -> None:
    """Create the TrackML demo challenge and its bots' uploads unless it exists."""
    from splitter.tracking import generate_tracking

    with session_scope(engine) as session:
        if session.exec(
            select(Challenge).where(Challenge.slug == TRACKING_CHALLENGE)
        ).first() is not None:
            return
    demo_dir = settings.data_dir.parent / "demo"
    data = demo_dir / "tracking" / "tracking.parquet"
    if not data.is_file():
        log.info("simulating %d TrackML-like events for the demo", TRACKING_EVENTS)
        generate_tracking(TRACKING_EVENTS, seed=2018, out_dir=data.parent, n_particles=150)
    (demo_dir / "trackml-description.md").write_text(TRACKING_DESCRIPTION, encoding="utf-8")
    opens = (now - dt.timedelta(days=5)).strftime("%Y-%m-%dT%H:%MZ")
    closes = (now + dt.timedelta(days=40)).strftime("%Y-%m-%dT%H:%MZ")
    bundle_path = demo_dir / f"{TRACKING_CHALLENGE}.yaml"
    bundle_path.write_text(
        TRACKING_BUNDLE.replace(
            "@PHASES@", f"  - {{name: competition, opens: {opens}, closes: {closes}}}"
        ),
        encoding="utf-8",
    )
    with session_scope(engine) as session:
        owner = session.exec(select(User).where(User.username == "organizer")).one()
        challenge = create_challenge(session, bundle=parse_bundle(bundle_path), creator=owner)
        prepare_challenge(settings, challenge, data)
        session.add(challenge)
        log.info("seeded challenge %s", TRACKING_CHALLENGE)
    test = pd.read_parquet(storage.public_dir(settings, TRACKING_CHALLENGE) / "test.parquet")
    start = now - dt.timedelta(days=4)
    for i, (name, (title, n_phi, n_slope)) in enumerate(TRACKING_BOTS.items()):
        when = start + dt.timedelta(days=1 + i)
        _bot_upload(settings, engine, TRACKING_CHALLENGE, name, cone_tracks(test, n_phi, n_slope),
                    title, when)

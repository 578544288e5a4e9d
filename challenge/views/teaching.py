"""Teaching pages under /teach: an instructor's classes, a class's roster and grades, the reset;
and /join, where a student enters an invite code."""

from __future__ import annotations

import datetime as dt
import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from challenge.challenges import challenge_status, phases_of
from challenge.errors import BadRequest, PodiumError
from challenge.models import Challenge, User
from challenge.teaching import (
    class_of,
    classes_of,
    create_class,
    grade_rows,
    grades_csv,
    join_class,
    may_clone,
    reset_class,
    set_grade_rule,
    term_of,
)
from challenge.web import (
    db,
    flash,
    query_int,
    read_form,
    redirect,
    render,
    require_role,
    require_user,
    settings_of,
)


def _when(value: str, field: str) -> dt.datetime:
    """A date-time from a form (``2027-04-01T09:00``, taken as UTC when it has no offset)."""
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"Write {field} as 2027-04-01T09:00 (UTC).", field=field) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _seed(value: str) -> int | None:
    if not value.strip():
        return None
    if not value.strip().isdigit():
        raise BadRequest("The seed is a whole number, or empty for a random one.", field="seed")
    return int(value)


def _finished_sources(request: Request, user: User) -> list[Challenge]:
    """The finished challenges ``user`` may clone: their own, and public reusable ones."""
    from sqlmodel import col, or_, select

    session = db(request)
    rows = session.exec(
        select(Challenge)
        .where(or_(col(Challenge.is_listed), Challenge.created_by == user.id))
        .order_by(col(Challenge.id))
    )
    return [
        c
        for c in rows
        if may_clone(c, user) and challenge_status(phases_of(session, c)).label == "finished"
    ]


async def classes(request: Request) -> Response:
    user = require_role(request, "admin", "organizer")
    if request.method == "GET":
        return render(
            request,
            "teaching/index.html",
            classes=classes_of(db(request), user),
            sources=_finished_sources(request, user),
            form={},
        )
    form = await read_form(request)
    fields = {
        k: str(form.get(k, ""))
        for k in ("source", "slug", "title", "opens", "closes", "seed", "data", "dataset")
    }

    def _create() -> Response:
        session = db(request)
        try:
            classroom = create_class(
                session,
                settings_of(request),
                source_slug=fields["source"],
                slug=fields["slug"].strip(),
                title=fields["title"].strip() or None,
                instructor=user,
                opens=_when(fields["opens"], "opens"),
                closes=_when(fields["closes"], "closes"),
                seed=_seed(fields["seed"]),
                data=fields["data"] or "simulate",
                dataset=fields["dataset"].strip() or None,
            )
            session.commit()
        except PodiumError as exc:
            session.rollback()
            return render(
                request,
                "teaching/index.html",
                status_code=exc.status_code,
                classes=classes_of(session, user),
                sources=_finished_sources(request, user),
                form=fields,
                error=exc.message,
            )
        flash(request, f"Class created. Students join with the code {classroom.invite_code}.")
        return redirect(f"/teach/{fields['slug'].strip()}")

    return await run_in_threadpool(_create)


def class_page(request: Request) -> Response:
    user = require_role(request, "admin", "organizer")
    session = db(request)
    classroom, challenge = class_of(session, request.path_params["slug"], user)
    term = query_int(request, "term", classroom.term, maximum=1_000_000)
    return render(
        request,
        "teaching/class.html",
        classroom=classroom,
        challenge=challenge,
        term=term_of(session, classroom, term),
        rows=grade_rows(session, classroom, challenge, term),
        rule_json=json.dumps(classroom.grade_rule, indent=1),
        join_url=f"{settings_of(request).base_url}/join?code={classroom.invite_code}",
    )


def grades(request: Request) -> Response:
    user = require_role(request, "admin", "organizer")
    session = db(request)
    classroom, challenge = class_of(session, request.path_params["slug"], user)
    term = query_int(request, "term", classroom.term, maximum=1_000_000)
    text = grades_csv(grade_rows(session, classroom, challenge, term))
    return PlainTextResponse(
        text,
        media_type="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{challenge.slug}-term-{term}-grades.csv"'
        },
    )


async def rule(request: Request) -> Response:
    user = require_role(request, "admin", "organizer")
    form = await read_form(request)

    def _set() -> Response:
        session = db(request)
        classroom, challenge = class_of(session, request.path_params["slug"], user)
        try:
            value = json.loads(str(form.get("rule", "")))
        except ValueError as exc:
            raise BadRequest(f"The grade rule is not valid JSON: {exc}.", field="rule") from exc
        if not isinstance(value, dict):
            raise BadRequest("The grade rule is a JSON object; see docs/teaching.md.")
        set_grade_rule(session, classroom=classroom, rule=value)
        session.commit()
        flash(request, "Grade rule saved.")
        return redirect(f"/teach/{challenge.slug}")

    return await run_in_threadpool(_set)


async def reset(request: Request) -> Response:
    user = require_role(request, "admin", "organizer")
    form = await read_form(request)
    if form.get("confirm") != "yes":
        raise BadRequest("Tick the box to confirm that this term ends now.")

    def _reset() -> Response:
        session = db(request)
        classroom, challenge = class_of(session, request.path_params["slug"], user)
        term = reset_class(
            session,
            settings_of(request),
            classroom=classroom,
            opens=_when(str(form.get("opens", "")), "opens"),
            closes=_when(str(form.get("closes", "")), "closes"),
            seed=_seed(str(form.get("seed", ""))),
        )
        session.commit()
        flash(request, f"Term {term.term} started; the new invite code is {classroom.invite_code}.")
        return redirect(f"/teach/{challenge.slug}")

    return await run_in_threadpool(_reset)


async def join(request: Request) -> Response:
    user = require_user(request)
    if request.method == "GET":
        return render(request, "teaching/join.html", code=request.query_params.get("code", ""))
    form = await read_form(request)

    def _join() -> Response:
        session = db(request)
        challenge = join_class(session, code=str(form.get("code", "")), user=user)
        session.commit()
        flash(request, f"You have joined the class {challenge.title}.")
        return redirect(f"/c/{challenge.slug}")

    return await run_in_threadpool(_join)


routes = [
    Route("/teach", classes, methods=["GET", "POST"], name="teach"),
    Route("/teach/{slug}", class_page, methods=["GET"], name="teach_class"),
    Route("/teach/{slug}/grades.csv", grades, methods=["GET"], name="teach_grades"),
    Route("/teach/{slug}/rule", rule, methods=["POST"], name="teach_rule"),
    Route("/teach/{slug}/reset", reset, methods=["POST"], name="teach_reset"),
    Route("/join", join, methods=["GET", "POST"], name="join_class"),
]

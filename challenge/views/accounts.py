"""Registration, login, logout and the account page (API tokens)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from challenge.accounts import authenticate, create_api_token, create_user, revoke_api_token
from challenge.errors import PodiumError
from challenge.models import ApiToken
from challenge.web import db, flash, limit_login_rate, read_form, redirect, render, require_user


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/") and not value.startswith("//"):
        return value
    return "/"


async def register(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "challenge/register.html", form={})
    form = await read_form(request)
    fields = {k: str(form.get(k, "")) for k in ("username", "email", "password")}

    def _create() -> Response:
        session = db(request)
        try:
            user = create_user(session, **fields)
            session.commit()
        except PodiumError as exc:
            session.rollback()
            return render(
                request,
                "challenge/register.html",
                status_code=exc.status_code,
                form=fields,
                error=exc.message,
                error_field=exc.field,
            )
        request.session.clear()
        request.session["user_id"] = user.id
        flash(request, f"Welcome, {user.username}! Your account is ready.")
        return redirect(_safe_next(request.query_params.get("next")))

    return await run_in_threadpool(_create)


async def login(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "challenge/login.html", next=request.query_params.get("next", ""))
    form = await read_form(request)
    login_name = str(form.get("login", ""))
    password = str(form.get("password", ""))
    limit_login_rate(request)

    def _check() -> Response:
        user = authenticate(db(request), login_name, password)
        if user is None:
            return render(
                request,
                "challenge/login.html",
                status_code=400,
                error="Unknown user name or wrong password.",
                login=login_name,
                next=str(form.get("next", "")),
            )
        request.session.clear()
        request.session["user_id"] = user.id
        return redirect(_safe_next(str(form.get("next", ""))))

    return await run_in_threadpool(_check)


async def logout(request: Request) -> Response:
    await read_form(request)
    request.session.clear()
    return redirect("/")


async def account(request: Request) -> Response:
    user = require_user(request)
    new_token = None
    if request.method == "POST":
        form = await read_form(request)
        action = str(form.get("action", "create"))

        def _act() -> str | None:
            session = db(request)
            token = None
            if action == "revoke":
                revoke_api_token(
                    session, user=user, token_id=int(str(form.get("token_id", "0")) or 0)
                )
            else:
                token = create_api_token(session, user=user, name=str(form.get("name", "")))
            session.commit()
            return token

        new_token = await run_in_threadpool(_act)

    def _page() -> Response:
        from sqlmodel import col, select

        tokens = (
            db(request)
            .exec(
                select(ApiToken).where(
                    ApiToken.user_id == user.id, col(ApiToken.revoked).is_(False)
                )
            )
            .all()
        )
        from challenge.mail import preferences

        return render(
            request,
            "challenge/account.html",
            tokens=tokens,
            new_token=new_token,
            mail_kinds=preferences(db(request), user),
        )

    return await run_in_threadpool(_page)


routes = [
    Route("/register", register, methods=["GET", "POST"], name="register"),
    Route("/login", login, methods=["GET", "POST"], name="login"),
    Route("/logout", logout, methods=["POST"], name="logout"),
    Route("/account", account, methods=["GET", "POST"], name="account"),
]

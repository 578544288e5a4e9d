"""Registration, login, logout, passwords, the account page (API tokens, sessions) and the
admin's page to end a user's sessions."""

from __future__ import annotations

from sqlmodel import col, func, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from challenge.accounts import (
    NotConfirmed,
    authenticate,
    change_password,
    check_reset_token,
    confirm_registration,
    create_api_token,
    register_account,
    request_password_reset,
    reset_password,
    revoke_api_token,
)
from challenge.errors import NotFound, PodiumError
from challenge.models import AccountEvent, ApiToken, User, UserSession, utcnow
from challenge.sessions import end_sessions, live_sessions
from challenge.web import (
    client_address,
    count_failed_login,
    db,
    flash,
    limit_login_rate,
    log_in,
    log_out,
    rate_limit,
    read_form,
    redirect,
    render,
    require_role,
    require_user,
)

LOGIN_FAILED = "Unknown user name or wrong password."


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/") and not value.startswith("//"):
        return value
    return "/"


async def register(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "challenge/register.html", form={})
    form = await read_form(request)
    fields = {k: str(form.get(k, "")) for k in ("username", "email", "password")}
    rate_limit(request, "register", account=fields["email"].strip().lower() or "-")

    def _register() -> Response:
        session = db(request)
        try:
            register_account(
                session, **fields, next_path=_safe_next(request.query_params.get("next"))
            )
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
        # The same answer whether the address was new or already had an account.
        return render(request, "challenge/register_sent.html", email=fields["email"].strip())

    return await run_in_threadpool(_register)


async def register_confirm(request: Request) -> Response:
    """GET shows a button (mail scanners that follow links must not use the link up); POST
    confirms and logs in."""
    token = request.path_params["token"]
    next_path = _safe_next(request.query_params.get("next"))
    if request.method == "GET":
        return render(request, "challenge/register_confirm.html", token=token, next_path=next_path)
    await read_form(request)
    rate_limit(request, "account_link")

    def _confirm() -> Response:
        session = db(request)
        user = confirm_registration(session, token=token)
        session.commit()
        log_in(request, user)
        flash(request, f"Welcome, {user.username}! Your account is ready.")
        return redirect(next_path)

    return await run_in_threadpool(_confirm)


async def login(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "challenge/login.html", next=request.query_params.get("next", ""))
    form = await read_form(request)
    login_name = str(form.get("login", ""))
    password = str(form.get("password", ""))
    limit_login_rate(request, login_name)

    def _check() -> Response:
        try:
            user = authenticate(db(request), login_name, password)
        except NotConfirmed as exc:
            return render(
                request,
                "challenge/login.html",
                status_code=exc.status_code,
                error=exc.message,
                login=login_name,
                next=str(form.get("next", "")),
            )
        if user is None:
            count_failed_login(request, login_name)
            return render(
                request,
                "challenge/login.html",
                status_code=400,
                error=LOGIN_FAILED,
                login=login_name,
                next=str(form.get("next", "")),
            )
        log_in(request, user)
        return redirect(_safe_next(str(form.get("next", ""))))

    return await run_in_threadpool(_check)


async def logout(request: Request) -> Response:
    await read_form(request)
    await run_in_threadpool(log_out, request)
    return redirect("/")


async def account(request: Request) -> Response:
    user = require_user(request)
    new_token = None
    if request.method == "POST":
        form = await read_form(request)
        action = str(form.get("action", "create"))
        if action == "create":
            rate_limit(request, "api_token", account=f"user-{user.id}")

        def _act() -> str | None:
            session = db(request)
            token = None
            if action == "revoke":
                revoke_api_token(
                    session, user=user, token_id=int(str(form.get("token_id", "0")) or 0)
                )
            elif action == "end_other_sessions":
                ended = end_sessions(
                    session,
                    user=user,
                    actor=user,
                    reason="by the user",
                    keep=str(request.session.get("sid", "")),
                    ip=client_address(request),
                )
                flash(request, f"Logged out {ended} other session(s).")
            else:
                token = create_api_token(session, user=user, name=str(form.get("name", "")))
            session.commit()
            return token

        new_token = await run_in_threadpool(_act)

    def _page() -> Response:
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
        from challenge.sessions import session_key_hash

        return render(
            request,
            "challenge/account.html",
            tokens=tokens,
            new_token=new_token,
            mail_kinds=preferences(db(request), user),
            sessions=live_sessions(db(request), user),
            this_session=session_key_hash(str(request.session.get("sid", ""))),
        )

    return await run_in_threadpool(_page)


async def password_change(request: Request) -> Response:
    user = require_user(request)
    if request.method == "GET":
        return render(request, "challenge/password_change.html")
    form = await read_form(request)
    rate_limit(request, "password_change", account=f"user-{user.id}")

    def _change() -> Response:
        session = db(request)
        try:
            ended = change_password(
                session,
                user=user,
                current=str(form.get("current", "")),
                new=str(form.get("new", "")),
                keep_session=str(request.session.get("sid", "")) or None,
                ip=client_address(request),
            )
            session.commit()
        except PodiumError as exc:
            session.rollback()
            return render(
                request,
                "challenge/password_change.html",
                status_code=exc.status_code,
                error=exc.message,
                error_field=exc.field,
            )
        flash(request, f"Password changed; {ended} other session(s) logged out.")
        return redirect("/account")

    return await run_in_threadpool(_change)


async def password_forgot(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "challenge/password_forgot.html")
    form = await read_form(request)
    email = str(form.get("email", "")).strip().lower()
    rate_limit(request, "password_reset", account=email or "-")

    def _request() -> Response:
        session = db(request)
        request_password_reset(session, email=email)
        session.commit()
        # The same answer whether the address has an account or not.
        return render(request, "challenge/password_forgot.html", sent=email)

    return await run_in_threadpool(_request)


async def password_reset(request: Request) -> Response:
    token = request.path_params["token"]
    if request.method == "GET":

        def _show() -> Response:
            valid = check_reset_token(db(request), token=token)
            return render(
                request,
                "challenge/password_reset.html",
                status_code=200 if valid else 400,
                valid=valid,
                token=token,
            )

        return await run_in_threadpool(_show)
    form = await read_form(request)
    rate_limit(request, "account_link")

    def _reset() -> Response:
        session = db(request)
        try:
            user = reset_password(
                session,
                token=token,
                new_password=str(form.get("password", "")),
                ip=client_address(request),
            )
            session.commit()
        except PodiumError as exc:
            session.rollback()
            return render(
                request,
                "challenge/password_reset.html",
                status_code=exc.status_code,
                valid=check_reset_token(session, token=token),
                token=token,
                error=exc.message,
            )
        log_in(request, user)
        flash(request, "Your new password is set; every other session was logged out.")
        return redirect("/")

    return await run_in_threadpool(_reset)


def admin_users(request: Request) -> Response:
    """Admins: find an account, see its live sessions and security events, end its sessions."""
    require_role(request, "admin")
    query = request.query_params.get("q", "").strip()
    session = db(request)
    statement = select(User).order_by(col(User.username)).limit(50)
    if query:
        statement = statement.where(func.lower(User.username).contains(query.lower()))
    users = list(session.exec(statement))
    ids = [u.id for u in users]
    counts = {
        int(uid): int(n)
        for uid, n in session.exec(
            select(UserSession.user_id, func.count())
            .where(col(UserSession.user_id).in_(ids), col(UserSession.expires_at) > utcnow())
            .group_by(col(UserSession.user_id))
        ).all()
    }
    events = list(
        session.exec(select(AccountEvent).order_by(col(AccountEvent.id).desc()).limit(30))
    )
    people = {e.user_id for e in events} | {e.actor_id for e in events if e.actor_id}
    names = {
        int(uid): str(name)
        for uid, name in session.exec(
            select(User.id, User.username).where(col(User.id).in_(people))
        ).all()
        if uid is not None
    }
    return render(
        request,
        "challenge/admin_users.html",
        users=users,
        counts=counts,
        events=events,
        names=names,
        q=query,
    )


async def admin_end_sessions(request: Request) -> Response:
    admin = require_role(request, "admin")
    await read_form(request)

    def _end() -> Response:
        session = db(request)
        user = session.get(User, int(request.path_params["user_id"]))
        if user is None:
            raise NotFound("No such user.")
        keep = str(request.session.get("sid", "")) if user.id == admin.id else None
        ended = end_sessions(
            session,
            user=user,
            actor=admin,
            reason=f"by admin {admin.username}",
            keep=keep,
            ip=client_address(request),
        )
        session.commit()
        flash(request, f"Ended {ended} session(s) of {user.username}.")
        return redirect(f"/admin/users?q={user.username}")

    return await run_in_threadpool(_end)


routes = [
    Route("/register", register, methods=["GET", "POST"], name="register"),
    Route("/register/confirm/{token}", register_confirm, methods=["GET", "POST"]),
    Route("/login", login, methods=["GET", "POST"], name="login"),
    Route("/logout", logout, methods=["POST"], name="logout"),
    Route("/account", account, methods=["GET", "POST"], name="account"),
    Route("/account/password", password_change, methods=["GET", "POST"]),
    Route("/password/forgot", password_forgot, methods=["GET", "POST"]),
    Route("/password/reset/{token}", password_reset, methods=["GET", "POST"]),
    Route("/admin/users", admin_users, methods=["GET"]),
    Route("/admin/users/{user_id:dbint}/end-sessions", admin_end_sessions, methods=["POST"]),
]

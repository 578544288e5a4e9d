"""The account page's e-mail notice preferences (one checkbox per kind of notice)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from challenge.mail import KINDS, set_preferences
from challenge.web import db, flash, read_form, redirect, require_user
from challenge.wording import counted


async def mail_preferences(request: Request) -> Response:
    user = require_user(request)
    form = await read_form(request)
    wanted = {str(k) for k in form.getlist("kind") if str(k) in KINDS}

    def _save() -> Response:
        set_preferences(db(request), user, wanted)
        db(request).commit()
        off = len(KINDS) - len(wanted)
        flash(request, f"E-mail notices saved ({counted(off, 'kind')} turned off).")
        return redirect("/account#mail")

    return await run_in_threadpool(_save)


routes = [Route("/account/mail", mail_preferences, methods=["POST"], name="mail_preferences")]

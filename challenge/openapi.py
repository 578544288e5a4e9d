"""The OpenAPI 3.1 description of Podium's JSON API, served at ``/api/openapi.json``.

Written by hand next to the routes in ``challenge/api.py`` and ``challenge/evalai.py``; a test fails
when a route is missing here, and another validates the document with openapi-spec-validator.
"""

from __future__ import annotations

from typing import Any

from challenge.web import MAX_DB_INT

JSON = "application/json"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _obj(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "The request is wrong; `message` says what to change.",
        401: "No valid API token (send `Authorization: Bearer <token>`).",
        403: "Not allowed now (not joined, phase closed, cross-site form).",
        404: "Missing, or hidden from the caller (the two look the same).",
        409: "Conflicts with existing data.",
        413: "The upload is larger than the challenge's limit.",
        429: "Daily quota used up, or too many requests in a minute.",
    }
    return {str(c): _json(_ref("Error"), texts[c]) for c in codes}


def _op(
    summary: str,
    tag: str,
    ok: tuple[int, dict[str, Any] | None, str],
    *,
    errors: tuple[int, ...] = (),
    auth: str = "required",
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    description: str = "",
) -> dict[str, Any]:
    """One operation. ``auth``: 'required', 'optional' (anonymous callers see less) or 'none'."""
    status, schema, text = ok
    responses: dict[str, Any] = {
        str(status): _json(schema, text) if schema is not None else {"description": text}
    }
    responses.update(_errors(*errors))
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "operationId": "",
        "responses": responses,
    }
    if description:
        op["description"] = description
    if auth == "none":
        op["security"] = []
    elif auth == "optional":
        op["security"] = [{}, {"bearer": []}]
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    return op


def _path_param(name: str, kind: str = "string", description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind}
    if kind == "integer":
        schema.update(minimum=0, maximum=MAX_DB_INT)  # the `dbint` route convertor's range
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description or name,
    }


def _query(name: str, description: str, kind: str = "string", **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": kind, **schema},
        "description": description,
    }


SLUG = _path_param("slug", description="The challenge's slug, e.g. `higgsml-2027`.")


def _schemas() -> dict[str, Any]:
    iso = {"type": "string", "format": "date-time"}
    ci = _nullable("array", items={"type": "number"}, minItems=2, maxItems=2)
    return {
        "Error": _obj(
            ["error", "message"],
            error={"type": "string", "description": "A machine-readable code, e.g. `not_found`."},
            message={"type": "string", "description": "What went wrong and what to change."},
            field={"type": "string", "description": "The input field at fault, when one is."},
        ),
        "TokenRequest": _obj(
            ["login", "password"],
            login={"type": "string", "description": "User name or e-mail address."},
            password={"type": "string"},
            name={"type": "string", "description": "A label for the token, e.g. `laptop`."},
        ),
        "NewToken": _obj(
            ["token", "username"],
            token={"type": "string", "description": "Shown once; only its hash is stored."},
            username={"type": "string"},
        ),
        "TokenInfo": _obj(
            ["id", "name", "prefix", "created_at"],
            id={"type": "integer"},
            name={"type": "string"},
            prefix={"type": "string", "description": "The first characters, to recognise it."},
            created_at=iso,
            last_used_at=_nullable("string", format="date-time"),
        ),
        "Me": _obj(
            ["username", "email", "role"],
            username={"type": "string"},
            email={"type": "string"},
            role={"type": "string", "enum": ["admin", "organizer", "participant"]},
        ),
        "Phase": _obj(
            ["name", "opens", "state", "accepts_submissions"],
            name={"type": "string"},
            opens=iso,
            closes=_nullable("string", format="date-time"),
            state={"type": "string", "enum": ["upcoming", "open", "closed"]},
            accepts_submissions={"type": "boolean"},
        ),
        "File": _obj(
            ["name", "size", "md5", "sha256"],
            name={"type": "string", "description": "e.g. `train.parquet`"},
            size={"type": "integer"},
            md5={"type": "string"},
            sha256={"type": "string"},
        ),
        "Quota": _obj(
            ["per_day", "used_today", "total", "used_total", "left_today", "resets_at"],
            per_day={"type": "integer"},
            used_today={"type": "integer"},
            total={"type": "integer"},
            used_total={"type": "integer"},
            left_today={"type": "integer"},
            resets_at=iso,
        ),
        "Challenge": _obj(
            ["slug", "title", "status", "phases", "files", "joined"],
            slug={"type": "string"},
            title={"type": "string"},
            summary={"type": "string"},
            status={"type": "string", "enum": ["upcoming", "running", "finished"]},
            state={"type": "string", "description": "preparing, ready or failed"},
            url={"type": "string"},
            metric={"type": "string"},
            higher_is_better={"type": "boolean"},
            submission_format={"type": "object", "description": "Id column and columns."},
            limits={"type": "object", "description": "per_day, total, file_mb, ..."},
            phases=_array(_ref("Phase")),
            files=_array(_ref("File")),
            joined={"type": "boolean"},
            quota=_ref("Quota"),
        ),
        "OrganizedChallenge": {
            "allOf": [
                _ref("Challenge"),
                _obj(
                    is_listed={"type": "boolean"},
                    state_message={"type": "string"},
                    revealed_at=_nullable("string", format="date-time"),
                    submission_counts={
                        "type": "object",
                        "additionalProperties": {"type": "integer"},
                    },
                ),
            ]
        },
        "JoinRequest": _obj(
            ["accept_rules"],
            accept_rules={"type": "boolean", "const": True},
        ),
        "Submission": _obj(
            ["id", "status", "filename", "created_at"],
            id={"type": "integer"},
            challenge_id={"type": "integer"},
            phase_id={"type": "integer"},
            phase={"type": "string", "description": "The name of the phase it went to."},
            status={
                "type": "string",
                "enum": ["received", "scoring", "scored", "invalid", "error"],
            },
            filename={"type": "string"},
            message={"type": "string"},
            size_bytes={"type": "integer"},
            sha256={"type": "string"},
            created_at=iso,
            finished_at=_nullable("string", format="date-time"),
            public_score=_nullable("number"),
            public_ci=ci,
            private_score=_nullable(
                "number", description="null until the private leaderboard is revealed"
            ),
            is_late={"type": "boolean"},
            error=_nullable("string", description="What to fix, for invalid files."),
            queue_position=_nullable("integer", description="Submissions ahead in the queue."),
            scores={
                "type": "object",
                "additionalProperties": {"type": "number"},
                "description": "Code challenges: every leaderboard column (docs/codabench.md).",
            },
            log={
                "type": ["object", "null"],
                "description": "Code challenges: the run's stdout, stderr (bounded), usage per "
                "step, the budget it exceeded, and its detailed results' URL.",
                "properties": {
                    "stdout": {"type": "string"},
                    "stderr": {"type": "string"},
                    "usage": {"type": "object"},
                    "exceeded": {"type": ["string", "null"]},
                    "detailed_results_url": {"type": "string"},
                },
            },
        ),
        "OrganizerSubmission": {
            "allOf": [
                _ref("Submission"),
                _obj(
                    participant={"type": "string"},
                    phase={"type": "string"},
                    private_score=_nullable("number"),
                    private_ci=ci,
                    error_detail=_nullable("string"),
                    attempts={"type": "integer"},
                    duration_ms=_nullable("number"),
                ),
            ]
        },
        "LeaderboardEntry": _obj(
            ["rank", "participant", "score", "submission_id", "submitted_at", "entries"],
            rank=_nullable("integer", description="null for an organizer's baseline"),
            participant={"type": "string", "description": "The team's name."},
            score={"type": "number"},
            ci=ci,
            submission_id={"type": "integer"},
            submitted_at=iso,
            entries={"type": "integer", "description": "Scored submissions of this entrant."},
            public_rank=_nullable("integer", description="Private board: the public rank."),
            scores={
                "type": "object",
                "additionalProperties": {"type": "number"},
                "description": "Code challenges: every column of this entry.",
            },
        ),
        "Leaderboard": _obj(
            ["phase", "board", "entries"],
            phase={"type": "string"},
            board={"type": "string", "enum": ["public", "private"]},
            entries=_array(_ref("LeaderboardEntry")),
            columns=_array(
                _obj(
                    key={"type": "string"},
                    title={"type": "string"},
                    sorting={"type": "string", "enum": ["asc", "desc"]},
                    precision={"type": "integer"},
                )
            ),
            ranking={"type": "string", "description": "Code challenges: the ranking column."},
        ),
        "Reveal": _obj(
            ["slug"], slug={"type": "string"}, revealed_at=iso, forced={"type": "boolean"}
        ),
        "RevealRequest": _obj(
            ["confirm"],
            confirm={"type": "string", "description": "The challenge's slug, typed to confirm."},
            reason={
                "type": "string",
                "description": "Recorded; required from an admin revealing before the date.",
            },
        ),
        "EvalAIPage": _obj(
            ["results"],
            count={"type": "integer"},
            next=_nullable("string"),
            previous=_nullable("string"),
            results=_array({"type": "object"}),
        ),
        "EvalAIObject": {
            "type": "object",
            "description": "The JSON object EvalAI's server sends for this resource; see "
            "docs/evalai.md for the fields Podium fills.",
        },
        "EvalAIError": _obj(["error"], error={"type": "string"}),
    }


def _podium_paths() -> dict[str, Any]:
    tag = "participant"
    org = "organizer"
    sub_params = [SLUG]
    return {
        "/api/openapi.json": {
            "get": _op(
                "This document",
                "meta",
                (200, {"type": "object"}, "The OpenAPI 3.1 document."),
                auth="none",
            )
        },
        "/api/auth/token": {
            "post": _op(
                "Exchange a user name and password for an API token",
                "account",
                (201, _ref("NewToken"), "A new token."),
                errors=(400, 401, 429),
                auth="none",
                body={"required": True, "content": {JSON: {"schema": _ref("TokenRequest")}}},
                description="Rate-limited per client address (`PODIUM_LOGIN_RATE_PER_MINUTE`).",
            )
        },
        "/api/me": {
            "get": _op("The caller's account", "account", (200, _ref("Me"), "You."), errors=(401,))
        },
        "/api/tokens": {
            "get": _op(
                "The caller's live API tokens",
                "account",
                (200, _array(_ref("TokenInfo")), "Tokens (never their secret)."),
                errors=(401,),
            )
        },
        "/api/tokens/{id}": {
            "delete": _op(
                "Revoke one of the caller's tokens",
                "account",
                (204, None, "Revoked."),
                errors=(401, 404),
                params=[_path_param("id", "integer")],
            )
        },
        "/api/challenges": {
            "get": _op(
                "Listed challenges",
                tag,
                (200, _array(_ref("Challenge")), "Every listed challenge."),
                auth="optional",
            )
        },
        "/api/challenges/{slug}": {
            "get": _op(
                "One challenge, with your quota once joined",
                tag,
                (200, _ref("Challenge"), "The challenge."),
                errors=(404,),
                auth="optional",
                params=[SLUG],
            )
        },
        "/api/challenges/{slug}/join": {
            "post": _op(
                "Join, accepting the rules and the data licence",
                tag,
                (200, _ref("Challenge"), "Joined (again is harmless)."),
                errors=(400, 401, 404),
                params=[SLUG],
                body={"required": True, "content": {JSON: {"schema": _ref("JoinRequest")}}},
            )
        },
        "/api/challenges/{slug}/files/{name}": {
            "get": _op(
                "Download a public file",
                tag,
                (200, None, "The file, as an attachment."),
                errors=(400, 401, 404),
                params=[
                    SLUG,
                    _path_param("name", description="`train.parquet` or `test.parquet`."),
                    _query(
                        "format",
                        "Convert on the way out.",
                        enum=["parquet", "csv", "hdf5", "root"],
                        default="parquet",
                    ),
                ],
            )
        },
        "/api/challenges/{slug}/submissions": {
            "post": _op(
                "Upload predictions",
                tag,
                (201, _ref("Submission"), "Received and queued for scoring."),
                errors=(400, 401, 403, 404, 413, 429),
                params=[
                    *sub_params,
                    _query("filename", "Raw-body uploads: the file's name (with suffix)."),
                    _query("message", "Raw-body uploads: a note for yourself."),
                    _query(
                        "phase",
                        "The open phase to submit to (default: the one that opened last).",
                    ),
                ],
                body={
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": _obj(
                                ["file"],
                                file={"type": "string", "contentMediaType": "text/csv"},
                                message={"type": "string"},
                                phase={"type": "string"},
                            )
                        },
                        "application/octet-stream": {"schema": {"type": "string"}},
                    },
                },
                description="Streamed to storage with the challenge's size cap. The daily quota "
                "is charged atomically; invalid files give their slot back. At most "
                "12 uploads per minute per participant.",
            ),
            "get": _op(
                "Your submissions to this challenge, newest first",
                tag,
                (200, _array(_ref("Submission")), "Your submissions."),
                errors=(401, 404),
                params=sub_params,
            ),
        },
        "/api/challenges/{slug}/leaderboard": {
            "get": _op(
                "A leaderboard",
                tag,
                (200, _ref("Leaderboard"), "Ranked entries."),
                errors=(400, 404),
                auth="optional",
                params=[
                    SLUG,
                    _query("phase", "Phase name; default: the phase taking submissions."),
                    _query(
                        "board",
                        "`private` is there once revealed.",
                        enum=["public", "private"],
                        default="public",
                    ),
                ],
            )
        },
        "/api/submissions/{id}": {
            "get": _op(
                "One of your submissions (poll it for the score)",
                tag,
                (200, _ref("Submission"), "The submission."),
                errors=(401, 404),
                params=[_path_param("id", "integer")],
            )
        },
        "/api/organize/challenges": {
            "get": _op(
                "The challenges you organize, with submission counts by status",
                org,
                (200, _array(_ref("OrganizedChallenge")), "Yours (all, for an admin)."),
                errors=(401, 404),
            )
        },
        "/api/challenges/{slug}/all-submissions": {
            "get": _op(
                "Every submission of a challenge you organize",
                org,
                (200, _array(_ref("OrganizerSubmission")), "Newest first."),
                errors=(400, 401, 404),
                params=[
                    SLUG,
                    _query("status", "Only this status, e.g. `error`."),
                    _query(
                        "limit",
                        "At most this many (default 500, max 5000).",
                        "integer",
                        minimum=1,
                        maximum=5000,
                    ),
                ],
            )
        },
        "/api/challenges/{slug}/reveal": {
            "post": _op(
                "Reveal the private leaderboard (cannot be undone)",
                org,
                (200, _ref("Reveal"), "Revealed (again is harmless)."),
                errors=(400, 401, 403, 404),
                params=[SLUG],
                body={"required": True, "content": {JSON: {"schema": _ref("RevealRequest")}}},
                description="Refused (403) while any phase that ranks on the private test rows "
                "has not closed, and before the bundle's reveal date unless an admin gives a "
                "reason; `confirm` must be the slug (docs/leaderboards.md).",
            )
        },
    }


def _evalai_paths() -> dict[str, Any]:
    tag = "evalai"
    page = (200, _ref("EvalAIPage"), "A page of results, EvalAI's shape.")
    obj = (200, _ref("EvalAIObject"), "EvalAI's object shape.")
    cid = _path_param("challenge_id", "integer", "Podium's challenge id.")
    pid = _path_param("phase_id", "integer", "Podium's phase id.")
    team = _path_param(
        "team_id", "integer", "One of your team ids, or your user id (see participant_team)."
    )
    upload = _path_param("upload_id", "integer", "The `submission_pk` of a large upload.")
    # The statuses whose `error` the EvalAI CLI prints (challenge.evalai.CLI_SHOWN_STATUSES).
    err = {
        "400": _json(_ref("EvalAIError"), "Refused; `error` says why."),
        "401": _json(_ref("EvalAIError"), "No valid token; `detail` is `Invalid token`."),
        "403": _json(_ref("EvalAIError"), "Not allowed now; `error` says why."),
        "406": _json(_ref("EvalAIError"), "Missing, over quota or too large; `error` says why."),
    }

    def op(summary: str, ok: tuple[int, dict[str, Any] | None, str], **kw: Any) -> dict[str, Any]:
        out = _op(summary, tag, ok, **kw)
        out["responses"].update(err)
        return out

    form = {
        "required": True,
        "content": {"multipart/form-data": {"schema": {"type": "object"}}},
    }
    return {
        "/api/auth/login": {
            "post": op(
                "EvalAI login: user name and password for a token",
                (200, _ref("EvalAIObject"), "`{token}`"),
                auth="none",
                body=form,
            )
        },
        "/api/accounts/user/get_auth_token": {
            "get": op("EvalAI: the token the CLI keeps", (200, _ref("EvalAIObject"), "`{token}`"))
        },
        "/api/challenges/challenge/{time}/{approval}/{visibility}": {
            "get": op(
                "EvalAI: challenges (all/all/all, past/approved/public, future/approved/public)",
                page,
                params=[
                    _path_param("time", description="`all`, `present`, `past` or `future`"),
                    _path_param("approval", description="ignored (`all` or `approved`)"),
                    _path_param("visibility", description="ignored (`all` or `public`)"),
                ],
                auth="optional",
            )
        },
        "/api/challenges/challenge/{challenge_id}": {
            "get": op("EvalAI: challenge details", obj, params=[cid], auth="optional")
        },
        "/api/challenges/challenge/{challenge_id}/challenge_phase": {
            "get": op("EvalAI: phases of a challenge", page, params=[cid], auth="optional")
        },
        "/api/challenges/challenge/{challenge_id}/challenge_phase/{phase_id}": {
            "get": op("EvalAI: one phase", obj, params=[cid, pid], auth="optional")
        },
        "/api/challenges/{challenge_id}/challenge_phase_split": {
            "get": op(
                "EvalAI: phase splits (each phase x public/private board)",
                (200, _array(_ref("EvalAIObject")), "Splits."),
                params=[cid],
                auth="optional",
            )
        },
        "/api/challenges/challenge/{challenge_id}/participant_team/{team_id}": {
            "post": op("EvalAI: participate (accepts the rules)", obj, params=[cid, team])
        },
        "/api/participants/participant_team": {
            "get": op("EvalAI: your participant teams (your Podium teams)", page)
        },
        "/api/participants/participant_team/{team_id}/challenge": {
            "get": op(
                "EvalAI: the team's challenge (your user id: all you joined)", page, params=[team]
            )
        },
        "/api/hosts/challenge_host_team/": {
            "get": op("EvalAI: your host team (organizers: yourself)", page)
        },
        "/api/challenges/challenge_host_team/{team_id}/challenge": {
            "get": op("EvalAI: challenges you organize", page, params=[team])
        },
        "/api/jobs/challenge/{challenge_id}/challenge_phase/{phase_id}/submission/": {
            "get": op("EvalAI: your submissions to a phase", page, params=[cid, pid]),
            "post": op(
                "EvalAI: submit a file (field `input_file`)",
                (201, _ref("EvalAIObject"), "The new submission."),
                params=[cid, pid],
                body=form,
                errors=(401, 404, 413, 429),
            ),
        },
        "/api/jobs/submission/{submission_id}": {
            "get": op(
                "EvalAI: one submission",
                obj,
                params=[_path_param("submission_id", "integer")],
                errors=(404,),
            )
        },
        "/api/jobs/challenge_phase_split/{split_id}/leaderboard/": {
            "get": op(
                "EvalAI: the leaderboard of a phase split",
                page,
                params=[_path_param("split_id", "integer", "2 x phase id - 1 (public) or 2 x id")],
                auth="optional",
            )
        },
        "/api/jobs/phases/{phase_id}/get_submission_file_presigned_url/": {
            "post": op(
                "EvalAI large upload, step 1: short-lived upload URLs",
                (201, _ref("EvalAIObject"), "`presigned_urls`, `upload_id`, `submission_pk`"),
                params=[pid],
                body=form,
                errors=(401, 404, 413, 429),
            )
        },
        "/api/evalai/uploads/{key}/{part}": {
            "put": op(
                "EvalAI large upload, step 2: one part, to a presigned URL (no auth header)",
                (200, None, "Stored; the `ETag` header names the part."),
                auth="none",
                params=[
                    _path_param("key", description="Unguessable; valid 30 minutes."),
                    _path_param("part", "integer"),
                ],
                body={
                    "required": True,
                    "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                },
                errors=(404, 413),
            )
        },
        "/api/jobs/phases/{phase_id}/finish_submission_file_upload/{upload_id}/": {
            "post": op(
                "EvalAI large upload, step 3: assemble the parts and queue the submission",
                obj,
                params=[pid, upload],
                body=form,
                errors=(401, 403, 404, 413, 429),
            )
        },
        "/api/jobs/phases/{phase_id}/send_submission_message/{upload_id}/": {
            "post": op(
                "EvalAI large upload, step 4: acknowledged (Podium queues at step 3)",
                obj,
                params=[pid, upload],
                errors=(401, 404),
            )
        },
    }


def build_openapi(base_url: str) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document for a site served at ``base_url``."""
    paths = {**_podium_paths(), **_evalai_paths()}
    for path, item in paths.items():
        for method, op in item.items():
            op["operationId"] = (
                method
                + "_"
                + "_".join(
                    part.strip("{}").replace(".", "_").replace("-", "_")
                    for part in path.removeprefix("/api/").strip("/").split("/")
                )
            )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Podium API",
            "version": "1",
            "summary": "Challenges, data, submissions and leaderboards; EvalAI-compatible routes.",
            "description": "Authenticate with `Authorization: Bearer <token>`; create a token on "
            "your account page, with `POST /api/auth/token`, or `podium login`. Errors are JSON "
            "`{error, message[, field]}` with an HTTP status. See docs/api.md.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": base_url.rstrip("/")}],
        "security": [{"bearer": []}],
        "tags": [
            {"name": "account", "description": "Tokens and the caller's account."},
            {"name": "participant", "description": "Challenges, data, submissions, boards."},
            {"name": "organizer", "description": "For organizers of a challenge and admins."},
            {"name": "evalai", "description": "What the unmodified `evalai` CLI calls."},
            {"name": "meta", "description": "About the API itself."},
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token (`pod_...`). `Token <token>` is accepted too.",
                }
            },
            "schemas": _schemas(),
        },
    }

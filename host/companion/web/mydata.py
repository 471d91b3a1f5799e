"""The wearer's own data on the dashboard: a download link and "delete my data" (from
/me/settings).  The download is the API's ``GET /api/workers/{id}/export?format=zip`` (it takes
the session cookie); the deletion is this form, through companion.datarights like
``DELETE /api/workers/{id}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, status
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from companion import datarights
from companion.api.deps import SESSION_COOKIE, get_session
from companion.web import csrf, signin
from companion.web.pages import _denied, _signed_in

router = APIRouter(include_in_schema=False)

CONFIRM = "delete everything"


@router.post("/me/delete")
def delete_my_data(
    request: Request,
    csrf_token: Annotated[str | None, Form(max_length=128)] = None,
    confirm: Annotated[str | None, Form(max_length=64)] = None,
    session: Session = Depends(get_session),
) -> Response:
    """Erase the signed-in wearer and everything about them, then sign them out."""
    principal = _signed_in(request, session)
    if principal.role != "worker" or principal.worker_id is None:
        return _denied(request, principal, "a wearer's own data (only the wearer may delete it here)")
    try:
        csrf.check_form_token(request, csrf_token)
    except csrf.ForgedForm as exc:
        return signin.refused_form_response(request, str(exc.detail))
    if (confirm or "").strip().lower() != CONFIRM:
        return signin.refused_form_response(
            request, f'Nothing was deleted: type "{CONFIRM}" in the box to confirm, then press the button.'
        )
    datarights.erase_worker(session, principal.worker_id)
    session.commit()
    response = RedirectResponse("/login?deleted=1", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response

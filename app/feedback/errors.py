"""Errors of the feedback domain; rendered as problem+json by the one handler in app.core.errors."""

from app.core.errors import Conflict, NotFound


class SurveyNotFound(NotFound):
    def __init__(self, survey_id: int) -> None:
        super().__init__(f"No survey answer with id {survey_id}.", survey_id=survey_id)


class ComplaintNotFound(NotFound):
    def __init__(self, complaint_id: int) -> None:
        super().__init__(f"No complaint with id {complaint_id}.", complaint_id=complaint_id)


class InvalidComplaintTransition(Conflict):
    def __init__(self, complaint_id: int, from_status: str, to_status: str, allowed: list[str]) -> None:
        moves = ", ".join(allowed) or "none"
        super().__init__(
            f"Complaint {complaint_id} is {from_status}; it cannot move to {to_status} (allowed: {moves}).",
            complaint_id=complaint_id,
            current_status=from_status,
            allowed=allowed,
        )

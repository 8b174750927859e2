"""Errors the tier-policy domain raises; rendered as problem+json by the one handler in app.core.errors."""

from app.core.errors import AppError, Conflict, NotFound, PreconditionFailed


class PreconditionRequired(AppError):
    """428: a write that needs If-Match (optimistic concurrency) arrived without it."""

    status, title, slug = 428, "Precondition required", "precondition-required"


class TierPolicyNotFound(NotFound):
    def __init__(self, key: str) -> None:
        super().__init__(f"No tier policy with key '{key}'.", key=key)


class TierPolicyVersionNotFound(NotFound):
    def __init__(self, key: str, version: int) -> None:
        super().__init__(f"Tier policy '{key}' has no version {version}.", key=key, version=version)


class TierPolicyKeyTaken(Conflict):
    def __init__(self, key: str) -> None:
        super().__init__(f"A tier policy with key '{key}' already exists.", key=key)


class VersionNotEditable(Conflict):
    def __init__(self, key: str, version: int, status: str) -> None:
        super().__init__(
            f"Version {version} of '{key}' is {status}; only a draft can be edited. "
            "Add a new version instead (POST .../versions with copy_from).",
            key=key,
            version=version,
            version_status=status,
        )


class InvalidVersionTransition(Conflict):
    def __init__(self, key: str, version: int, status: str, action: str) -> None:
        super().__init__(
            f"Version {version} of '{key}' is {status} and cannot be {action}.",
            key=key,
            version=version,
            version_status=status,
        )


class ActivationConflict(Conflict):
    def __init__(self, key: str) -> None:
        super().__init__(f"Another activation of '{key}' won the race; read the policy and retry.", key=key)


class IfMatchMissing(PreconditionRequired):
    def __init__(self) -> None:
        super().__init__("Editing a version requires an If-Match header with the ETag from GET .../versions/{v}.")


class StaleVersion(PreconditionFailed):
    def __init__(self, current_etag: str) -> None:
        super().__init__(
            "The version changed since you read it (the If-Match ETag is stale); read it again.",
            headers={"ETag": current_etag},
        )


class NoTierAssignment(NotFound):
    def __init__(self, policy_key: str) -> None:
        super().__init__(f"The customer has no tier under '{policy_key}' yet; evaluate it first.")


class NoOverride(NotFound):
    def __init__(self, policy_key: str) -> None:
        super().__init__(f"No override of the customer's tier under '{policy_key}' is in force.", key=policy_key)

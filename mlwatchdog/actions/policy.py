"""Governance: whether a rollback may go to its candidate. Pure; refusals are recorded by the
actuator, and the incident escalates instead of acting."""

from __future__ import annotations

from fnmatch import fnmatchcase

from mlwatchdog.actions.plan import Candidate
from mlwatchdog.rules.schema import Policy


def refusal(policy: Policy, candidate: Candidate) -> str:
    """Why `policy` does not allow `candidate` ('' when it does)."""
    for image in candidate.images if policy.allowed_images else ():
        if not any(fnmatchcase(image, pattern) for pattern in policy.allowed_images):
            return (
                f"{candidate.description}: image {image} matches none of "
                f"rollback.policy.allowed_images {policy.allowed_images}"
            )
    if policy.allowed_storage_uris:
        uri = candidate.storage_uri
        if uri is None:
            return (
                f"{candidate.description}: its storageUri could not be read, so it cannot be "
                "checked against rollback.policy.allowed_storage_uris"
            )
        if not any(fnmatchcase(uri, pattern) for pattern in policy.allowed_storage_uris):
            return (
                f"{candidate.description}: storageUri {uri} matches none of "
                f"rollback.policy.allowed_storage_uris {policy.allowed_storage_uris}"
            )
    approval = policy.approval
    if approval is not None and not candidate.from_config:
        if approval.label is not None:
            key, found, where = approval.label, candidate.labels.get(approval.label), "label"
        else:
            assert approval.annotation is not None
            key, where = approval.annotation, "annotation"
            found = candidate.annotations.get(approval.annotation)
        if found != approval.value:
            return (
                f"{candidate.description} is not approved: {where} {key}={approval.value} "
                f"is required, found {found!r}"
            )
    return ""

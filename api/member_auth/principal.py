"""Who a wallet page or a member API call is for, once authenticated."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID


@dataclass(frozen=True, slots=True)
class MemberPrincipal:
    member_id: int  # internal id: never shown to anyone
    public_id: UUID  # the id the member API speaks

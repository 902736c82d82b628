"""Who an admin API call is for, once authenticated, and what each role may do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["owner", "finance", "support", "marketing"]
ROLES: tuple[Role, ...] = ("owner", "finance", "support", "marketing")


@dataclass(frozen=True, slots=True)
class AdminPrincipal:
    admin_id: int
    email: str
    role: Role

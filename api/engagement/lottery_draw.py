"""The provably fair draw: pure functions of the seed and the ordered ticket
list, no I/O. docs/lottery-draw.md states the algorithm; the stand-alone
tools/verify_lottery_draw.py re-implements it with the standard library only,
and the tests hold the two to the same answers.

In short: the ticket list is canonicalised (one line per ticket in number
order) and hashed; each prize rank, in order, picks one of the tickets that
has not won yet by HMAC-SHA256(seed, list digest || rank || counter) read as
a 256-bit integer, with rejection sampling so that every remaining ticket is
exactly equally likely. A ticket wins at most once; a member with several
tickets may win several prizes (one per ticket), which keeps every ticket's
odds equal, free or paid.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

SEED_BYTES = 32
DRAW_FORMAT = "kring-lottery-draw/1"
HOLDER_TAG_HEX_LENGTH = 16
_SPACE = 1 << 256
_COUNTER_MAX = 1 << 32  # never reached: each try is accepted with probability > 1/2


@dataclass(frozen=True, slots=True)
class DrawTicket:
    number: int
    holder: str  # a pseudonymous tag of the ticket's holder (see `holder_tag`)


@dataclass(frozen=True, slots=True)
class Win:
    rank: int
    ticket_number: int


def new_seed() -> bytes:
    return secrets.token_bytes(SEED_BYTES)


def seed_sha256(seed: bytes) -> bytes:
    return hashlib.sha256(seed).digest()


def holder_tag(lottery_id: int, member_public_id: str) -> str:
    """Who holds a ticket, published without naming the member: the same tag
    for all of one member's tickets in one lottery, unrelated across lotteries."""
    text = f"kring-lottery-holder:{lottery_id}:{member_public_id}"
    return hashlib.sha256(text.encode()).hexdigest()[:HOLDER_TAG_HEX_LENGTH]


def canonical_ticket_list(tickets: Sequence[DrawTicket]) -> bytes:
    """One line per ticket, "<number>:<holder>\\n", numbers 1..n in order."""
    numbers = [t.number for t in tickets]
    if numbers != list(range(1, len(tickets) + 1)):
        raise ValueError("tickets must be numbered 1..n, in order")
    return "".join(f"{t.number}:{t.holder}\n" for t in tickets).encode()


def ticket_list_sha256(tickets: Sequence[DrawTicket]) -> bytes:
    return hashlib.sha256(canonical_ticket_list(tickets)).digest()


def pick_index(seed: bytes, list_digest: bytes, rank: int, population: int) -> int:
    """An index in [0, population), uniform, from HMAC-SHA256(seed, digest ||
    rank (4 bytes, big-endian) || counter (4 bytes, big-endian)): a 256-bit
    value at or above the largest multiple of `population` is rejected and
    the counter moves on, so no index is favoured by the modulo."""
    if population <= 0:
        raise ValueError("population must be positive")
    limit = _SPACE - _SPACE % population
    for counter in range(_COUNTER_MAX):
        message = list_digest + rank.to_bytes(4, "big") + counter.to_bytes(4, "big")
        value = int.from_bytes(hmac.new(seed, message, hashlib.sha256).digest(), "big")
        if value < limit:
            return value % population
    raise AssertionError("rejection sampling did not finish")  # probability < 2^-(2^32)


def draw_winners(seed: bytes, tickets: Sequence[DrawTicket], ranks: Sequence[int]) -> list[Win]:
    """Winners for the prize ranks (ascending), each a ticket that has not won
    yet; ranks beyond the number of tickets go unawarded."""
    if len(seed) != SEED_BYTES:
        raise ValueError(f"the seed is {SEED_BYTES} bytes")
    digest = ticket_list_sha256(tickets)
    remaining = [t.number for t in tickets]
    wins: list[Win] = []
    for rank in sorted(ranks):
        if not remaining:
            break
        index = pick_index(seed, digest, rank, len(remaining))
        wins.append(Win(rank, remaining.pop(index)))
    return wins

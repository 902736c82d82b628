#!/usr/bin/env python3
"""Verify a Kring lottery draw from its published JSON, with nothing but Python.

    python3 tools/verify_lottery_draw.py draw.json
    python3 tools/verify_lottery_draw.py https://kring.example/lotteries/7/draw.json

Checks, as docs/lottery-draw.md describes: the revealed seed hashes to the
seed hash published when sales opened; the ticket list is numbered 1..n and
hashes to the published digest; recomputing the winners from the seed and
the ticket list gives exactly the published winners. Prints what it checked;
exits 0 when everything matches, 1 on any mismatch, 2 when the file cannot
be read. Standard library only, on purpose: it imports nothing from Kring.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import urllib.request

FORMAT = "kring-lottery-draw/1"
SPACE = 1 << 256


def load(source: str) -> dict:
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=30) as response:
            return json.loads(response.read())
    with open(source, encoding="utf-8") as handle:
        return json.load(handle)


def ticket_list_digest(tickets: list) -> bytes:
    canonical = "".join(f"{int(t['number'])}:{t['holder']}\n" for t in tickets)
    return hashlib.sha256(canonical.encode()).digest()


def pick_index(seed: bytes, digest: bytes, rank: int, population: int) -> int:
    limit = SPACE - SPACE % population
    counter = 0
    while True:
        message = digest + rank.to_bytes(4, "big") + counter.to_bytes(4, "big")
        value = int.from_bytes(hmac.new(seed, message, hashlib.sha256).digest(), "big")
        if value < limit:
            return value % population
        counter += 1


def winners(seed: bytes, tickets: list, ranks: list) -> list:
    digest = ticket_list_digest(tickets)
    remaining = [int(t["number"]) for t in tickets]
    holder = {int(t["number"]): t["holder"] for t in tickets}
    found = []
    for rank in sorted(ranks):
        if not remaining:
            break
        number = remaining.pop(pick_index(seed, digest, rank, len(remaining)))
        found.append({"rank": rank, "ticket_number": number, "holder": holder[number]})
    return found


def verify(draw: dict) -> list:
    """The list of problems found; empty when the draw checks out."""
    problems = []
    if draw.get("format") != FORMAT:
        problems.append(f"unknown format {draw.get('format')!r} (expected {FORMAT})")
    seed = bytes.fromhex(draw["seed"])
    if hashlib.sha256(seed).hexdigest() != draw["seed_sha256"]:
        problems.append("the seed does not hash to the published seed hash")
    tickets = draw["tickets"]
    if [int(t["number"]) for t in tickets] != list(range(1, len(tickets) + 1)):
        problems.append("tickets are not numbered 1..n in order")
    if ticket_list_digest(tickets).hex() != draw["ticket_list_sha256"]:
        problems.append("the ticket list does not hash to the published ticket list digest")
    expected = winners(seed, tickets, [int(p["rank"]) for p in draw["prizes"]])
    published = [
        {"rank": int(w["rank"]), "ticket_number": int(w["ticket_number"]), "holder": w["holder"]}
        for w in draw["winners"]
    ]
    if expected != published:
        problems.append(f"the winners differ: recomputed {expected}, published {published}")
    return problems


def main(argv: list) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    try:
        draw = load(argv[1])
    except (OSError, ValueError) as exc:
        print(f"cannot read {argv[1]}: {exc}", file=sys.stderr)
        return 2
    try:
        problems = verify(draw)
    except (KeyError, TypeError, ValueError) as exc:
        problems = [f"the draw document is malformed: {exc!r}"]
    if problems:
        for problem in problems:
            print(f"MISMATCH: {problem}")
        return 1
    lottery = draw.get("lottery", {})
    print(
        f"OK: lottery {lottery.get('id')} ({lottery.get('name')}), {len(draw['tickets'])} tickets"
    )
    print(f"  seed {draw['seed']} hashes to the published {draw['seed_sha256']}")
    print(f"  ticket list digest {draw['ticket_list_sha256']}")
    for w in draw["winners"]:
        print(f"  rank {w['rank']}: ticket {w['ticket_number']} (holder {w['holder']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

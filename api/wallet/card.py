"""The member's card as pictures: a Code 128 barcode and QR codes, as inline SVG.

python-barcode does the Code 128 encoding (code set choice, check symbol);
the SVG is drawn here as one path with presentation attributes only, so it
renders under a Content-Security-Policy without 'unsafe-inline' (the
library's own SVG writer styles every bar with a `style` attribute).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import asyncpg
import barcode  # type: ignore[import-untyped]  # python-barcode ships no type hints
import segno
from markupsafe import Markup

BARCODE_HEIGHT_MODULES = 48  # tall enough for a handheld laser at arm's length
BARCODE_QUIET_MODULES = 10  # Code 128 wants at least 10 modules of white each side
QR_BORDER_MODULES = 4  # the quiet zone ISO 18004 asks for


def card_number_groups(card_number: str) -> str:
    """6048123412341234 -> "6048 1234 1234 1234", as printed on plastic cards."""
    return " ".join(card_number[i : i + 4] for i in range(0, len(card_number), 4))


def code128_svg(text: str, *, label: str) -> Markup:
    modules = barcode.get("code128", text).build()[0]
    width = len(modules) + 2 * BARCODE_QUIET_MODULES
    runs: list[str] = []
    x = 0
    while x < len(modules):
        if modules[x] == "1":
            end = x
            while end < len(modules) and modules[end] == "1":
                end += 1
            runs.append(
                f"M{x + BARCODE_QUIET_MODULES} 0h{end - x}v{BARCODE_HEIGHT_MODULES}h-{end - x}z"
            )
            x = end
        else:
            x += 1
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="barcode" role="img" '
        f'viewBox="0 0 {width} {BARCODE_HEIGHT_MODULES}" preserveAspectRatio="none" '
        f'shape-rendering="crispEdges"><title>{Markup.escape(label)}</title>'
        f'<rect width="{width}" height="{BARCODE_HEIGHT_MODULES}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(runs)}"/></svg>'
    )


def qr_svg(text: str, *, label: str, css_class: str = "qr") -> Markup:
    qr = segno.make_qr(text, error="m")
    out = io.BytesIO()
    qr.save(
        out,
        kind="svg",
        xmldecl=False,
        svgns=True,
        border=QR_BORDER_MODULES,
        omitsize=True,
        title=label,
        dark="#000",
        light="#fff",
        svgclass=css_class,
        lineclass=None,
    )
    svg = out.getvalue().decode()
    # An image with a name: screen readers say "QR code of your card", not "group".
    return Markup(svg.replace("<svg ", '<svg role="img" shape-rendering="crispEdges" ', 1))


@dataclass(frozen=True, slots=True)
class CardHolder:
    card_number: str
    display_name: str | None


async def card_holder(db: asyncpg.Pool, member_id: int) -> CardHolder | None:
    row = await db.fetchrow(
        "SELECT card_number, display_name FROM members WHERE id = $1 AND status = 'active'",
        member_id,
    )
    return None if row is None else CardHolder(row["card_number"], row["display_name"])

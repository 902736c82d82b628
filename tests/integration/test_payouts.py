"""Payouts from a settlement run: the partners a settled day owes money, paid
in a pain.001 file that validates against the schema, or flagged with the
reason when their bank details cannot be paid to. The clock is the test's."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from importlib.resources import files
from xml.etree import ElementTree

import pytest
import xmlschema

from api.errors import DomainError
from api.ledger.lots import release_due
from api.settlement.payouts import (
    PAIN001_SCHEMA,
    DebtorAccount,
    build_pain001,
    payouts_for_run,
)
from api.settlement.periods import business_date, day_end
from api.settlement.run import settle_day

NS = {"p": f"urn:iso:std:iso:20022:tech:xsd:{PAIN001_SCHEMA}"}
DEBTOR = DebtorAccount("Kring B.V.", "NL91ABNA0417164300", "ABNANL2A")
PRICE_MICROS = 8_000  # what the programme pays per point burned: 0.8 cent


def validate(xml: bytes) -> ElementTree.Element:
    xsd = files("sepaxml") / "schemas" / f"{PAIN001_SCHEMA}.xsd"
    xmlschema.XMLSchema(str(xsd)).validate(xml.decode())
    return ElementTree.fromstring(xml)


def transfers(root: ElementTree.Element) -> dict[str, tuple[str, str, str]]:
    """End-to-end id -> (IBAN, amount, remittance) of every transfer in the file."""
    found = {}
    for tx in root.iterfind(".//p:CdtTrfTxInf", NS):
        found[tx.findtext("p:PmtId/p:EndToEndId", namespaces=NS) or ""] = (
            tx.findtext("p:CdtrAcct/p:Id/p:IBAN", namespaces=NS) or "",
            tx.findtext("p:Amt/p:InstdAmt", namespaces=NS) or "",
            tx.findtext("p:RmtInf/p:Ustrd", namespaces=NS) or "",
        )
    return found


async def positive_nets(pool, day: date) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT p.code, s.net_cents FROM statements s"
        " JOIN settlement_runs r ON r.id = s.run_id JOIN partners p ON p.id = s.partner_id"
        " WHERE r.business_date = $1 AND s.net_cents > 0",
        day,
    )
    return {r["code"]: r["net_cents"] for r in rows}


async def test_a_settled_day_pays_exactly_the_partners_it_owes(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner(
        code="pay-shop",
        return_window_days=0,
        iban="BE71096123456769",
        account_holder="Shop NV",
    )
    books = await make_partner(
        code="pay-books",
        redemption_price_micros=PRICE_MICROS,
        iban="DE89 3704 0044 0532 0130 00",
        account_holder="Bücher GmbH",
    )
    cafe = await make_partner(
        code="pay-cafe",
        redemption_price_micros=PRICE_MICROS,
        iban="NL91ABNA0417164300",
        account_holder="Café Zoë",
    )
    kiosk = await make_partner(code="pay-kiosk", redemption_price_micros=PRICE_MICROS)
    broken = await make_partner(
        code="pay-broken",
        redemption_price_micros=PRICE_MICROS,
        iban="NL44RABO0123456789",
        account_holder="Broken BV",
    )
    # Stored details are checked again when paid: these check digits are wrong
    # (the format still passes the column's CHECK).
    await pool.execute(
        "UPDATE partners SET iban = 'NL45RABO0123456789' WHERE id = $1", broken.partner_id
    )
    card = await make_member()
    async with client_for(shop) as a:
        await a.earn(card_number=card, amount_cents=100_000, currency="EUR")  # 1,000 points
    await release_due(pool, clock.now())
    burns = {books: 250, cafe: 125, kiosk: 50, broken: 30}
    for partner, points in burns.items():
        async with client_for(partner) as client:
            await client.burn(card_number=card, points=points)
    day = business_date(clock.now())
    clock.set(day_end(day) + timedelta(hours=1))
    await settle_day(pool, day, clock.now())

    run = await payouts_for_run(pool, day)

    assert [(p.partner_code, p.amount_cents) for p in run.payouts] == [
        ("pay-books", 200),
        ("pay-cafe", 100),
    ]
    assert [(f.partner_code, f.code, f.amount_cents) for f in run.flagged] == [
        ("pay-broken", "invalid_iban", 24),
        ("pay-kiosk", "missing_iban", 40),
    ]
    # Everything the day's statements owe is paid or flagged, nothing else;
    # the shop owes the programme for the points it issued and is neither.
    nets = await positive_nets(pool, day)
    assert {p.partner_code: p.amount_cents for p in run.payouts + run.flagged} == nets
    assert "pay-shop" not in nets

    xml = build_pain001(
        DEBTOR, run.payouts, execution_date=date(2026, 3, 4), message_id=run.message_id
    )
    root = validate(xml)
    header = root.find("p:CstmrCdtTrfInitn/p:GrpHdr", NS)
    assert header is not None
    assert header.findtext("p:MsgId", namespaces=NS) == f"KRING-PAYOUT-{day:%Y%m%d}"
    assert header.findtext("p:NbOfTxs", namespaces=NS) == "2"
    assert header.findtext("p:CtrlSum", namespaces=NS) == "3.00"
    paid = transfers(root)
    assert paid == {
        f"KRING-{day:%Y%m%d}-pay-books": (
            "DE89370400440532013000",
            "2.00",
            f"KRING {day} pay-books",
        ),
        f"KRING-{day:%Y%m%d}-pay-cafe": ("NL91ABNA0417164300", "1.00", f"KRING {day} pay-cafe"),
    }
    control_sum = Decimal(header.findtext("p:CtrlSum", namespaces=NS) or "")
    assert sum(Decimal(amount) for _, amount, _ in paid.values()) == control_sum
    assert control_sum * 100 == run.payout_cents


async def test_a_day_without_a_run_is_refused(pool, clock):
    tomorrow = business_date(clock.now())  # the test above settled the day before
    with pytest.raises(DomainError) as caught:
        await payouts_for_run(pool, tomorrow)
    assert caught.value.code == "period_not_settled"
    assert str(tomorrow) in caught.value.detail


async def test_a_weekly_partner_is_paid_on_its_weeks_run_day_only(
    make_partner, make_member, client_for, pool, clock
):
    tuesday = business_date(clock.now())
    assert tuesday.isoweekday() == 2, "the module's clock starts on a Monday"
    shop = await make_partner(code="week-shop", return_window_days=0)
    daily = await make_partner(
        code="week-daily",
        redemption_price_micros=PRICE_MICROS,
        iban="NL69INGB0123456789",
        account_holder="Daily BV",
    )
    weekly = await make_partner(
        code="week-weekly",
        redemption_price_micros=PRICE_MICROS,
        settlement_period="weekly",
        iban="NL70TRIO0123456789",
        account_holder="Weekly BV",
    )
    card = await make_member()
    async with client_for(shop) as a:
        await a.earn(card_number=card, amount_cents=50_000, currency="EUR")  # 500 points
    await release_due(pool, clock.now())
    for weekday in (tuesday, tuesday + timedelta(days=2)):  # Tuesday and Thursday
        clock.set(day_end(weekday) - timedelta(hours=12))
        async with client_for(daily) as d, client_for(weekly) as w:
            await d.burn(card_number=card, points=10)
            await w.burn(card_number=card, points=100)
    sunday = tuesday + timedelta(days=5)
    clock.set(day_end(sunday) + timedelta(hours=1))

    paid: dict[date, dict[str, int]] = {}
    for offset in range(6):  # Tuesday to Sunday, in order
        day = tuesday + timedelta(days=offset)
        await settle_day(pool, day, clock.now())
        run = await payouts_for_run(pool, day)
        assert not run.flagged
        paid[day] = {p.partner_code: p.amount_cents for p in run.payouts}

    assert paid[tuesday] == {"week-daily": 8}
    assert paid[tuesday + timedelta(days=2)] == {"week-daily": 8}
    # The week's two burns, in one payout on the Sunday that closes the week.
    assert paid[sunday] == {"week-weekly": 160}
    assert all("week-weekly" not in paid[day] for day in paid if day != sunday)
    root = validate(
        build_pain001(
            DEBTOR,
            (await payouts_for_run(pool, sunday)).payouts,
            execution_date=sunday + timedelta(days=1),
            message_id=f"KRING-PAYOUT-{sunday:%Y%m%d}",
        )
    )
    assert transfers(root) == {
        f"KRING-{sunday:%Y%m%d}-week-weekly": (
            "NL70TRIO0123456789",
            "1.60",
            f"KRING {sunday} week-weekly",
        )
    }

"""Who is in the demo: six partners with their own terms and trade, and
members with names, habits and favourite shops.

Pure data and random draws, no database: the same seed gives the same
coalition. Amounts are integer cents; rates are millipoints per euro.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from api.clock import add_months
from api.coalition.partners import NewPartner

DAYS_OF_HISTORY = 365
# The programme launched this long before the demo year: the launch
# customers' points, 36 months later, are the demo's expired points.
LAUNCH_MONTHS_BEFORE_END = 40
LAUNCH_WEEKS = 2
FOUNDER_PERCENT = 6
FOUNDERS_MIN = 2
EARLY_JOINER_PERCENT = 35
EARLY_JOIN_DAYS = 30
DEBTORS = 2  # members left owing points after a refund, so debt shows
MEMBERS_MIN = 10
MEMBERS_MAX = 20_000


@dataclass(frozen=True, slots=True)
class DemoPartner:
    code: str
    name: str
    kind: str
    earn_rate_millipoints_per_euro: int
    issuance_price_micros: int
    redemption_price_micros: int
    return_window_days: int
    # (low, mode, high) of a basket, in cents.
    basket_cents: tuple[int, int, int]
    # How often a member who counts this shop among their favourites comes by.
    visits_per_week: float
    # Opening hours in UTC, [open, close).
    hours_utc: tuple[int, int]
    # Monday .. Sunday.
    weekday_weights: tuple[float, float, float, float, float, float, float]
    # How readily members pay with points here (1 = average).
    burn_appeal: float
    # Of paying with points here, weights of: one-step burn, hold then capture
    # (all or part), hold then void, hold left to lapse.
    burn_modes: tuple[int, int, int, int]
    return_percent: float
    # Returns come back this many days after the purchase (at least one).
    return_after_days: tuple[int, int]
    stores: tuple[str, ...]
    receipt_prefix: str
    # None: in the coalition since launch; else joined this many days ago.
    joined_days_ago: int | None = None
    drivers_only: bool = False
    # Where the programme pays the partner (valid demo IBANs, not real
    # accounts); None: no bank details on file, so its payouts are flagged.
    iban: str | None = None
    account_holder: str | None = None

    def new_partner(self) -> NewPartner:
        return NewPartner(
            code=self.code,
            name=self.name,
            kind=self.kind,
            earn_rate_millipoints_per_euro=self.earn_rate_millipoints_per_euro,
            issuance_price_micros=self.issuance_price_micros,
            redemption_price_micros=self.redemption_price_micros,
            return_window_days=self.return_window_days,
            iban=self.iban,
            account_holder=self.account_holder,
        )


PARTNERS: tuple[DemoPartner, ...] = (
    DemoPartner(
        code="versmarkt",
        name="Versmarkt",
        kind="supermarket",
        earn_rate_millipoints_per_euro=1_000,
        issuance_price_micros=10_000,
        redemption_price_micros=8_000,
        return_window_days=14,
        basket_cents=(1_000, 3_200, 12_000),
        visits_per_week=1.8,
        hours_utc=(7, 20),
        weekday_weights=(0.8, 0.8, 0.9, 0.9, 1.2, 1.7, 0.5),
        burn_appeal=1.0,
        burn_modes=(85, 0, 15, 0),
        return_percent=1.5,
        return_after_days=(1, 6),
        stores=("versmarkt-utrecht-centrum", "versmarkt-amersfoort-zuid", "versmarkt-zeist"),
        receipt_prefix="VM",
        iban="NL44RABO0123456789",
        account_holder="Versmarkt B.V.",
    ),
    DemoPartner(
        code="tankpunt",
        name="Tankpunt",
        kind="fuel_station",
        earn_rate_millipoints_per_euro=500,
        issuance_price_micros=9_000,
        redemption_price_micros=8_000,
        return_window_days=2,
        basket_cents=(3_000, 6_000, 9_000),
        visits_per_week=0.8,
        hours_utc=(5, 21),
        weekday_weights=(1.1, 1.0, 1.0, 1.1, 1.3, 0.8, 0.6),
        burn_appeal=0.4,
        burn_modes=(20, 65, 15, 0),  # a pump pre-authorizes, then captures what was tanked
        return_percent=0.5,
        return_after_days=(1, 3),
        stores=("tankpunt-a12-bunnik", "tankpunt-utrecht-west", "tankpunt-a28-de-bilt"),
        receipt_prefix="TP",
        drivers_only=True,
        iban="NL69INGB0123456789",
        account_holder="Tankpunt Nederland B.V.",
    ),
    DemoPartner(
        code="boekhuis-lindeboom",
        name="Boekhuis Lindeboom",
        kind="bookshop",
        earn_rate_millipoints_per_euro=1_000,
        issuance_price_micros=10_000,
        redemption_price_micros=8_500,
        return_window_days=14,
        basket_cents=(800, 1_900, 4_500),
        visits_per_week=0.3,
        hours_utc=(9, 17),
        weekday_weights=(0.4, 0.9, 0.9, 1.0, 1.2, 2.0, 0.6),
        burn_appeal=0.8,
        burn_modes=(90, 0, 10, 0),
        return_percent=3.0,
        return_after_days=(2, 12),
        stores=("lindeboom-oudegracht",),
        receipt_prefix="BL",
        iban="NL70TRIO0123456789",
        account_holder="Boekhuis Lindeboom V.O.F.",
    ),
    DemoPartner(
        code="cinema-lumiere",
        name="Cinema Lumière",
        kind="cinema",
        earn_rate_millipoints_per_euro=2_000,
        issuance_price_micros=11_000,
        redemption_price_micros=7_000,
        return_window_days=1,
        basket_cents=(900, 1_450, 3_000),
        visits_per_week=0.3,
        hours_utc=(12, 21),
        weekday_weights=(0.5, 0.7, 0.8, 0.9, 1.6, 2.0, 1.5),
        burn_appeal=1.8,
        burn_modes=(20, 55, 15, 10),  # seats are reserved with a hold; some never show
        return_percent=1.0,
        return_after_days=(1, 2),
        stores=("lumiere-vredenburg",),
        receipt_prefix="CL",
        iban="NL12SNSB0123456789",
        account_holder="Stichting Cinema Lumière",
    ),
    DemoPartner(
        code="stijl-online",
        name="Stijl Online",
        kind="online_fashion",
        earn_rate_millipoints_per_euro=1_000,
        issuance_price_micros=12_000,
        redemption_price_micros=8_000,
        return_window_days=30,
        basket_cents=(2_500, 6_500, 20_000),
        visits_per_week=0.2,
        hours_utc=(6, 23),
        weekday_weights=(1.1, 0.9, 0.9, 0.9, 0.9, 0.9, 1.5),
        burn_appeal=0.6,
        burn_modes=(15, 65, 15, 5),
        return_percent=25.0,
        return_after_days=(3, 26),
        stores=("webshop",),
        receipt_prefix="SO",
        joined_days_ago=270,
        iban="NL23BUNQ0123456789",
        account_holder="Stijl Online B.V.",
    ),
    DemoPartner(
        code="cafe-de-hoek",
        name="Café De Hoek",
        kind="cafe",
        earn_rate_millipoints_per_euro=1_500,
        issuance_price_micros=10_000,
        redemption_price_micros=9_000,
        return_window_days=0,
        basket_cents=(300, 650, 1_800),
        visits_per_week=1.2,
        hours_utc=(6, 17),
        weekday_weights=(1.0, 1.0, 1.0, 1.0, 1.1, 1.4, 1.2),
        burn_appeal=1.3,
        burn_modes=(95, 0, 5, 0),
        return_percent=0.0,
        return_after_days=(1, 1),
        stores=("de-hoek-neude",),
        receipt_prefix="DH",
        joined_days_ago=150,
        iban=None,  # new, and has not sent its bank details yet: its payouts are flagged
    ),
)
PARTNERS_BY_CODE = {p.code: p for p in PARTNERS}
# How often people pick each shop as a favourite.
FAVOURITE_WEIGHTS = {
    "versmarkt": 6.0,
    "tankpunt": 3.0,
    "boekhuis-lindeboom": 1.5,
    "cinema-lumiere": 2.0,
    "stijl-online": 1.5,
    "cafe-de-hoek": 2.5,
}

FIRST_NAMES = (
    "Sanne", "Daan", "Emma", "Lucas", "Julia", "Sem", "Lotte", "Finn", "Anouk", "Bram",
    "Fleur", "Jesse", "Iris", "Thijs", "Noor", "Ruben", "Eva", "Lars", "Femke", "Milan",
    "Sophie", "Niels", "Lieke", "Joris", "Marloes", "Koen", "Esther", "Wouter", "Zoë", "Pieter",
    "Hanneke", "Gijs", "Yara", "Mohamed", "Fatima", "Sven", "Ilse", "Jeroen", "Nina", "Tim",
    "Ayşe", "Kevin", "Maartje", "Stijn", "Roos", "Hendrik", "Wilma", "Kees", "Ingrid", "Dewi",
)  # fmt: skip
SURNAMES = (
    "de Vries", "Jansen", "van den Berg", "Bakker", "Visser", "Smit", "Meijer", "de Boer",
    "Mulder", "de Groot", "Bos", "Vos", "Peters", "Hendriks", "van Leeuwen", "Dekker",
    "Brouwer", "de Wit", "Dijkstra", "Smits", "de Graaf", "van der Meer", "Kok", "Jacobs",
    "de Haan", "Vermeulen", "van Dijk", "Schouten", "van der Linden", "Hoekstra", "Koster",
    "Prins", "Postma", "Kuipers", "Öztürk", "El Amrani", "Wijaya", "Verhoeven", "Willems",
    "Lindeboom",
)  # fmt: skip
EMAIL_DOMAINS = ("example.nl", "example.org", "example.nl", "example.nl")

# Rhythms: (share in percent, activity multiplier range).
RHYTHMS = {
    "frequent": (25, (1.1, 1.6)),
    "regular": (45, (0.45, 0.9)),
    "occasional": (30, (0.08, 0.3)),
}
DRIVER_PERCENT = 55
CROSS_SHOPPER_PERCENT = 30
OTHER_SHOP_AFFINITY = 0.06  # how often a member tries a shop outside their favourites
CROSS_SHOP_AFFINITY = 0.25


@dataclass(slots=True)
class Person:
    """A demo member as drawn: who they are, when they joined, how they shop."""

    index: int
    display_name: str
    email: str
    joined_at: datetime
    rhythm: str
    founder: bool
    dormant: bool  # a launch customer who stopped coming: their points expire
    debtor: bool
    activity: float
    affinity: dict[str, float]
    home_store: dict[str, str]
    burn_appetite: float  # chance of paying with points on a visit, before shop appeal
    burn_min_points: int  # saves at least this much before spending
    seed: int
    favourites: tuple[str, ...]


def launch_of(end: datetime) -> datetime:
    return add_months(end, -LAUNCH_MONTHS_BEFORE_END).replace(
        hour=8, minute=0, second=0, microsecond=0
    )


def year_start_of(end: datetime) -> datetime:
    """Midnight (UTC) starting the first day of the demo year."""
    return (end - timedelta(days=DAYS_OF_HISTORY)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )


def partner_joined_at(partner: DemoPartner, end: datetime) -> datetime:
    """Founding partners signed a month before the launch; others joined later."""
    if partner.joined_days_ago is None:
        return launch_of(end) - timedelta(days=30)
    joined = end - timedelta(days=partner.joined_days_ago)
    return joined.replace(hour=9, minute=0, second=0, microsecond=0)


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in ascii_text.lower() if c.isalnum())


def draw_people(rng: random.Random, count: int, end: datetime) -> list[Person]:
    if not MEMBERS_MIN <= count <= MEMBERS_MAX:
        raise ValueError(f"the demo needs {MEMBERS_MIN} to {MEMBERS_MAX} members, not {count}")
    launch = launch_of(end)
    start = year_start_of(end)
    founders = max(FOUNDERS_MIN, count * FOUNDER_PERCENT // 100)
    rhythm_names = list(RHYTHMS)
    rhythm_weights = [RHYTHMS[r][0] for r in rhythm_names]
    emails: set[str] = set()
    people: list[Person] = []
    for index in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(SURNAMES)
        local = f"{_slug(first)}.{_slug(last)}"
        domain = rng.choice(EMAIL_DOMAINS)
        email, suffix = f"{local}@{domain}", 2
        while email in emails:
            email, suffix = f"{local}{suffix}@{domain}", suffix + 1
        emails.add(email)

        founder = index < founders
        if founder:
            day = rng.randrange(LAUNCH_WEEKS * 7)
            joined_at = launch.replace(hour=0) + timedelta(days=day, hours=rng.uniform(7, 19))
        else:
            # A sign-up drive at the start of the year, then a steady trickle.
            if rng.randrange(100) < EARLY_JOINER_PERCENT:
                day = rng.randrange(EARLY_JOIN_DAYS)
            else:
                day = rng.randrange(DAYS_OF_HISTORY)
            joined_at = start + timedelta(days=day, hours=rng.uniform(7, 19))
            joined_at = min(joined_at, end - timedelta(hours=1))
        rhythm = rng.choices(rhythm_names, rhythm_weights)[0]
        low, high = RHYTHMS[rhythm][1]
        driver = rng.randrange(100) < DRIVER_PERCENT
        choices = {
            code: weight
            for code, weight in FAVOURITE_WEIGHTS.items()
            if driver or not PARTNERS_BY_CODE[code].drivers_only
        }
        favourites: list[str] = []
        for _ in range(rng.choice((1, 2, 2, 3, 3))):
            pool = {c: w for c, w in choices.items() if c not in favourites}
            favourites.append(rng.choices(list(pool), list(pool.values()))[0])
        other = (
            CROSS_SHOP_AFFINITY
            if rng.randrange(100) < CROSS_SHOPPER_PERCENT
            else OTHER_SHOP_AFFINITY
        )
        affinity = {code: 1.0 if code in favourites else other for code in choices}
        people.append(
            Person(
                index=index,
                display_name=f"{first} {last}",
                email=email,
                joined_at=joined_at,
                rhythm=rhythm,
                founder=founder,
                # The first launch customer always stops coming, so expiry always shows.
                dormant=founder and (index == 0 or rng.random() < 0.5),
                debtor=False,
                activity=rng.uniform(low, high),
                affinity=affinity,
                home_store={p.code: rng.choice(p.stores) for p in PARTNERS},
                burn_appetite=rng.uniform(0.05, 0.45),
                burn_min_points=rng.choice((100, 200, 300, 500, 800, 1_200)),
                seed=rng.getrandbits(64),
                favourites=tuple(favourites),
            )
        )
    # Debtors: members of some standing, not launch customers.
    candidates = [p for p in people if not p.founder and p.joined_at < start + timedelta(days=250)]
    for person in rng.sample(candidates, min(DEBTORS, len(candidates))):
        person.debtor = True
    return people


@dataclass(frozen=True, slots=True)
class DemoCharity:
    """A charity members can give points to (valid demo IBANs, not real accounts)."""

    key: str
    name: str
    description: str
    iban: str
    account_holder: str
    anbi: bool
    # How often a giving member picks this charity.
    weight: float

    @property
    def logo_url(self) -> str:
        return f"https://kring.example/logos/{self.key}.png"


CHARITIES: tuple[DemoCharity, ...] = (
    DemoCharity(
        key="foodbank",
        name="Voedselbank Utrecht",
        description="Food parcels every week for households in Utrecht who cannot make ends meet.",
        iban="NL81RABO0312345678",
        account_holder="Stichting Voedselbank Utrecht",
        anbi=True,
        weight=5.0,
    ),
    DemoCharity(
        key="naturefund",
        name="Natuurfonds Heuvelrug",
        description="Heathland, forest and fens on the Utrechtse Heuvelrug, kept wild.",
        iban="NL20INGB0001234567",
        account_holder="Stichting Natuurfonds Heuvelrug",
        anbi=True,
        weight=3.0,
    ),
    DemoCharity(
        key="childrens-hospital",
        name="Vrienden van het Kinderziekenhuis",
        description="Toys, a play room and parents' beds for the children's ward.",
        iban="NL83ABNA0412345678",
        account_holder="Vereniging Vrienden van het Kinderziekenhuis",
        anbi=False,
        weight=2.0,
    ),
)
# The supermarket matches members' gifts to the food bank 1:1, for the demo
# year, up to this many points per demo member: the budget runs out during the year.
MATCHING_PARTNER = "versmarkt"
MATCHED_CHARITY = "foodbank"
MATCHING_BUDGET_POINTS_PER_MEMBER = 20

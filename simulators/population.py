"""One synthetic population, generated on demand from a seed, consistent across the five administrations.

Nothing is stored: a household is regenerated from ``(seed, household index)`` whenever it is needed, so a
population of 12.5 million people costs the same memory as one of ten thousand.

Identifiers are derived from the household index and the member's *slot* (0 father, 1 mother, 2.. children)
by a keyed permutation (a 4-round Feistel network over 30 bits, cycle-walked into range):

* IDCS = 9-digit ``permute(index*16 + slot)`` + a Luhn check digit. Decoding inverts the permutation; an
  IDCS whose check digit is wrong, or whose household index or slot lies outside the population, is
  simply unknown — never invented.
* CIN (adults only) = 2 letters + 6 digits, from a second permutation over 676 million values.

The first households are *fixtures* with known outcomes (see ``FIXTURES``) for tests and the demo.

The RSU (Registre Social Unifié) registration of a household — its id, dates and socio-economic index — is
drawn from its own random stream, so it never changes the household's people. Fixtures fix it by hand;
every other household follows the rule in ``Population._registration`` (also in docs/fixtures.md).
"""

from __future__ import annotations

import hashlib
import hmac
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache

from simulators.names import EMPLOYERS, FEMALE_FIRST, LAST, MALE_FIRST, REGIONS, SCHOOL_NAMES

REFERENCE_DATE = date(2026, 9, 1)  # ages are drawn relative to this fixed date, so identities never drift
SLOTS = 16
_IDCS_DOMAIN = 10**9
_CIN_DOMAIN = 676 * 10**6
# Every (household, slot) pair needs a distinct CIN: the CIN space bounds the population (169 M people).
MAX_HOUSEHOLDS = _CIN_DOMAIN // SLOTS - 1
# Socio-economic index thresholds the fixtures are placed against (the gateway reads its own from config):
ASD_THRESHOLD = 9.743001  # direct social support (ASD): index at or below
AMO_TADAMON_THRESHOLD = 9.3264284  # AMO Tadamon health cover
_INDEX_SCALE = 10**7  # indexes carry 7 decimals
_RSU_OPENED = date(2022, 10, 1)  # generated registrations fall between these two dates
_RSU_LAST_REGISTRATION = date(2025, 12, 31)


# ---------------------------------------------------------------- identifiers


class _Permutation:
    """A keyed bijection on ``range(domain)`` (Feistel on 30 bits + cycle walking)."""

    _HALF = 15
    _MASK = (1 << 15) - 1

    def __init__(self, key: bytes, domain: int) -> None:
        assert domain <= 1 << 30
        self._keys = [hmac.new(key, bytes([i]), hashlib.sha256).digest() for i in range(4)]
        self._domain = domain

    def _round(self, i: int, half: int) -> int:
        digest = hashlib.blake2s(half.to_bytes(2, "big"), key=self._keys[i]).digest()
        return int.from_bytes(digest[:2], "big") & self._MASK

    def _encrypt(self, x: int) -> int:
        left, right = x >> self._HALF, x & self._MASK
        for i in range(4):
            left, right = right, left ^ self._round(i, right)
        return (left << self._HALF) | right

    def _decrypt(self, y: int) -> int:
        left, right = y >> self._HALF, y & self._MASK
        for i in reversed(range(4)):
            left, right = right ^ self._round(i, left), left
        return (left << self._HALF) | right

    def forward(self, x: int) -> int:
        y = self._encrypt(x)
        while y >= self._domain:
            y = self._encrypt(y)
        return y

    def backward(self, y: int) -> int:
        x = self._decrypt(y)
        while x >= self._domain:
            x = self._decrypt(x)
        return x


def luhn_digit(digits: str) -> int:
    """The Luhn check digit for ``digits``."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def is_valid_idcs(idcs: str) -> bool:
    """Format check only: 10 ASCII digits with a valid Luhn check digit."""
    return len(idcs) == 10 and idcs.isascii() and idcs.isdigit() and luhn_digit(idcs[:9]) == int(idcs[9])


# ---------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Person:
    idcs: str
    cin: str | None
    first_name: str
    first_name_ar: str
    last_name: str
    last_name_ar: str
    sex: str  # "M" | "F"
    birth_date: date
    death_date: date | None
    father_idcs: str | None
    mother_idcs: str | None
    region: str
    household_index: int
    slot: int
    severe_disability: bool = False

    @property
    def alive(self) -> bool:
        return self.death_date is None


@dataclass(frozen=True, slots=True)
class Job:
    employer: str
    employer_cnss: str
    start: date
    monthly_salary: int  # MAD


@dataclass(frozen=True, slots=True)
class Registration:
    """A household's entry in the RSU (who its members are follows from the household itself)."""

    household_id: str  # "RSU-" + 9 digits
    registered_on: date
    updated_on: date
    socio_economic_index: float  # 7 decimals


@dataclass(frozen=True, slots=True)
class Household:
    index: int
    region: str
    rural: bool
    members: tuple[Person, ...]  # father, mother, children (deceased members included)
    amo_tadamon_since: date | None
    jobs: tuple[tuple[str, Job], ...] = ()  # (idcs, job)
    school: tuple[tuple[str, bool], ...] = ()  # (idcs, enrolled this school year) for children 6–20
    fixture: str | None = None
    registration: Registration | None = None  # None: the household is not in the RSU

    def member(self, idcs: str) -> Person | None:
        return next((p for p in self.members if p.idcs == idcs), None)

    @property
    def size(self) -> int:
        """Living members."""
        return sum(1 for p in self.members if p.alive)

    @property
    def father(self) -> Person:
        return self.members[0]

    @property
    def mother(self) -> Person:
        return self.members[1]

    @property
    def children(self) -> tuple[Person, ...]:
        return self.members[2:]


@dataclass(frozen=True, slots=True)
class Enrolment:
    idcs: str
    massar_code: str
    school_year: str
    status: str  # "enrolled" | "not_enrolled"
    level: str
    school: str
    region: str


@dataclass(frozen=True, slots=True)
class Coverage:
    idcs: str
    scheme: str  # "amo_tadamon" | "amo_contributory" | "none"
    status: str  # "active" | "inactive"
    since: date | None
    severe_disability: bool


@dataclass(frozen=True, slots=True)
class Declaration:
    month: str  # YYYY-MM
    days: int
    salary: int  # MAD


@dataclass(frozen=True, slots=True)
class Employment:
    idcs: str
    cnss_number: str
    employer: str
    employer_cnss: str
    declarations: tuple[Declaration, ...]


@dataclass(frozen=True, slots=True)
class SocialRegistration:
    """The RSU's answer for one person: the registration of their household and its living members."""

    idcs: str  # the person asked about (a deceased member is still answered for, but no longer listed)
    household_id: str
    registered_on: date
    updated_on: date
    region: str
    members: tuple[str, ...]  # IDCS of the living members, in household order
    socio_economic_index: float


# ---------------------------------------------------------------- household specifications


@dataclass(frozen=True, slots=True)
class _ChildSpec:
    age_days: int
    sex: str
    in_school: bool = True
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class _Spec:
    father_age_days: int
    mother_age_days: int
    children: tuple[_ChildSpec, ...]
    father_deceased_days_ago: int | None = None  # relative to REFERENCE_DATE
    father_job_start: date | None = None
    mother_job_start: date | None = None
    tadamon_since: date | None = None
    fixture: str | None = None
    region: int | None = None
    extra: dict[str, str] = field(default_factory=dict)
    rsu: _RsuSpec | None = None  # fixtures only: their RSU registration (None: not registered)


@dataclass(frozen=True, slots=True)
class _RsuSpec:
    socio_economic_index: float
    registered_on: date
    updated_on: date


def _years(y: float, days: int = 0) -> int:
    return int(y * 365.25) + days


FIXTURES: dict[str, _Spec] = {
    # Father died in 2024; three children aged 3, 9 and 13, the two of school age are enrolled.
    "deceased_father": _Spec(
        father_age_days=_years(44, 40), mother_age_days=_years(38, 100),
        children=(_ChildSpec(_years(13, 120), "F"), _ChildSpec(_years(9, 60), "M"), _ChildSpec(_years(3, 30), "F")),
        father_deceased_days_ago=700, tadamon_since=date(2023, 1, 1), region=6,
        rsu=_RsuSpec(8.9617342, date(2022, 11, 14), date(2024, 11, 20)),  # updated after the death
    ),
    # A 15-year-old who left school; an 8-year-old sibling who attends.
    "child_out_of_school": _Spec(
        father_age_days=_years(45, 10), mother_age_days=_years(40, 200),
        children=(_ChildSpec(_years(15, 150), "M", in_school=False), _ChildSpec(_years(8, 90), "F")),
        tadamon_since=date(2023, 3, 1), region=7,
        rsu=_RsuSpec(9.1482206, date(2023, 2, 10), date(2025, 3, 17)),
    ),
    # The father holds a declared salaried job since 2021 (so: contributory AMO, no Tadamon).
    "salaried_parent": _Spec(
        father_age_days=_years(41, 5), mother_age_days=_years(36, 77),
        children=(_ChildSpec(_years(10, 10), "M"), _ChildSpec(_years(7, 200), "F")),
        father_job_start=date(2021, 4, 1), region=5,
        rsu=_RsuSpec(10.3175089, date(2023, 9, 18), date(2025, 10, 6)),  # above the ASD threshold
    ),
    # Four children, covered by AMO Tadamon since January 2023, nobody declared.
    "amo_tadamon": _Spec(
        father_age_days=_years(47, 33), mother_age_days=_years(42, 150),
        children=(
            _ChildSpec(_years(17, 60), "F"), _ChildSpec(_years(12, 15), "M"),
            _ChildSpec(_years(6, 250), "M"), _ChildSpec(_years(1, 100), "F"),
        ),
        tadamon_since=date(2023, 1, 1), region=4,
        rsu=_RsuSpec(8.7243915, date(2022, 12, 5), date(2025, 6, 30)),  # updated after the last birth
    ),
    # An 11-year-old child with a severe disability, enrolled.
    "disabled_child": _Spec(
        father_age_days=_years(39, 300), mother_age_days=_years(35, 20),
        children=(_ChildSpec(_years(11, 45), "F", disabled=True),),
        tadamon_since=date(2024, 6, 1), region=2,
        rsu=_RsuSpec(9.2051763, date(2024, 5, 6), date(2025, 9, 22)),
    ),
    # Never registered in the RSU, though known everywhere else: an 8-year-old at school, a 4-year-old,
    # nobody declared, no AMO (AMO Tadamon requires an RSU registration).
    "not_in_rsu": _Spec(
        father_age_days=_years(34, 120), mother_age_days=_years(30, 45),
        children=(_ChildSpec(_years(8, 200), "M"), _ChildSpec(_years(4, 75), "F")),
        region=8,
    ),
    # An elderly couple (71 and 66) living with their 31-year-old son: registered in the RSU between the
    # AMO Tadamon and the ASD thresholds, no child under 21, nobody declared, no AMO.
    "elderly_couple": _Spec(
        father_age_days=_years(71, 90), mother_age_days=_years(66, 160),
        children=(_ChildSpec(_years(31, 20), "M"),),
        region=3,
        rsu=_RsuSpec(9.5318427, date(2024, 2, 27), date(2026, 1, 12)),
    ),
}
FIXTURE_NAMES: tuple[str, ...] = tuple(FIXTURES)


def _random_spec(rng: random.Random, rural: bool) -> _Spec:
    # children per household: mean ≈ 1.75 urban, 2.45 rural → household size ≈ 3.7 / 4.4 (mean 3.9)
    weights = [17, 27, 29, 17, 6, 3, 1, 0] if not rural else [9, 16, 25, 24, 14, 7, 3, 2]
    n = rng.choices(range(8), weights=weights)[0]
    mother_age = rng.randint(_years(22), _years(58))
    father_age = mother_age + rng.randint(_years(1), _years(9))
    children: list[_ChildSpec] = []
    age = mother_age - rng.randint(_years(18), _years(27))
    for _ in range(n):
        if age < 0:
            break
        age_y = age / 365.25
        in_school_p = 0.97 if age_y < 12 else 0.88 if age_y < 15 else 0.72 if age_y < 18 else 0.45
        children.append(_ChildSpec(age, rng.choice("MF"), in_school=rng.random() < in_school_p,
                                   disabled=rng.random() < 0.015))
        age -= rng.randint(_years(1.2), _years(4))
    deceased = rng.randint(30, 3000) if rng.random() < 0.04 else None
    father_job = date(rng.randint(2005, 2025), rng.randint(1, 12), 1) if rng.random() < 0.22 else None
    mother_job = date(rng.randint(2010, 2025), rng.randint(1, 12), 1) if rng.random() < 0.08 else None
    tadamon = None
    if father_job is None and mother_job is None and rng.random() < 0.7:
        tadamon = date(2023, rng.randint(1, 12), 1)
    return _Spec(father_age, mother_age, tuple(children), deceased, father_job, mother_job, tadamon)


# ---------------------------------------------------------------- the population


class Population:
    """``households`` synthetic households generated from ``seed``; nothing is stored."""

    def __init__(self, seed: str, households: int, today: date | None = None) -> None:
        if not 0 < households <= MAX_HOUSEHOLDS:
            raise ValueError(f"households must be between {len(FIXTURES)} and {MAX_HOUSEHOLDS:,}")
        if households < len(FIXTURES):
            raise ValueError(f"a population holds at least the {len(FIXTURES)} fixture households")
        self.seed = seed
        self.households = households
        self._today = today
        key = hashlib.sha256(f"anss-population:{seed}".encode()).digest()
        self._key = key
        self._idcs_perm = _Permutation(key + b"idcs", _IDCS_DOMAIN)
        self._cin_perm = _Permutation(key + b"cin", _CIN_DOMAIN)
        self._rsu_perm = _Permutation(key + b"rsu", _IDCS_DOMAIN)
        self._cache = lru_cache(maxsize=4096)(self._generate)

    @property
    def today(self) -> date:
        return self._today or date.today()

    # -- identifiers

    def idcs_of(self, index: int, slot: int) -> str:
        payload = f"{self._idcs_perm.forward(index * SLOTS + slot):09d}"
        return payload + str(luhn_digit(payload))

    def _locate(self, idcs: str) -> tuple[int, int] | None:
        if not is_valid_idcs(idcs):
            return None
        value = self._idcs_perm.backward(int(idcs[:9]))
        index, slot = divmod(value, SLOTS)
        return (index, slot) if index < self.households else None

    def cin_of(self, index: int, slot: int) -> str:
        value = self._cin_perm.forward(index * SLOTS + slot)
        letters, digits = divmod(value, 10**6)
        return f"{chr(65 + letters // 26)}{chr(65 + letters % 26)}{digits:06d}"

    def unknown_idcs(self) -> str:
        """A well-formed IDCS (valid check digit) that belongs to nobody in this population."""
        return self.idcs_of(self.households, 0)

    # -- look-ups

    def household(self, index: int) -> Household:
        if not 0 <= index < self.households:
            raise IndexError(index)
        return self._cache(index)

    def fixture(self, name: str) -> Household:
        return self.household(FIXTURE_NAMES.index(name))

    def household_of(self, idcs: str) -> Household | None:
        located = self._locate(idcs)
        if located is None:
            return None
        household = self.household(located[0])
        return household if located[1] < len(household.members) else None

    def person(self, idcs: str) -> Person | None:
        household = self.household_of(idcs)
        return household.member(idcs) if household else None

    def person_by_cin(self, cin: str) -> Person | None:
        if not cin.isascii():
            return None
        cin = cin.upper()
        if len(cin) != 8 or not (cin[:2].isascii() and cin[:2].isalpha() and cin[2:].isascii() and cin[2:].isdigit()):
            return None
        value = (ord(cin[0]) - 65) * 26 + (ord(cin[1]) - 65)
        index, slot = divmod(self._cin_perm.backward(value * 10**6 + int(cin[2:])), SLOTS)
        if index >= self.households:
            return None
        person = self.household(index).member(self.idcs_of(index, slot))
        return person if person is not None and person.cin == cin else None

    def family(self, idcs: str) -> tuple[tuple[Person, ...], tuple[Person, ...]] | None:
        """(spouses, children) of a person, or None if unknown. Children have no family of their own here."""
        household = self.household_of(idcs)
        if household is None:
            return None
        person = household.member(idcs)
        assert person is not None
        if person.slot == 0:
            return (household.mother,), household.children
        if person.slot == 1:
            return (household.father,), household.children
        return (), ()

    def enrolment(self, idcs: str, school_year: str | None = None) -> Enrolment | None:
        """MASSAR's answer for a pupil; None for someone who was never a pupil (too young, adult)."""
        household = self.household_of(idcs)
        if household is None:
            return None
        status = dict(household.school).get(idcs)
        person = household.member(idcs)
        if status is None or person is None or not person.alive:
            return None
        year = school_year or current_school_year(self.today)
        start = date(int(year[:4]), 9, 1)
        age = _age(person.birth_date, start)
        rng = self._rng("school", household.index, person.slot)
        region_letter = REGIONS[[r[0] for r in REGIONS].index(household.region)][3]
        kind = "École primaire" if age < 12 else "Collège" if age < 15 else "Lycée"
        return Enrolment(
            idcs=idcs,
            massar_code=f"{region_letter}{rng.randrange(10**8, 10**9):09d}",
            school_year=year,
            status="enrolled" if status else "not_enrolled",
            level=_level(age),
            school=f"{kind} {rng.choice(SCHOOL_NAMES)}",
            region=household.region,
        )

    def coverage(self, idcs: str) -> Coverage | None:
        household = self.household_of(idcs)
        person = household.member(idcs) if household else None
        if household is None or person is None:
            return None
        salaried_since = min((job.start for _, job in household.jobs), default=None)
        if salaried_since is not None:
            scheme, since = "amo_contributory", salaried_since
        elif household.amo_tadamon_since is not None:
            scheme, since = "amo_tadamon", household.amo_tadamon_since
        else:
            scheme, since = "none", None
        status = "inactive" if (scheme == "none" or not person.alive) else "active"
        return Coverage(idcs, scheme, status, since, person.severe_disability)

    def employment(self, idcs: str, first_month: str, last_month: str) -> Employment | None:
        """CNSS declarations of an insured person over a period (inclusive, YYYY-MM); None if never insured."""
        household = self.household_of(idcs)
        job = dict(household.jobs).get(idcs) if household else None
        person = household.member(idcs) if household else None
        if household is None or job is None or person is None:
            return None
        last_declared = _month_start(self.today) - timedelta(days=1)
        if person.death_date is not None:
            last_declared = min(last_declared, person.death_date)
        declarations = []
        for month in _months(first_month, last_month):
            if month < job.start or month > last_declared:
                continue
            rng = random.Random(f"{idcs}:{month.isoformat()}")
            days = 26 if rng.random() < 0.8 else rng.randint(10, 25)
            declarations.append(Declaration(month.strftime("%Y-%m"), days, round(job.monthly_salary * days / 26)))
        rng = self._rng("cnss", household.index, person.slot)
        return Employment(idcs, f"{rng.randrange(10**8, 10**9)}", job.employer, job.employer_cnss,
                          tuple(declarations))

    def social_registration(self, idcs: str) -> SocialRegistration | None:
        """The RSU's answer for a member of a registered household; None if unknown or not registered."""
        household = self.household_of(idcs)
        if household is None or household.registration is None:
            return None
        entry = household.registration
        return SocialRegistration(
            idcs=idcs, household_id=entry.household_id, registered_on=entry.registered_on,
            updated_on=entry.updated_on, region=household.region,
            members=tuple(p.idcs for p in household.members if p.alive),
            socio_economic_index=entry.socio_economic_index,
        )

    # -- generation

    def _rsu_id(self, index: int) -> str:
        return f"RSU-{self._rsu_perm.forward(index):09d}"

    def _registration(self, index: int, spec: _Spec, fixture: str | None,
                      members: list[Person]) -> Registration | None:
        """A fixture's registration as written in ``FIXTURES``; any other household's by this rule:

        * covered by AMO Tadamon: registered (the cover is granted on an RSU registration), before the
          cover started, with an index uniform in [7.9, 9.3264284) — below both thresholds;
        * with a declared salaried parent: registered with probability 0.6, index uniform in [9.4, 11.8);
        * neither: registered with probability 0.7, index uniform in [9.0, 10.6) — around the ASD threshold.

        Registered between 2022-10-01 and 2025-12-31 (before the Tadamon cover, if any); last updated up to
        120 days after the latest of the registration, a member's birth or a death, and never after
        ``REFERENCE_DATE``. Indexes have 7 decimals. The draws use their own random stream.
        """
        if fixture is not None:
            if spec.rsu is None:
                return None
            return Registration(self._rsu_id(index), spec.rsu.registered_on, spec.rsu.updated_on,
                                spec.rsu.socio_economic_index)
        rng = self._rng("rsu", index)
        last = _RSU_LAST_REGISTRATION
        if spec.tadamon_since is not None:
            low, high, last = 7.9, AMO_TADAMON_THRESHOLD, spec.tadamon_since - timedelta(days=1)
        elif spec.father_job_start is not None or spec.mother_job_start is not None:
            if rng.random() >= 0.6:
                return None
            low, high = 9.4, 11.8
        else:
            if rng.random() >= 0.7:
                return None
            low, high = 9.0, 10.6
        score = rng.randrange(round(low * _INDEX_SCALE), round(high * _INDEX_SCALE)) / _INDEX_SCALE
        registered = _RSU_OPENED + timedelta(days=rng.randrange((last - _RSU_OPENED).days + 1))
        events = [registered, *(p.birth_date for p in members), *(p.death_date for p in members if p.death_date)]
        updated = min(REFERENCE_DATE, max(events) + timedelta(days=rng.randint(0, 120)))
        return Registration(self._rsu_id(index), registered, updated, score)

    def _rng(self, purpose: str, index: int, slot: int = 0) -> random.Random:
        digest = hmac.new(self._key, f"{purpose}:{index}:{slot}".encode(), hashlib.sha256).digest()
        return random.Random(int.from_bytes(digest[:16], "big"))

    def _generate(self, index: int) -> Household:
        rng = self._rng("household", index)
        region_idx = rng.choices(range(len(REGIONS)), weights=[r[1] for r in REGIONS])[0]
        rural = rng.random() < REGIONS[region_idx][2]
        if index < len(FIXTURES):
            spec = FIXTURES[FIXTURE_NAMES[index]]
            fixture: str | None = FIXTURE_NAMES[index]
            if spec.region is not None:
                region_idx = spec.region
        else:
            spec, fixture = _random_spec(rng, rural), None
        region = REGIONS[region_idx][0]
        last, last_ar = rng.choice(LAST)
        mother_last, mother_last_ar = rng.choice(LAST)
        father_idcs, mother_idcs = self.idcs_of(index, 0), self.idcs_of(index, 1)

        def make(slot: int, sex: str, age_days: int, family: tuple[str, str], **kw: object) -> Person:
            first, first_ar = rng.choice(MALE_FIRST if sex == "M" else FEMALE_FIRST)
            birth = REFERENCE_DATE - timedelta(days=age_days)
            adult = _age(birth, REFERENCE_DATE) >= 18
            return Person(
                idcs=self.idcs_of(index, slot), cin=self.cin_of(index, slot) if adult else None,
                first_name=first, first_name_ar=first_ar, last_name=family[0], last_name_ar=family[1],
                sex=sex, birth_date=birth, region=region, household_index=index, slot=slot,
                **kw,  # type: ignore[arg-type]
            )

        death = (REFERENCE_DATE - timedelta(days=spec.father_deceased_days_ago)
                 if spec.father_deceased_days_ago is not None else None)
        members = [
            make(0, "M", spec.father_age_days, (last, last_ar), death_date=death, father_idcs=None, mother_idcs=None),
            make(1, "F", spec.mother_age_days, (mother_last, mother_last_ar), death_date=None,
                 father_idcs=None, mother_idcs=None),
        ]
        school: list[tuple[str, bool]] = []
        for i, child in enumerate(spec.children):
            person = make(2 + i, child.sex, child.age_days, (last, last_ar), death_date=None,
                          father_idcs=father_idcs, mother_idcs=mother_idcs, severe_disability=child.disabled)
            members.append(person)
            if 6 <= _age(person.birth_date, REFERENCE_DATE) <= 20:  # MASSAR knows school-age children only
                school.append((person.idcs, child.in_school))
        jobs: list[tuple[str, Job]] = []
        for slot, start in ((0, spec.father_job_start), (1, spec.mother_job_start)):
            if start is not None:
                job_rng = self._rng("job", index, slot)
                jobs.append((self.idcs_of(index, slot), Job(
                    employer=job_rng.choice(EMPLOYERS), employer_cnss=f"{job_rng.randrange(10**6, 10**7)}",
                    start=start, monthly_salary=job_rng.randrange(3100, 9000, 50),
                )))
        return Household(index, region, rural, tuple(members), spec.tadamon_since, tuple(jobs), tuple(school),
                         fixture, self._registration(index, spec, fixture, members))

    def iter_households(self, limit: int | None = None) -> Iterator[Household]:
        for index in range(self.households if limit is None else min(self.households, limit)):
            yield self._generate(index)


# ---------------------------------------------------------------- calendar helpers


def _age(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _level(age: int) -> str:
    levels = ["1AP", "2AP", "3AP", "4AP", "5AP", "6AP", "1AC", "2AC", "3AC", "TC", "1BAC", "2BAC"]
    return levels[max(0, min(age - 6, len(levels) - 1))]


def _month_start(d: date) -> date:
    return d.replace(day=1)


def _months(first: str, last: str) -> Iterator[date]:
    year, month = int(first[:4]), int(first[5:7])
    end = (int(last[:4]), int(last[5:7]))
    count = 0
    while (year, month) <= end and count < 120:
        yield date(year, month, 1)
        month += 1
        count += 1
        if month == 13:
            year, month = year + 1, 1


def current_school_year(today: date) -> str:
    start = today.year if today.month >= 9 else today.year - 1
    return f"{start}-{start + 1}"

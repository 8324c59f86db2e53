#!/usr/bin/env python3
"""Seeded generator for the Portcullis PII / secrets detection corpus.

Writes JSONL, one object per line::

    {"id": int, "locale": str, "text": str,
     "entities": [{"type": str, "start": int, "end": int}]}

``start``/``end`` are **UTF-8 byte offsets** into ``text`` (half-open), so a
Rust consumer can slice ``text.as_bytes()[start..end]`` directly.  Texts
contain non-ASCII names, addresses and punctuation, so byte and character
offsets differ on purpose.

Everything random comes from one ``random.Random(seed)`` plus one Faker
instance per locale seeded from it, and nothing depends on the current date,
so the same ``--seed``/``--n`` always produces a byte-identical file (for a
given Faker version; see requirements.txt).

Texts are built from *parts*: plain strings (never labelled) and ``Ent``
values (labelled).  ``render`` concatenates them and records byte spans, and
every span is checked against the value it was built from before writing.

Usage::

    python benches/pii/generate_corpus.py --seed 42 --out corpus.jsonl [--n 4000]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import string
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Callable

from faker import Faker

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES", "it_IT"]
LOCALE_WEIGHTS = [0.28, 0.14, 0.14, 0.12, 0.11, 0.11, 0.10]

PII_TYPES = [
    "email", "phone", "card", "iban", "ssn", "ip_address",
    "date_of_birth", "postal_code",
]
SECRET_TYPES = [
    "aws_key", "github_token", "gitlab_token", "slack_token", "stripe_key",
    "openai_key", "jwt", "private_key", "url_password", "generic_secret",
]
ALL_TYPES = PII_TYPES + SECRET_TYPES

ALNUM = string.ascii_letters + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits
HEX = "0123456789abcdef"
B64URL = ALNUM + "-_"

# Fraction of texts that carry no labelled entity at all.
P_NO_ENTITY = 0.20
# Probability that a text gets explicit hard negatives (entity / no-entity texts).
P_HARD_NEG = 0.42
P_HARD_NEG_EMPTY = 0.65

# Month names for locale-typical dates of birth.
MONTHS = {
    "en": ["January", "February", "March", "April", "May", "June", "July",
           "August", "September", "October", "November", "December"],
    "de": ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli",
           "August", "September", "Oktober", "November", "Dezember"],
    "fr": ["janvier", "février", "mars", "avril", "mai", "juin", "juillet",
           "août", "septembre", "octobre", "novembre", "décembre"],
    "nl": ["januari", "februari", "maart", "april", "mei", "juni", "juli",
           "augustus", "september", "oktober", "november", "december"],
    "es": ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio",
           "agosto", "septiembre", "octubre", "noviembre", "diciembre"],
    "it": ["gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno",
           "luglio", "agosto", "settembre", "ottobre", "novembre", "dicembre"],
}


# --------------------------------------------------------------------------
# Text assembly with byte-offset bookkeeping
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Ent:
    """A labelled value: the whole of ``value`` is the gold span."""

    type: str
    value: str


def _flatten(parts, out: list) -> list:
    """Flatten nested lists/tuples of str/Ent into ``out``."""
    if isinstance(parts, (str, Ent)):
        out.append(parts)
    else:
        for p in parts:
            _flatten(p, out)
    return out


def render(parts) -> tuple[str, list[dict]]:
    """Concatenate parts; return (text, entities with UTF-8 byte spans)."""
    chunks: list[str] = []
    ents: list[dict] = []
    pos = 0  # running byte offset
    for p in _flatten(parts, []):
        s = p.value if isinstance(p, Ent) else p
        n = len(s.encode("utf-8"))
        if isinstance(p, Ent):
            if not s:
                raise ValueError(f"empty entity value for {p.type}")
            ents.append({"type": p.type, "start": pos, "end": pos + n})
        chunks.append(s)
        pos += n
    return "".join(chunks), ents


_FIELD_RE = re.compile(r"\{(\w+)\}")


def tpl(template: str, ctx: "Ctx", ent=None, **extra) -> list:
    """Expand a template into parts.

    ``{v}`` is replaced by ``ent`` (an Ent or a list of parts); every other
    ``{field}`` is filled from ``extra`` or from ``ctx.field(name)``.  Filler
    values are plain strings and therefore never labelled.
    """
    def fill(seg: str) -> str:
        return _FIELD_RE.sub(
            lambda m: extra[m.group(1)] if m.group(1) in extra else ctx.field(m.group(1)),
            seg,
        )

    out: list = []
    for i, seg in enumerate(template.split("{v}")):
        if i:
            out.append(ent)
        out.append(fill(seg))
    return out


# --------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """True when the IBAN (spaces allowed) has a valid mod-97 checksum."""
    s = iban.replace(" ", "")
    s = s[4:] + s[:4]
    num = "".join(str(int(c, 36)) for c in s)
    return int(num) % 97 == 1


def isbn13(rng: random.Random) -> str:
    """A valid, hyphenated ISBN-13 (978-prefix, made-up groups)."""
    body = "978" + "".join(rng.choice(string.digits) for _ in range(9))
    check = (10 - sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(body)) % 10) % 10
    d = body + str(check)
    return f"{d[:3]}-{d[3]}-{d[4:6]}-{d[6:12]}-{d[12]}"


def b64url(data: bytes) -> str:
    """base64url without padding, as used by JWTs."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# --------------------------------------------------------------------------
# Per-text context: RNG, Faker and filler values
# --------------------------------------------------------------------------


class Ctx:
    """Random sources and unlabelled filler values for one text."""

    def __init__(self, rng: random.Random, fakers: dict[str, Faker], locale: str):
        self.rng = rng
        self.fakers = fakers
        self.locale = locale
        self.fake = fakers[locale]
        self.lang = locale[:2]

    # ---- small random helpers -------------------------------------------
    def choice(self, seq):
        return self.rng.choice(seq)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def rand_str(self, n: int, alphabet: str = ALNUM) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def digits(self, n: int) -> str:
        return "".join(self.rng.choice(string.digits) for _ in range(n))

    def timestamp(self) -> datetime:
        """A random moment in 2022-2025 (never 'now': keeps output stable)."""
        start = datetime(2022, 1, 1, tzinfo=timezone.utc)
        return start + timedelta(seconds=self.rng.randrange(4 * 365 * 86400))

    def iso_ts(self) -> str:
        t = self.timestamp()
        return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{self.rng.randrange(1000):03d}Z"

    def host(self) -> str:
        """An unlabelled host name (never an IP: IPs are always labelled)."""
        prefix = self.choice(["db", "pg-primary", "mysql", "cache", "api", "mq",
                              "rds-prod", "staging-db", "internal", "analytics"])
        return f"{prefix}.{self.fake.domain_name()}"

    # ---- template fields --------------------------------------------------
    def field(self, name: str) -> str:
        """Unlabelled filler for ``{name}`` in templates."""
        f, rng = self.fake, self.rng
        if name == "name":
            return f.name()
        if name == "first":
            return f.first_name()
        if name == "last":
            return f.last_name()
        if name == "company":
            return f.company()
        if name == "city":
            return f.city()
        if name == "street":
            # Faker's en_GB street addresses contain newlines; keep one line.
            return " ".join(f.street_address().split())
        if name == "user":
            return f.user_name()
        if name == "domain":
            return f.domain_name()
        if name == "host":
            return self.host()
        if name == "ts":
            return self.iso_ts()
        if name == "order":
            return f"#{self.choice(['A', 'B', 'W'])}-{rng.randrange(2022, 2026)}-{self.digits(6)}"
        if name == "amount":
            return f"{rng.randrange(5, 2000)}.{rng.randrange(100):02d}"
        if name == "n":
            return str(rng.randrange(2, 60))
        if name == "svc":
            return self.choice(["auth-svc", "billing", "gateway", "orders-api",
                                "notifier", "kyc-worker", "payments", "ingest"])
        if name == "repo":
            return f"{f.user_name()}/{self.choice(['api', 'infra', 'web', 'etl', 'monorepo', 'deploy'])}"
        if name == "db":
            return self.choice(["app", "orders", "prod", "analytics", "users", "main"])
        if name == "exp":
            return f"{rng.randrange(1, 13):02d}/{rng.randrange(26, 32)}"
        if name == "cvv":
            return self.digits(3)
        if name == "bic":
            return f.swift()
        if name == "state":
            return f.state_abbr() if self.locale == "en_US" else ""
        raise KeyError(name)


# --------------------------------------------------------------------------
# Entity value generators
# --------------------------------------------------------------------------


def v_email(ctx: Ctx) -> Ent:
    f = ctx.fake
    kind = ctx.rng.random()
    addr = f.email() if kind < 0.4 else f.free_email() if kind < 0.7 else f.company_email()
    local, domain = addr.split("@", 1)
    if ctx.chance(0.15):  # plus-addressing
        local += "+" + ctx.choice(["billing", "news", "github", "test", "support", "2024"])
    if ctx.chance(0.15) and not domain.startswith(("gmail", "yahoo", "hotmail")):
        domain = ctx.choice(["mail", "eu", "corp", "mx1", "support"]) + "." + domain
    return Ent("email", f"{local}@{domain}")


def _e164(ctx: Ctx) -> str:
    """An international-format mobile number using allocated mobile ranges.

    Mostly the text's own country, sometimes another one; compact E.164
    (``+4915123456789``) or spaced the way people write it.
    """
    r, d = ctx.rng, ctx.digits
    country = {"en_US": "US", "en_GB": "GB", "de_DE": "DE", "fr_FR": "FR",
               "nl_NL": "NL", "es_ES": "ES", "it_IT": "IT"}[ctx.locale]
    if ctx.chance(0.2):
        country = ctx.choice(["US", "GB", "DE", "FR", "NL", "ES", "IT"])
    compact = ctx.chance(0.45)
    if country == "US":
        area = ctx.choice(["415", "212", "646", "312", "206", "617", "512", "303", "202", "305"])
        exch = str(r.randrange(2, 10)) + d(2)
        line = d(4)
        return f"+1{area}{exch}{line}" if compact else ctx.choice(
            [f"+1 {area} {exch} {line}", f"+1-{area}-{exch}-{line}", f"+1 ({area}) {exch}-{line}"])
    if country == "GB":
        n = "7" + ctx.choice(["400", "500", "800", "900", "827"]) + d(6)
        return f"+44{n}" if compact else f"+44 {n[:4]} {n[4:]}"
    if country == "DE":
        pre = ctx.choice(["151", "152", "160", "162", "170", "171", "172", "176", "157"])
        rest = d(8 if pre[:2] in ("15", "16") and pre != "160" else 7)
        return f"+49{pre}{rest}" if compact else f"+49 {pre} {rest}"
    if country == "FR":
        # 06 1x,2x,4x,5x and 07 5x-8x: metropolitan mobile (063x/069x are overseas).
        n = ctx.choice(["6" + ctx.choice("1245"), "7" + str(r.randrange(5, 9))]) + d(7)
        return f"+33{n}" if compact else f"+33 {n[0]} {n[1:3]} {n[3:5]} {n[5:7]} {n[7:]}"
    if country == "NL":
        n = "6" + str(r.randrange(1, 6)) + d(7)  # 06-1x..5x are allocated mobile blocks
        return f"+31{n}" if compact else f"+31 6 {n[1:]}"
    if country == "ES":
        n = ctx.choice(["6" + d(1), "7" + str(r.randrange(1, 5))]) + d(7)  # 6xx, 71x-74x mobile
        return f"+34{n}" if compact else f"+34 {n[:3]} {n[3:6]} {n[6:]}"
    n = "3" + ctx.choice(["20", "33", "35", "38", "40", "47", "49"]) + d(7)  # IT mobile
    return f"+39{n}" if compact else f"+39 {n[:3]} {n[3:6]} {n[6:]}"


def v_phone(ctx: Ctx) -> Ent:
    if ctx.chance(0.6):
        return Ent("phone", ctx.fake.phone_number().strip())
    return Ent("phone", _e164(ctx))


CARD_KINDS = [  # (faker card_type, display name, weight)
    ("visa16", "Visa", 5), ("visa13", "Visa", 0.5), ("mastercard", "Mastercard", 4),
    ("amex", "Amex", 2.5), ("discover", "Discover", 1.5), ("jcb16", "JCB", 1),
    ("diners", "Diners Club", 1),
]


def v_card(ctx: Ctx) -> tuple[Ent, str]:
    """Return (card entity, network display name)."""
    kind = ctx.rng.choices(CARD_KINDS, weights=[k[2] for k in CARD_KINDS])[0]
    num = ctx.fakers["en_US"].credit_card_number(card_type=kind[0])
    assert luhn_ok(num), num
    style = ctx.rng.random()
    if style < 0.5 or len(num) == 13:
        text = num
    else:
        sep = " " if style < 0.85 else "-"
        if len(num) in (14, 15):  # Diners 4-6-4, Amex 4-6-5
            groups = [num[:4], num[4:10], num[10:]]
        else:
            groups = [num[i:i + 4] for i in range(0, len(num), 4)]
        text = sep.join(groups)
    return Ent("card", text), kind[1]


def v_iban(ctx: Ctx) -> Ent:
    loc = ctx.locale if ctx.locale != "en_US" else ctx.choice(["en_GB", "de_DE", "fr_FR", "nl_NL"])
    if ctx.chance(0.15):
        loc = ctx.choice(["en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES", "it_IT"])
    iban = ctx.fakers[loc].iban()
    assert iban_ok(iban), iban
    if ctx.chance(0.4):  # print format
        iban = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
    return Ent("iban", iban)


def v_ssn(ctx: Ctx) -> Ent:
    return Ent("ssn", ctx.fakers["en_US"].ssn())


def v_ip(ctx: Ctx) -> Ent:
    f = ctx.fake
    r = ctx.rng.random()
    ip = f.ipv4_public() if r < 0.45 else f.ipv4_private() if r < 0.75 else f.ipv6()
    return Ent("ip_address", ip)


def v_dob(ctx: Ctx) -> Ent:
    d = date(1935, 1, 1) + timedelta(days=ctx.rng.randrange((date(2006, 12, 31) - date(1935, 1, 1)).days))
    lang, loc = ctx.lang, ctx.locale
    months = MONTHS.get(lang, MONTHS["en"])
    iso = d.isoformat()
    if loc == "en_US":
        forms = [f"{d.month:02d}/{d.day:02d}/{d.year}", f"{months[d.month - 1]} {d.day}, {d.year}", iso,
                 f"{d.month}/{d.day}/{d.year}"]
    elif loc == "en_GB":
        forms = [f"{d.day:02d}/{d.month:02d}/{d.year}", f"{d.day} {months[d.month - 1]} {d.year}", iso]
    elif lang == "de":
        forms = [f"{d.day:02d}.{d.month:02d}.{d.year}", f"{d.day}. {months[d.month - 1]} {d.year}", iso]
    elif lang == "fr":
        forms = [f"{d.day:02d}/{d.month:02d}/{d.year}", f"{d.day} {months[d.month - 1]} {d.year}", iso]
    elif lang == "nl":
        forms = [f"{d.day:02d}-{d.month:02d}-{d.year}", f"{d.day} {months[d.month - 1]} {d.year}", iso]
    elif lang == "es":
        forms = [f"{d.day:02d}/{d.month:02d}/{d.year}", f"{d.day} de {months[d.month - 1]} de {d.year}", iso]
    else:
        forms = [f"{d.day:02d}/{d.month:02d}/{d.year}", f"{d.day} {months[d.month - 1]} {d.year}", iso]
    return Ent("date_of_birth", ctx.choice(forms))


def v_postal(ctx: Ctx) -> Ent:
    f = ctx.fake
    if ctx.locale == "en_US":
        code = f.zipcode_plus4() if ctx.chance(0.1) else f.zipcode()
    else:
        code = f.postcode()
    return Ent("postal_code", code)


def v_aws(ctx: Ctx) -> Ent:
    return Ent("aws_key", "AKIA" + ctx.rand_str(16, UPPER_ALNUM))


def v_aws_secret(ctx: Ctx) -> Ent:
    return Ent("generic_secret", ctx.rand_str(40, ALNUM + "/+"))


def v_github(ctx: Ctx) -> Ent:
    if ctx.chance(0.7):
        return Ent("github_token", "ghp_" + ctx.rand_str(36))
    return Ent("github_token", "github_pat_" + ctx.rand_str(22) + "_" + ctx.rand_str(59))


def v_gitlab(ctx: Ctx) -> Ent:
    return Ent("gitlab_token", "glpat-" + ctx.rand_str(20, B64URL))


def v_slack(ctx: Ctx) -> Ent:
    d = ctx.digits
    if ctx.chance(0.6):
        tok = f"xoxb-{d(12)}-{d(13)}-{ctx.rand_str(24)}"
    else:
        tok = f"xoxp-{d(12)}-{d(12)}-{d(13)}-{ctx.rand_str(32, HEX)}"
    return Ent("slack_token", tok)


def v_stripe(ctx: Ctx) -> Ent:
    return Ent("stripe_key", ctx.choice(["sk_live_", "sk_live_", "rk_live_"])
               + ctx.rand_str(ctx.rng.randrange(24, 35)))


def v_openai(ctx: Ctx) -> Ent:
    if ctx.chance(0.65):
        return Ent("openai_key", "sk-proj-" + ctx.rand_str(ctx.rng.randrange(48, 157), B64URL))
    return Ent("openai_key", "sk-" + ctx.rand_str(48))


def v_jwt(ctx: Ctx) -> Ent:
    alg = ctx.choice(["HS256", "HS256", "RS256", "ES256", "HS512"])
    header = {"alg": alg, "typ": "JWT"}
    if alg != "HS256" and ctx.chance(0.5):
        header["kid"] = ctx.rand_str(16, HEX)
    now = int(ctx.timestamp().timestamp())
    payload = {"sub": str(uuid.UUID(int=ctx.rng.getrandbits(128), version=4)) if ctx.chance(0.5)
               else str(ctx.rng.randrange(10 ** 6, 10 ** 9)),
               "name": ctx.fake.name(), "iat": now, "exp": now + ctx.choice([900, 3600, 86400])}
    if ctx.chance(0.5):
        payload["role"] = ctx.choice(["admin", "user", "service", "read-only"])
    if ctx.chance(0.3):
        payload["iss"] = "https://auth." + ctx.fake.domain_name()
    sig_len = {"HS256": 32, "HS512": 64, "RS256": 256, "ES256": 64}[alg]
    sig = bytes(ctx.rng.getrandbits(8) for _ in range(sig_len))

    def enc(obj: dict) -> str:
        return b64url(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))

    return Ent("jwt", f"{enc(header)}.{enc(payload)}.{b64url(sig)}")


PEM_KINDS = [  # (label, body prefix typical of the format, line width)
    ("RSA PRIVATE KEY", "MIIEpAIBAAKCAQEA", 64),
    ("PRIVATE KEY", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ", 64),
    ("OPENSSH PRIVATE KEY", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAA", 70),
]


def pem_lines(ctx: Ctx) -> list[str]:
    """Lines of a realistic-looking (random) PEM private key block."""
    label, prefix, width = ctx.choice(PEM_KINDS)
    n_lines = ctx.rng.randrange(5, 13)
    body = prefix + ctx.rand_str(width * n_lines - len(prefix) + ctx.rng.randrange(8, width - 4),
                                 ALNUM + "+/")
    body += "=" * ctx.rng.randrange(0, 3)
    lines = [f"-----BEGIN {label}-----"]
    lines += [body[i:i + width] for i in range(0, len(body), width)]
    lines.append(f"-----END {label}-----")
    return lines


def v_private_key(ctx: Ctx, joiner: str = "\n") -> Ent:
    """Whole PEM block; ``joiner`` lets callers indent (YAML) or escape (JSON) it."""
    return Ent("private_key", joiner.join(pem_lines(ctx)))


def v_url_password(ctx: Ctx) -> tuple[list, str]:
    """Return (parts of a URL with a labelled password, suggested env key)."""
    pw_len = ctx.rng.randrange(10, 25)
    pw = ctx.rand_str(pw_len, ALNUM + "!*-_.~$")
    if ctx.chance(0.15):  # percent-encoded special char, span keeps it as written
        cut = ctx.rng.randrange(1, len(pw))
        pw = pw[:cut] + ctx.choice(["%40", "%23", "%2F", "%3A"]) + pw[cut:]
    user = ctx.choice([ctx.fake.user_name(), "admin", "app", "postgres", "root", "svc_" + ctx.fake.user_name()])
    ent = Ent("url_password", pw)
    host, db = ctx.host(), ctx.field("db")
    kind = ctx.rng.randrange(7)
    if kind == 0:
        return [f"postgres://{user}:", ent, f"@{host}:5432/{db}"], "DATABASE_URL"
    if kind == 1:
        return [f"postgresql://{user}:", ent, f"@{host}/{db}?sslmode=require"], "DATABASE_URL"
    if kind == 2:
        return [f"mysql://{user}:", ent, f"@{host}:3306/{db}"], "MYSQL_URL"
    if kind == 3:
        cluster = f"cluster0.{ctx.rand_str(5, LOWER_ALNUM)}.mongodb.net"
        return [f"mongodb+srv://{user}:", ent, f"@{cluster}/{db}?retryWrites=true&w=majority"], "MONGO_URI"
    if kind == 4:
        return ["redis://:", ent, f"@{host}:6379/0"], "REDIS_URL"
    if kind == 5:
        return [f"amqp://{user}:", ent, f"@{host}:5672/"], "BROKER_URL"
    return [f"https://{user}:", ent, f"@artifacts.{ctx.fake.domain_name()}/api/npm/npm-remote/"], "REGISTRY_URL"


GENERIC_KEYS = [
    ("api_key", "hex"), ("API_KEY", "alnum"), ("SECRET_TOKEN", "b64url"), ("client_secret", "b64url"),
    ("aws_secret_access_key", "aws"), ("DJANGO_SECRET_KEY", "django"), ("app_secret", "hex"),
    ("access_token", "alnum"), ("encryption_key", "b64"), ("webhook_signing_secret", "hex"),
    ("db_password", "password"), ("SMTP_PASSWORD", "password"), ("private_token", "alnum"),
    ("x-api-key", "alnum"), ("auth_token", "hex"),
]


def v_generic(ctx: Ctx, key: str | None = None) -> tuple[str, Ent]:
    """Return (key name, labelled secret value) for a key=value secret."""
    if key is None:
        key, kind = ctx.choice(GENERIC_KEYS)
    else:
        kind = dict(GENERIC_KEYS).get(key, "alnum")
    r = ctx.rng
    if kind == "hex":
        val = ctx.rand_str(ctx.choice([32, 40, 48, 64]), HEX)
    elif kind == "alnum":
        val = ctx.rand_str(r.randrange(32, 49))
    elif kind == "b64url":
        val = ctx.rand_str(r.randrange(32, 49), B64URL + "~.")
    elif kind == "aws":
        val = ctx.rand_str(40, ALNUM + "/+")
    elif kind == "django":
        val = ctx.rand_str(50, string.ascii_lowercase + string.digits + "!@#%^&*(-_=+)")
    elif kind == "b64":
        val = base64.b64encode(bytes(r.getrandbits(8) for _ in range(32))).decode()
    else:  # password: shorter but random
        val = ctx.rand_str(r.randrange(16, 29), ALNUM + "!#%&*?-_")
    return key, Ent("generic_secret", val)


# --------------------------------------------------------------------------
# Templates per entity type
# --------------------------------------------------------------------------
# Each type offers:
#   prose(ctx) -> parts      a sentence for tickets / e-mails / chat prompts
#   kv(ctx)    -> [(key, value_parts, quotable)]   config / fixture lines
#   log(ctx)   -> parts      a log message (timestamp prefix added later)
#   csv        -> column name (PII types only)

PROSE = {
    "email": [
        "Please send the invoice to {v} instead of my old address.",
        "You can reach me at {v} if anything is unclear.",
        "My account email is {v} but I can't log in since yesterday.",
        "Forwarding this from {v} — can someone on the team take a look?",
        "Write a polite follow-up email to {name} at {v} about the delayed shipment.",
        "Contact: {name} <{v}>",
        "Reply-To: {v}",
        "Please remove {v} from the mailing list.",
        "Add {v} as a second admin on the {company} workspace.",
    ],
    "phone": [
        "Call me back on {v} after 5pm.",
        "My new mobile number is {v}.",
        "You can reach our office at {v} (Mon–Fri, 9–17h).",
        "Tel: {v}",
        "The customer called from {v} asking about the refund.",
        "Please text {v} when the courier arrives.",
        "Emergency contact: {name}, {v}.",
    ],
    "card": [
        "Please charge my {net} {v}, expiry {exp}.",
        "My card {v} was charged twice for order {order}.",
        "Can you check why the {net} card {v} keeps getting declined?",
        "Card number: {v} (exp {exp}, CVV {cvv})",
        "I paid with {v} but the booking still says unpaid.",
        "Refund the last payment on {v} please, it was a duplicate.",
    ],
    "iban": [
        "Please refund the deposit to IBAN {v}.",
        "Bank details: {name}, IBAN: {v}, BIC {bic}.",
        "Transfer the remaining {amount} EUR to {v} by Friday.",
        "Our supplier changed their account to {v} — is that legit?",
        "Set up a SEPA direct debit from {v} for the monthly plan.",
    ],
    "ssn": [
        "My SSN is {v}.",
        "Social security number: {v}",
        "The SSN {v} does not match our records for {name}.",
        "SS# {v}, DOB on file.",
        "Applicant {name}, {v}, {city}.",
        "Please verify {v} before approving the loan for {name}.",
        "I typed my social security number {v} into the form by mistake.",
        "Can you fill in this W-9 for me? Name {name}, TIN {v}.",
    ],
    "ip_address": [
        "Requests from {v} are being blocked by the firewall.",
        "Can you whitelist {v} for the staging environment?",
        "Our NAT gateway egress address is {v}.",
        "I can ping {v} but SSH times out.",
        "The login came from {v}, which isn't one of ours.",
        "Please add {v} to the allow list of {company}'s VPN.",
    ],
    "date_of_birth": [
        "I was born on {v} and the form says I'm underage.",
        "DOB: {v}",
        "Date of birth: {v}",
        "Patient {name}, date of birth {v}, admitted yesterday.",
        "My birthday is {v}, please correct it on my profile.",
        "{name} (d.o.b. {v}) is the main policy holder.",
    ],
    "postal_code": [
        "ZIP {v}",
        "Our new office is in {city}, postcode {v}.",
        "Do you deliver to postal code {v}?",
        "Shipping to {street}, {city} — postal code {v}.",
    ],
    "aws_key": [
        "I accidentally committed AWS_ACCESS_KEY_ID={v} to {repo}, how do I rotate it?",
        "Why does S3 return 403 with access key {v}?",
        "Run `aws configure set aws_access_key_id {v}` and try again.",
        "The leaked key {v} belongs to the CI user.",
    ],
    "github_token": [
        "export GITHUB_TOKEN={v}",
        "My PAT {v} stopped working after the org enabled SSO.",
        "git clone https://{v}@github.com/{repo}.git fails with 403",
        "curl -H \"Authorization: token {v}\" https://api.github.com/user",
    ],
    "gitlab_token": [
        "curl --header \"PRIVATE-TOKEN: {v}\" https://gitlab.{domain}/api/v4/projects",
        "glab auth login --token {v}",
        "The runner registration uses token {v}, is that scoped correctly?",
        "GITLAB_TOKEN={v} works locally but not in the pipeline.",
    ],
    "slack_token": [
        "client = WebClient(token=\"{v}\")",
        "The bot token {v} returns invalid_auth since this morning.",
        "SLACK_BOT_TOKEN={v}",
        "Why can't I post to #alerts with {v}?",
    ],
    "stripe_key": [
        "stripe.api_key = \"{v}\"",
        "curl https://api.stripe.com/v1/charges -u {v}: -d amount=2000",
        "Is it safe that our frontend bundle contains {v}?",
        "STRIPE_SECRET_KEY={v}",
    ],
    "openai_key": [
        "client = OpenAI(api_key=\"{v}\")",
        "Why does my key {v} give a 401?",
        "OPENAI_API_KEY={v}",
        "Authorization: Bearer {v}",
        "Here is my key {v}, can you check my usage limits?",
    ],
    "jwt": [
        "Authorization: Bearer {v}",
        "Decode this JWT for me: {v}",
        "Set-Cookie: session={v}; Path=/; HttpOnly; Secure",
        "The token {v} is rejected with 'signature verification failed'.",
        "curl -H 'Authorization: Bearer {v}' https://api.{domain}/v1/me",
    ],
    "private_key": [
        "Here is the key I'm using:\n{v}\nWhy does ssh say 'invalid format'?",
        "Can you convert this key to PKCS#8?\n\n{v}\n",
        "```\n{v}\n```\nThis is the deploy key for {repo}.",
    ],
    "url_password": [
        "I can connect with {v} from my laptop but the app times out.",
        "Our connection string is {v} — why does the pool run out?",
        "DATABASE_URL={v}",
        "The worker crashes on startup when given {v}.",
    ],
    "generic_secret": [
        "I set {k} = \"{v}\" in settings.py but the SDK still says unauthorized.",
        "Config snippet: {k}={v}",
        "Is it a problem that our repo contains `{k}: {v}`?",
        "mycli login --{kflag} {v}",
    ],
}

# Locale-language templates used (about half the time) for non-English texts.
PROSE_LOCAL = {
    "de": {
        "phone": ["Bitte rufen Sie mich unter {v} zurück.", "Telefon: {v}", "Meine Handynummer ist {v}."],
        "iban": ["Bitte überweisen Sie den Betrag auf {v}.", "IBAN: {v}, Kontoinhaber {name}"],
        "date_of_birth": ["Ich bin am {v} geboren.", "Geburtsdatum: {v}", "{name}, geb. am {v}"],
        "postal_code": ["PLZ {v}", "Postleitzahl: {v}", "Lieferadresse: {street}, {v} {city}"],
        "email": ["Bitte antworten Sie an {v}.", "Meine E-Mail-Adresse lautet {v}."],
    },
    "fr": {
        "phone": ["Vous pouvez me joindre au {v}.", "Tél. : {v}", "Mon portable : {v}"],
        "iban": ["Merci de virer le remboursement sur {v}.", "RIB / IBAN : {v}"],
        "date_of_birth": ["Je suis né le {v}.", "Date de naissance : {v}", "{name}, née le {v}"],
        "postal_code": ["code postal {v}", "Adresse : {street}, {v} {city}", "CP {v}"],
        "email": ["Merci de répondre à {v}.", "Mon adresse e-mail est {v}."],
    },
    "nl": {
        "phone": ["Bel mij op {v}.", "Telefoonnummer: {v}"],
        "iban": ["Rekeningnummer: {v}", "Graag terugstorten op {v}."],
        "date_of_birth": ["Ik ben geboren op {v}.", "Geboortedatum: {v}"],
        "postal_code": ["postcode {v}", "Adres: {street}, {v} {city}"],
        "email": ["Mijn e-mailadres is {v}."],
    },
    "es": {
        "phone": ["Mi teléfono es {v}.", "Llámeme al {v}, por favor."],
        "iban": ["Número de cuenta: {v}", "Por favor, haga la transferencia a {v}."],
        "date_of_birth": ["Fecha de nacimiento: {v}", "Nací el {v}."],
        "postal_code": ["código postal {v}", "C.P. {v}", "Dirección: {street}, {v} {city}"],
        "email": ["Mi correo electrónico es {v}."],
    },
    "it": {
        "phone": ["Il mio numero di telefono è {v}.", "Cell. {v}"],
        "iban": ["Coordinate bancarie: {v}", "Vi prego di effettuare il bonifico su {v}."],
        "date_of_birth": ["Sono nato il {v}.", "Data di nascita: {v}"],
        "postal_code": ["CAP {v}", "Indirizzo: {street}, {v} {city}"],
        "email": ["La mia email è {v}."],
    },
}

# Keyword used before a postal code, per locale (for "ZIP 94107"-style context).
POSTAL_WORD = {"en_US": ["ZIP", "zip code", "ZIP code"], "en_GB": ["postcode", "post code"],
               "de_DE": ["PLZ"], "fr_FR": ["code postal", "CP"], "nl_NL": ["postcode"],
               "es_ES": ["código postal", "CP"], "it_IT": ["CAP"]}

KV_KEYS = {
    "email": ["email", "contact_email", "admin_email", "notify_to", "SMTP_USER", "billing_email"],
    "phone": ["phone", "mobile", "support_phone", "tel", "on_call_phone"],
    "card": ["card_number", "cc_number", "pan", "payment_card"],
    "iban": ["iban", "payout_iban", "bank_account"],
    "ssn": ["ssn", "social_security_number", "tax_id"],
    "ip_address": ["bind_address", "host", "upstream", "client_ip", "allowed_ip", "dns_server"],
    "date_of_birth": ["dob", "date_of_birth", "birthdate"],
    "postal_code": ["zip", "postal_code", "postcode", "zip_code"],
    "aws_key": ["AWS_ACCESS_KEY_ID", "aws_access_key_id"],
    "github_token": ["GITHUB_TOKEN", "GH_TOKEN", "github_pat"],
    "gitlab_token": ["GITLAB_TOKEN", "CI_JOB_PAT", "gitlab_private_token"],
    "slack_token": ["SLACK_BOT_TOKEN", "slack_token", "SLACK_USER_TOKEN"],
    "stripe_key": ["STRIPE_SECRET_KEY", "stripe_api_key", "STRIPE_RESTRICTED_KEY"],
    "openai_key": ["OPENAI_API_KEY", "openai_api_key", "LLM_API_KEY"],
    "jwt": ["ACCESS_TOKEN", "id_token", "bearer_token", "session_jwt"],
    "private_key": ["PRIVATE_KEY", "tls_key", "ssh_private_key", "signing_key"],
    "url_password": [],   # key comes from v_url_password
    "generic_secret": [],  # key comes from v_generic
}

LOG_TEMPLATES = {
    "email": ["user login ok email={v}", "password reset requested for {v}", "bounce: mailbox {v} full"],
    "phone": ["sms sent to={v} status=delivered", "2FA code dispatched to {v}", "callback scheduled phone=\"{v}\""],
    "card": ["payment declined card={v} reason=insufficient_funds", "tokenize request pan={v} merchant={company}"],
    "iban": ["payout created iban={v} amount={amount}", "sepa mandate validated account={v}"],
    "ssn": ["kyc check ssn={v} result=match", "identity lookup for SSN {v} took 212ms"],
    "ip_address": ["GET /api/v1/orders 200 client={v}", "rate limit exceeded for {v}",
                   "new connection from {v} port 52144"],
    "date_of_birth": ["profile updated dob={v}", "age verification input birthdate={v}"],
    "postal_code": ["geocode lookup zip={v} country={cc}", "shipping quote postal_code={v}"],
    "aws_key": ["boto3 credentials loaded access_key={v}", "AccessDenied for key {v} on s3:GetObject"],
    "github_token": ["git fetch with token {v}", "Authorization: token {v}"],
    "gitlab_token": ["PRIVATE-TOKEN: {v}", "registry login token={v}"],
    "slack_token": ["slack webhook init token={v}", "invalid_auth token={v}"],
    "stripe_key": ["stripe client init key={v}", "request to api.stripe.com with key {v} failed"],
    "openai_key": ["upstream=openai api_key={v} status=401", "Authorization: Bearer {v}"],
    "jwt": ["auth header=Bearer {v}", "jwt expired token={v}"],
    "private_key": ["loaded key material:\n{v}"],
    "url_password": ["connecting to {v}", "pool init dsn={v}"],
    "generic_secret": ["config dump: {k}={v}", "env {k}={v}"],
}

CSV_COLUMNS = {
    "email": "email", "phone": "phone", "card": "card_number", "iban": "iban", "ssn": "ssn",
    "ip_address": "last_ip", "date_of_birth": "date_of_birth", "postal_code": "postal_code",
}

COUNTRY = {"en_US": "US", "en_GB": "GB", "de_DE": "DE", "fr_FR": "FR", "nl_NL": "NL",
           "es_ES": "ES", "it_IT": "IT"}


def make_value(ctx: Ctx, etype: str):
    """Return (value_parts, extras) for an entity of ``etype``.

    ``extras`` holds template fields tied to the value (card network, secret key).
    """
    if etype == "card":
        ent, net = v_card(ctx)
        return ent, {"net": net}
    if etype == "url_password":
        parts, key = v_url_password(ctx)
        return parts, {"urlkey": key}
    if etype == "generic_secret":
        key, ent = v_generic(ctx)
        return ent, {"k": key, "kflag": ctx.choice(["api-key", "token", "client-secret", "password"])}
    gen: dict[str, Callable[[Ctx], Ent]] = {
        "email": v_email, "phone": v_phone, "iban": v_iban, "ssn": v_ssn, "ip_address": v_ip,
        "date_of_birth": v_dob, "postal_code": v_postal, "aws_key": v_aws, "github_token": v_github,
        "gitlab_token": v_gitlab, "slack_token": v_slack, "stripe_key": v_stripe, "openai_key": v_openai,
        "jwt": v_jwt, "private_key": v_private_key,
    }
    return gen[etype](ctx), {}


def prose_for(ctx: Ctx, etype: str) -> list:
    """One sentence (parts) mentioning a fresh entity of ``etype``."""
    val, extra = make_value(ctx, etype)
    local = PROSE_LOCAL.get(ctx.lang, {}).get(etype)
    if etype == "postal_code" and ctx.chance(0.55):
        # Keyword or full-address form appropriate for the locale.
        word = ctx.choice(POSTAL_WORD[ctx.locale])
        if ctx.locale == "en_US":
            templates = [word + " {v}", "Ship to {street}, {city}, {state} {v}.", "my " + word + " is {v}"]
        elif ctx.locale == "en_GB":
            templates = [word + " {v}", "Deliver to {street}, {city} {v}.", "my " + word + " is {v}"]
        else:
            templates = [word + " {v}", "{street}, {v} {city}"]
        t = ctx.choice(templates)
    elif local and ctx.chance(0.5):
        t = ctx.choice(local)
    else:
        t = ctx.choice(PROSE[etype])
    parts = tpl(t, ctx, val, **extra)
    # Occasionally add the aws secret next to an access key (a second entity).
    if etype == "aws_key" and ctx.chance(0.35):
        parts += [" Secret: ", v_aws_secret(ctx), "."]
    return parts


def kv_for(ctx: Ctx, etype: str, fmt: str) -> list[tuple[str, list]]:
    """Key/value pairs (value as parts) for config-style scenarios."""
    if etype == "private_key":
        key = ctx.choice(KV_KEYS["private_key"])
        if fmt == "json":
            return [(key, [v_private_key(ctx, "\\n")])]
        if fmt == "yaml":
            return [(key, ["|\n  ", v_private_key(ctx, "\n  ")])]
        return [(key, [v_private_key(ctx, "\n")])]
    val, extra = make_value(ctx, etype)
    if etype == "url_password":
        return [(extra["urlkey"], val)]
    if etype == "generic_secret":
        return [(extra["k"], [val])]
    pairs = [(ctx.choice(KV_KEYS[etype]), [val])]
    if etype == "aws_key" and ctx.chance(0.5):
        pairs.append(("AWS_SECRET_ACCESS_KEY" if pairs[0][0].isupper() else "aws_secret_access_key",
                      [v_aws_secret(ctx)]))
    return pairs


def log_for(ctx: Ctx, etype: str) -> list:
    val, extra = make_value(ctx, etype)
    t = ctx.choice(LOG_TEMPLATES[etype])
    return tpl(t, ctx, val, cc=COUNTRY[ctx.locale], **extra)


# --------------------------------------------------------------------------
# Hard negatives: look like PII/secrets, are not (never labelled)
# --------------------------------------------------------------------------


def _luhn_fail_16(ctx: Ctx) -> str:
    prefix = ctx.choice(["4", "51", "53", "55", "6011", "35"])
    while True:
        num = prefix + ctx.digits(16 - len(prefix))
        if not luhn_ok(num):
            break
    if ctx.chance(0.4):
        num = " ".join(num[i:i + 4] for i in range(0, 16, 4))
    return num


def _bad_iban(ctx: Ctx) -> str:
    loc = ctx.choice(["en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES", "it_IT"])
    iban = ctx.fakers[loc].iban()
    while True:
        check = f"{ctx.rng.randrange(2, 99):02d}"
        bad = iban[:2] + check + iban[4:]
        if not iban_ok(bad):
            break
    if ctx.chance(0.4):
        bad = " ".join(bad[i:i + 4] for i in range(0, len(bad), 4))
    return bad


def _bad_ssn(ctx: Ctx) -> str:
    area = ctx.choice(["000", "666", str(ctx.rng.randrange(900, 1000))])
    group = f"{ctx.rng.randrange(1, 100):02d}"
    return f"{area}-{group}-{ctx.rng.randrange(1, 10000):04d}"


def _version(ctx: Ctx) -> str:
    r = ctx.rng
    k = r.randrange(6)
    if k == 0:
        return f"v{r.randrange(0, 5)}.{r.randrange(0, 30)}.{r.randrange(0, 20)}"
    if k == 1:
        return f"version 10.0.{r.randrange(17000, 23000)}.{r.randrange(100, 5000)}"
    if k == 2:  # IPv4-shaped build number
        return f"build {r.randrange(1, 10)}.{r.randrange(0, 30)}.{r.randrange(0, 10)}.{r.randrange(1, 255)}"
    if k == 3:
        return f"Chrome/{r.randrange(110, 130)}.0.{r.randrange(5000, 7000)}.{r.randrange(10, 200)}"
    if k == 4:
        return f"node v{r.randrange(16, 23)}.{r.randrange(0, 20)}.{r.randrange(0, 10)}"
    return f"{r.randrange(1, 4)}.{r.randrange(0, 30)}.{r.randrange(0, 10)}-alpine"


def _timestamp(ctx: Ctx) -> str:
    t = ctx.timestamp()
    k = ctx.rng.randrange(4)
    if k == 0:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    if k == 1:
        return t.strftime("%Y-%m-%d %H:%M:%S")
    if k == 2:
        return str(int(t.timestamp()))
    return str(int(t.timestamp()) * 1000 + ctx.rng.randrange(1000))


def _non_dob_date(ctx: Ctx) -> str:
    t = ctx.timestamp()
    return ctx.choice([f"invoice date {t:%d/%m/%Y}", f"due {t:%Y-%m-%d}",
                       f"meeting on {MONTHS['en'][t.month - 1]} {t.day}, {t.year}",
                       f"valid until {t:%d.%m.%Y}"])


def _tracking(ctx: Ctx) -> str:
    k = ctx.rng.randrange(3)
    if k == 0:
        return "1Z" + ctx.rand_str(6, UPPER_ALNUM) + ctx.digits(10)
    if k == 1:
        d = "9400" + ctx.digits(18)
        return " ".join(d[i:i + 4] for i in range(0, 22, 4))
    return ctx.digits(10)


# Each hard-negative generator returns (prose sentence, (kv key, kv value)):
# the sentence is used in tickets / e-mails / chat, the pair in configs, logs
# and CSV columns.


def hn_order(c: Ctx):
    v = c.choice([f"#A-{c.rng.randrange(2022, 2026)}-{c.digits(6)}", c.digits(9),
                  "ORD-" + c.rand_str(8, UPPER_ALNUM)])
    sentence = c.choice([f"Order {v} still shows as processing.", f"Re: order {v} — wrong size delivered."])
    return sentence, ("order_id", v)


def hn_timestamp(c: Ctx):
    v = _timestamp(c)
    return f"The job failed at {v} and retried twice.", ("timestamp", v)


def hn_uuid(c: Ctx):
    v = str(uuid.UUID(int=c.rng.getrandbits(128), version=4))
    return f"Request ID: {v}", ("request_id", v)


def hn_version(c: Ctx):
    v = _version(c)
    return f"Reproduced on {v}.", ("version", v)


def hn_git_sha(c: Ctx):
    v = c.rand_str(40, HEX)
    return f"Regression introduced in commit {v}.", ("commit", v)


def hn_sha256(c: Ctx):
    v = c.choice(["sha256:", ""]) + c.rand_str(64, HEX)
    return f"Checksum {v} does not match the release.", ("digest", v)


def hn_tracking(c: Ctx):
    v = _tracking(c)
    return f"Tracking number {v}, shipped yesterday.", ("tracking_number", v)


def hn_price(c: Ctx):
    r = c.rng
    v = c.choice([f"€{r.randrange(1, 10)}.{c.digits(3)},{c.digits(2)}", f"${r.randrange(1, 500)}.{c.digits(2)}",
                  f"£{r.randrange(1, 200)}.{c.digits(2)}", f"{r.randrange(1, 10)} {c.digits(3)},00 €",
                  f"CHF {r.randrange(10, 999)}.90"])
    return f"The total was {v} including VAT.", ("price", v)


def hn_invoice(c: Ctx):
    y = c.rng.randrange(2022, 2026)
    v = c.choice([f"INV-{y}-{c.digits(5)}", f"Nr. {y}-{c.digits(4)}", f"F{y}-{c.digits(4)}"])
    return f"Invoice {v} is overdue.", ("invoice_no", v)


def hn_isbn(c: Ctx):
    v = isbn13(c.rng)
    return f"Please reorder ISBN {v}, two copies.", ("isbn", v)


def hn_luhn_fail(c: Ctx):
    v = _luhn_fail_16(c)
    return c.choice([f"Reference number {v} was quoted on the phone.", f"Customer number {v}",
                     f"Tracking ref {v}"]), ("reference", v)


def hn_bad_iban(c: Ctx):
    v = _bad_iban(c)
    return c.choice([f"Mandate reference {v}.", f"The bank rejected {v} as invalid."]), ("mandate_ref", v)


def hn_bad_ssn(c: Ctx):
    v = _bad_ssn(c)
    return c.choice([f"Test record uses SSN {v} (dummy data).", f"Case number {v}.",
                     f"Form field default: {v}"]), ("test_ssn", v)


def hn_email_like(c: Ctx):
    v = c.choice(["icon@2x.png", "logo@3x.webp", "avatar@2x.jpg", "@" + c.fake.user_name(), "user@localhost",
                  "root@localhost", "npm install @types/node", "admin@intranet", "meet @ 5pm"])
    sentence = c.choice([f"Replace {v} in the assets folder.", f"See {v} for details.", f"Ping {v} if it breaks."])
    return sentence, ("asset", v)


def hn_numbers_prose(c: Ctx):
    r = c.rng
    v = (f"We processed {r.randrange(10 ** 5, 10 ** 7):,} requests across {r.randrange(2, 12)} regions in "
         f"{r.randrange(2019, 2025)}, up {r.randrange(1, 40)}.{r.randrange(10)}% year over year.")
    return v, ("note", v.replace(",", ""))


def hn_placeholder(c: Ctx):
    k, v = c.choice([("OPENAI_API_KEY", "sk-xxxxxxxx"), ("api_key", "YOUR_API_KEY"), ("token", "<your-token-here>"),
                     ("GITHUB_TOKEN", "${GITHUB_TOKEN}"), ("password", "********"), ("GH_TOKEN", "ghp_XXXXXXXXXXXX"),
                     ("AWS_SECRET_ACCESS_KEY", "changeme"), ("client_secret", "REPLACE_ME"),
                     ("STRIPE_SECRET_KEY", "sk_live_..."), ("api_key", "<API_KEY>")])
    return c.choice([f"Set {k}={v} in your .env (placeholder).", f"The docs say to use {v} for {k}."]), (k, v)


def hn_non_dob_date(c: Ctx):
    v = _non_dob_date(c)
    return f"Note the {v}.", ("date", v.split(" ")[-1])


def hn_codes(c: Ctx):
    v = c.choice(["exit code 137", "HTTP 404", "port 5432", "error 0x80070005", "errno 111",
                  f"error code {c.digits(5)}", f"room {c.digits(5)}"])
    return f"It failed with {v}.", ("status", v)


def hn_hex_mac_b64(c: Ctx):
    v = c.choice(["MAC " + ":".join(c.rand_str(2, "0123456789ABCDEF") for _ in range(6)),
                  "color #" + c.rand_str(6, HEX),
                  "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="])
    return f"Value seen: {v}", ("value", v)


def hn_coords(c: Ctx):
    v = f"{c.rng.uniform(36, 60):.4f}, {c.rng.uniform(-9, 20):.4f}"
    return f"The pickup point is at {v}.", ("coords", v)


def hn_url_nopw(c: Ctx):
    v = c.choice([f"postgres://{c.fake.user_name()}@{c.host()}:5432/app", f"https://{c.host()}:8443/health",
                  "postgres://app:${DB_PASSWORD}@db:5432/app", f"redis://{c.host()}:6379/0"])
    return f"Connect using {v} (auth via IAM).", ("DATABASE_URL", v)


HARD_NEGATIVES: dict[str, Callable[[Ctx], tuple[str, tuple[str, str]]]] = {
    "order": hn_order, "timestamp": hn_timestamp, "uuid": hn_uuid, "version": hn_version,
    "git_sha": hn_git_sha, "sha256": hn_sha256, "tracking": hn_tracking, "price": hn_price,
    "invoice": hn_invoice, "isbn": hn_isbn, "luhn_fail": hn_luhn_fail, "bad_iban": hn_bad_iban,
    "bad_ssn": hn_bad_ssn, "email_like": hn_email_like, "numbers_prose": hn_numbers_prose,
    "placeholder": hn_placeholder, "non_dob_date": hn_non_dob_date, "codes": hn_codes,
    "hex_mac_b64": hn_hex_mac_b64, "coords": hn_coords, "url_nopw": hn_url_nopw,
}
HN_NAMES = list(HARD_NEGATIVES)


# --------------------------------------------------------------------------
# Filler (unlabelled) prose
# --------------------------------------------------------------------------

FILLER = [
    "I've been a customer of {company} for years and this has never happened before.",
    "Our office moved to {street} in {city} last month.",
    "{name} from accounting asked me to follow up on this.",
    "Thanks in advance for your help!",
    "Let me know if you need anything else from my side.",
    "The issue started right after the latest update.",
    "I already tried logging out and back in.",
    "This is blocking our release, so a quick answer would be great.",
    "Sorry for the long message.",
    "We are based in {city} and mostly work with {company}.",
    "Please keep {name} in the loop.",
    "It worked fine until last Tuesday.",
    "I'm not sure whether this is a bug or a configuration problem.",
    "The same thing happens on both Chrome and Firefox.",
    "Could you escalate this to the second-level team?",
]
FILLER_LOCAL = {
    "de": ["Vielen Dank im Voraus!", "Das Problem besteht seit gestern.", "Ich wohne in {city}."],
    "fr": ["Merci d'avance pour votre aide.", "Le problème persiste depuis hier.", "J'habite à {city}."],
    "nl": ["Alvast bedankt!", "Het probleem bestaat sinds gisteren.", "Ik woon in {city}."],
    "es": ["¡Gracias de antemano!", "El problema empezó ayer.", "Vivo en {city}."],
    "it": ["Grazie in anticipo!", "Il problema è iniziato ieri.", "Abito a {city}."],
}
GREETING = {"en": ["Hi {first},", "Hello,", "Dear {name},", "Hey team,"],
            "de": ["Hallo {first},", "Sehr geehrte Damen und Herren,"],
            "fr": ["Bonjour {first},", "Madame, Monsieur,"], "nl": ["Hoi {first},", "Beste {name},"],
            "es": ["Hola {first},", "Estimado/a {name}:"], "it": ["Ciao {first},", "Gentile {name},"]}
SIGNOFF = {"en": ["Best,", "Thanks,", "Kind regards,", "Cheers,"], "de": ["Viele Grüße", "Mit freundlichen Grüßen"],
           "fr": ["Cordialement,", "Bien à vous,"], "nl": ["Met vriendelijke groet,", "Groetjes,"],
           "es": ["Saludos,", "Un saludo,"], "it": ["Cordiali saluti,", "Grazie,"]}
SUBJECTS = ["Problem with my account", "Refund request", "Urgent: payment failed", "Question about my invoice",
            "Can't log in", "Update my details", "Deployment broken", "Access request", "Re: your ticket",
            "Fwd: credentials for the new environment", "Data correction needed"]
CHAT_OPENERS = [
    "Can you help me with this?", "Summarize the following message in two sentences:",
    "Rewrite this more formally:", "Translate this to English:", "What's wrong here?",
    "Extract the action items from this:", "Please draft a reply to this customer:",
    "Explain this error to me like I'm new to the team:",
]


def filler(ctx: Ctx) -> str:
    local = FILLER_LOCAL.get(ctx.lang)
    t = ctx.choice(local) if local and ctx.chance(0.35) else ctx.choice(FILLER)
    return "".join(tpl(t, ctx))


# --------------------------------------------------------------------------
# Scenarios: wrap entity items + hard negatives into a realistic document
# --------------------------------------------------------------------------


def _interleave(ctx: Ctx, items: list[list], n_filler: int) -> list[list]:
    """Shuffle entity sentences, hard negatives and filler sentences together."""
    seq = items + [[filler(ctx)] for _ in range(n_filler)]
    ctx.rng.shuffle(seq)
    return seq


def _prose_body(ctx: Ctx, types: list[str], hns: list[str]) -> list:
    items = [prose_for(ctx, t) for t in types]
    items += [[HARD_NEGATIVES[h](ctx)[0]] for h in hns]
    seq = _interleave(ctx, items, ctx.rng.randrange(0, 3) if items else ctx.rng.randrange(2, 5))
    out: list = []
    prev_end = ""
    for i, s in enumerate(seq):
        flat = _flatten(s, [])
        text = "".join(p.value if isinstance(p, Ent) else p for p in flat)
        if any(isinstance(p, Ent) and "\n" in p.value for p in flat):
            sep = "\n\n"  # multi-line items (PEM blocks) get their own paragraph
        elif prev_end in ".!?)":
            sep = " "     # running prose
        else:
            sep = "\n"    # label-style lines ("DOB: ...", "Tel: ...") end the line
        out += [sep if i else "", s]
        prev_end = text.rstrip()[-1:] or "."
    return out


def sc_ticket(ctx: Ctx, types, hns) -> list:
    head = [f"Ticket #{ctx.digits(6)} — {ctx.choice(SUBJECTS)}\n",
            f"Customer: {ctx.field('name')} ({ctx.field('company')})\n",
            f"Priority: {ctx.choice(['P1', 'P2', 'P3', 'low', 'normal', 'high'])}\n\n"]
    return head + _prose_body(ctx, types, hns)


def sc_email(ctx: Ctx, types, hns) -> list:
    lang = ctx.lang if ctx.lang in GREETING else "en"
    greet = "".join(tpl(ctx.choice(GREETING[lang]), ctx))
    sign = ctx.choice(SIGNOFF[lang])
    return [f"Subject: {ctx.choice(SUBJECTS)}\n\n{greet}\n\n", _prose_body(ctx, types, hns),
            f"\n\n{sign}\n{ctx.field('name')}\n{ctx.fake.job()} | {ctx.field('company')}"]


def sc_chat(ctx: Ctx, types, hns) -> list:
    if types and ctx.chance(0.35):
        # "Here's my config, what's wrong?" style prompt embedding a snippet.
        return [ctx.choice(["Why doesn't this config load?", "Can you review this .env file?",
                            "Convert this to YAML:", "Is anything sensitive in here?"]),
                "\n\n```\n", _config_body(ctx, types, hns, fmt="env"), "```"]
    return [ctx.choice(CHAT_OPENERS), "\n\n", _prose_body(ctx, types, hns)]


def _kv_line(fmt: str, key: str, value: list, last: bool) -> list:
    """Render one key/value pair in the given config format."""
    multiline = any(isinstance(p, Ent) and "\n" in p.value for p in _flatten(value, []))
    if fmt == "env":
        return [key, "=", ['"', value, '"'] if multiline else value, "\n"]
    if fmt == "yaml":
        return [key, ": ", value, "\n"]
    if fmt == "toml":
        return [key, ' = """\n' if multiline else ' = "', value, '"""' if multiline else '"', "\n"]
    # json
    return ['  "', key, '": "', value, '"', "" if last else ",", "\n"]


def _config_body(ctx: Ctx, types, hns, fmt: str) -> list:
    pairs: list[tuple[str, list]] = []
    for t in types:
        pairs += kv_for(ctx, t, fmt)
    for h in hns:
        k, v = HARD_NEGATIVES[h](ctx)[1]
        pairs.append((k, [v]))
    # Benign settings so the snippet doesn't consist of only sensitive lines.
    for _ in range(ctx.rng.randrange(1, 4)):
        pairs.append(ctx.choice([("log_level", ["info"]), ("region", [ctx.choice(["eu-west-1", "us-east-1"])]),
                                 ("timeout_ms", [str(ctx.rng.randrange(100, 30000))]), ("debug", ["false"]),
                                 ("service_name", [ctx.field("svc")]), ("max_connections", [ctx.field("n")]),
                                 ("host", [ctx.host()])]))
    ctx.rng.shuffle(pairs)
    if fmt == "env":
        pairs = [(k.upper().replace("-", "_"), v) for k, v in pairs]
    body: list = []
    for i, (k, v) in enumerate(pairs):
        body += _kv_line(fmt, k, v, i == len(pairs) - 1)
    if fmt == "json":
        return ["{\n", body, "}"]
    return body


def sc_config(ctx: Ctx, types, hns) -> list:
    fmt = ctx.choice(["env", "yaml", "json", "toml"])
    name = {"env": ".env", "yaml": "config.yaml", "json": "settings.json", "toml": "config.toml"}[fmt]
    return [f"# {name}\n" if fmt != "json" else "", _config_body(ctx, types, hns, fmt)]


def sc_log(ctx: Ctx, types, hns) -> list:
    lines: list[list] = [log_for(ctx, t) for t in types]
    for h in hns:
        sentence, (k, v) = HARD_NEGATIVES[h](ctx)
        lines.append([f"{k}={v}" if ctx.chance(0.6) else sentence])
    for _ in range(ctx.rng.randrange(1, 4)):
        lines.append([ctx.choice(["health check ok", "cache miss ratio=0.12", "worker started pid=" + ctx.digits(5),
                                  "request completed in " + ctx.digits(3) + "ms", "retrying in 5s"])])
    ctx.rng.shuffle(lines)
    out: list = []
    svc = ctx.field("svc")
    for ln in lines:
        lvl = ctx.choice(["INFO", "INFO", "WARN", "ERROR", "DEBUG"])
        out += [f"{ctx.iso_ts()} {lvl:<5} [{svc}] ", ln, "\n"]
    return out


def sc_csv(ctx: Ctx, types, hns) -> list:
    """CSV export: one column per entity type plus unlabelled columns."""
    sep = "," if ctx.locale in ("en_US", "en_GB") or ctx.chance(0.3) else ";"
    cols = list(dict.fromkeys(types))  # unique, order kept
    extra_cols = ["name", "city"] + [HARD_NEGATIVES[h](ctx)[1][0] for h in hns]
    header = ["customer_id"] + extra_cols[:1] + [CSV_COLUMNS[t] for t in cols] + extra_cols[1:]
    rows: list = [sep.join(header), "\n"]

    def cell(v):
        parts = v if isinstance(v, list) else [v]
        text = "".join(p.value if isinstance(p, Ent) else p for p in _flatten(parts, []))
        return ['"', parts, '"'] if (sep in text or '"' in text) else parts

    for _ in range(ctx.rng.randrange(1, 4)):
        row: list = [cell(ctx.digits(7)), cell(ctx.field("name"))]
        row += [cell(make_value(ctx, t)[0]) for t in cols]
        row += [cell(ctx.field("city"))] + [cell(HARD_NEGATIVES[h](ctx)[1][1]) for h in hns]
        for i, c in enumerate(row):
            rows += [sep if i else "", c]
        rows.append("\n")
    return rows


SCENARIOS = {  # name: (builder, weight)
    "ticket": (sc_ticket, 0.22), "email": (sc_email, 0.20), "chat": (sc_chat, 0.22),
    "log": (sc_log, 0.14), "config": (sc_config, 0.12), "csv": (sc_csv, 0.10),
}


# --------------------------------------------------------------------------
# Main loop
# --------------------------------------------------------------------------


def choose_types(ctx: Ctx) -> list[str]:
    """Pick 1-5 entity types for one text (SSN only in en_US texts)."""
    k = ctx.rng.choices([1, 2, 3, 4, 5], weights=[40, 30, 18, 8, 4])[0]
    pool = [t for t in ALL_TYPES if t != "ssn" or ctx.locale == "en_US"]
    weights = [4.0 if t == "ssn" else 1.0 for t in pool]
    return ctx.rng.choices(pool, weights=weights, k=k)


def choose_scenario(ctx: Ctx, types: list[str]) -> str:
    names = list(SCENARIOS)
    weights = [SCENARIOS[n][1] for n in names]
    while True:
        name = ctx.rng.choices(names, weights=weights)[0]
        if name == "csv" and any(t not in CSV_COLUMNS for t in types):
            continue
        return name


def generate(seed: int, n: int):
    """Yield corpus records; deterministic for a given seed."""
    rng = random.Random(seed)
    fakers = {}
    for i, loc in enumerate(LOCALES):
        f = Faker(loc)
        f.seed_instance(seed * 1000 + i)
        fakers[loc] = f
    for idx in range(n):
        locale = rng.choices(LOCALES, weights=LOCALE_WEIGHTS)[0]
        ctx = Ctx(rng, fakers, locale)
        types = choose_types(ctx) if rng.random() >= P_NO_ENTITY else []
        p_hn = P_HARD_NEG if types else P_HARD_NEG_EMPTY
        hns = rng.sample(HN_NAMES, rng.randrange(1, 4)) if rng.random() < p_hn else []
        scenario = choose_scenario(ctx, types)
        parts = SCENARIOS[scenario][0](ctx, types, hns)
        text, ents = render(parts)
        # Self-check: every span decodes to a non-empty, whitespace-trimmed value.
        raw = text.encode("utf-8")
        for e in ents:
            s = raw[e["start"]:e["end"]].decode("utf-8")
            assert s and s == s.strip(), (idx, e, s)
        yield {"id": idx, "locale": locale, "text": text, "entities": ents}, scenario, bool(hns)


def _ensure_fixed_hash_seed() -> None:
    """Re-exec with PYTHONHASHSEED=0 unless already set.

    Some Faker locale data is built from Python sets (e.g. it_IT's city list is
    ``list({...})``), so its order - and hence which city a seeded RNG picks -
    depends on string hash randomisation.  Pinning the hash seed makes the
    corpus byte-identical across runs.
    """
    if os.environ.get("PYTHONHASHSEED") != "0":
        env = dict(os.environ, PYTHONHASHSEED="0")
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", required=True, help="output JSONL path")
    ap.add_argument("--n", type=int, default=4000, help="number of texts")
    args = ap.parse_args(argv)

    counts: Counter = Counter()
    scen: Counter = Counter()
    locs: Counter = Counter()
    n_empty = n_hn = n_bytes = 0
    with open(args.out, "w", encoding="utf-8") as fh:
        for rec, scenario, had_hn in generate(args.seed, args.n):
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            counts.update(e["type"] for e in rec["entities"])
            scen[scenario] += 1
            locs[rec["locale"]] += 1
            n_empty += not rec["entities"]
            n_hn += had_hn
            n_bytes += len(rec["text"].encode("utf-8"))

    err = sys.stderr
    print(f"wrote {args.n} texts ({n_bytes} bytes) to {args.out} (seed {args.seed})", file=err)
    print(f"  texts without entities: {n_empty} ({n_empty / args.n:.1%}); "
          f"with hard negatives: {n_hn} ({n_hn / args.n:.1%})", file=err)
    print("  locales:   " + ", ".join(f"{k}={v}" for k, v in sorted(locs.items())), file=err)
    print("  scenarios: " + ", ".join(f"{k}={v}" for k, v in sorted(scen.items())), file=err)
    print("  entities per type:", file=err)
    for t in ALL_TYPES:
        print(f"    {t:<15} {counts[t]:>5}", file=err)
    print(f"    {'secrets (all)':<15} {sum(counts[t] for t in SECRET_TYPES):>5}", file=err)
    print(f"    {'total':<15} {sum(counts.values()):>5}", file=err)
    return 0


if __name__ == "__main__":
    _ensure_fixed_hash_seed()
    sys.exit(main())

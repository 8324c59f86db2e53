"""National identifiers in context, for benches/entities/run_ids.sh: valid identifiers (check
digits computed here or by Faker's locale providers) and decoys of the same shape whose check
fails, or with no context word for the types that have no checksum. JSONL: {"id", "type",
"valid", "text", "spans": [[start, end, type]]} (character offsets; decoys have no span)."""

import json
import random
import sys

from faker import Faker

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
rng = random.Random(11)
fk = {loc: Faker(loc) for loc in ("nl_NL", "fr_FR", "it_IT", "es_ES", "en_US")}
for i, f in enumerate(fk.values()):
    f.seed_instance(100 + i)

DNI = "TRWAGMYFPDXBNJZSQVHLCKE"


def nino():
    bad1, bad2 = set("DFIQUV"), set("DFIOQUV")
    while True:
        a, b = rng.choice("ABCEGHJKLMNOPRSTWXYZ"), rng.choice("ABCEGHJKLMNPRSTWXYZ")
        if a not in bad1 and b not in bad2 and a + b not in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
            break
    d = "".join(rng.choice("0123456789") for _ in range(6))
    s = rng.choice("ABCD")
    return rng.choice([f"{a}{b}{d}{s}", f"{a}{b} {d[:2]} {d[2:4]} {d[4:]} {s}"])


def nhs():
    while True:
        d = [rng.randrange(10) for _ in range(9)]
        c = 11 - sum(x * w for x, w in zip(d, range(10, 1, -1))) % 11
        c = 0 if c == 11 else c
        if c != 10:
            s = "".join(map(str, d + [c]))
            return rng.choice([s, f"{s[:3]} {s[3:6]} {s[6:]}"])


def steuer_id():
    while True:
        dup = rng.randrange(10)
        others = [x for x in range(10) if x != dup]
        rng.shuffle(others)
        digits = [dup, dup] + others[:8]
        rng.shuffle(digits)
        if digits[0] != 0:
            break
    product = 10
    for x in digits:
        s = (x + product) % 10 or 10
        product = (s * 2) % 11
    check = (11 - product) % 10
    return "".join(map(str, digits)) + str(check)


def bump(s, alphabet):
    """The same identifier with its last character changed (its check then fails)."""
    c = s[-1]
    return s[:-1] + alphabet[(alphabet.index(c) + 1 + rng.randrange(len(alphabet) - 1)) % len(alphabet)]


DIGITS = "0123456789"
KINDS = {
    # type: (make a valid one, make a decoy from it, context templates)
    "uk_nino": (nino, lambda v: "ZZ" + v[2:] if rng.random() < 0.5 else v[:-1] + rng.choice("EFGHJ"),
                ["My National Insurance number is {v}.", "NI number: {v}", "NINO {v} on the payslip"]),
    "es_dni": (lambda: rng.choice([fk["es_ES"].nif(), fk["es_ES"].nie()]), lambda v: bump(v, DNI),
               ["Mi DNI es {v}.", "DNI/NIE: {v}", "Adjunto copia del NIE {v}"]),
    "it_fiscal_code": (lambda: fk["it_IT"].ssn(), lambda v: bump(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
                       ["Il mio codice fiscale è {v}.", "Codice fiscale: {v}", "CF {v}"]),
    "nhs_number": (nhs, lambda v: bump(v, DIGITS),
                   ["My NHS number is {v}.", "NHS no. {v}", "Patient NHS number: {v}"]),
    "nl_bsn": (lambda: fk["nl_NL"].ssn(), lambda v: bump(v, DIGITS),
               ["Mijn BSN is {v}.", "Burgerservicenummer: {v}", "BSN {v}"]),
    "de_tax_id": (steuer_id, lambda v: bump(v, DIGITS),
                  ["Meine Steuer-ID ist {v}.", "Steuerliche Identifikationsnummer: {v}", "IdNr {v}"]),
    "fr_nir": (lambda: fk["fr_FR"].ssn(), lambda v: v[:-2] + f"{(int(v[-2:]) + 1 + rng.randrange(90)) % 97 or 1:02d}",
               ["Mon numéro de sécurité sociale est {v}.", "NIR : {v}", "Numéro INSEE {v}"]),
    "us_passport": (lambda: fk["en_US"].passport_number(), None,
                    ["My passport number is {v}.", "Passport no: {v}", "US passport {v}"]),
    "us_driver_license": (lambda: rng.choice("ABCDFGHJKLMNPRSTW") + "".join(rng.choice(DIGITS) for _ in range(7)), None,
                          ["My driver's license number is {v}.", "Driver license: {v}", "DL# {v}"]),
}
# Decoys of the types without a checksum: the same value without a context word.
NO_CONTEXT = ["Order {v} shipped today.", "Reference {v} attached.", "Ticket {v} is closed."]

i = 0
for ty, (make, decoy, templates) in KINDS.items():
    for _ in range(N):
        v = make()
        t = rng.choice(templates)
        a = t.index("{v}")
        text = t.replace("{v}", v)
        print(json.dumps({"id": i, "type": ty, "valid": True, "text": text, "spans": [[a, a + len(v), ty]]}, ensure_ascii=False))
        i += 1
        if decoy is not None:
            d = decoy(v)
            text = rng.choice(templates).replace("{v}", d)
        else:
            text = rng.choice(NO_CONTEXT).replace("{v}", v)
        print(json.dumps({"id": i, "type": ty, "valid": False, "text": text, "spans": []}, ensure_ascii=False))
        i += 1

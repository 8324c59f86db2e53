"""Experiment (not shipped): ORGANIZATION as a third type of the entity head, for a company that
is a named person's employer ("{P} joined {E}"). Adds employer templates to the training
families (and to the held-out `signature` family), the labels B-/I-ORGANIZATION, trains and
evaluates the head exactly as the bundle build does (models/build/entity_head.py), and prints
per-split, per-type figures for the INT8 bundle.

    .venv/bin/python benches/entities/employer_experiment.py   # ~3 minutes on 2 cores

Needs the encoder that scripts/setup.sh exports (.deps/encoder). The result and why the shipped
head does not tag employers are in benches/RESULTS.md (issue 20, "ORGANIZATION as employer").
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models" / "build"))
import entity_data  # noqa: E402
import entity_head  # noqa: E402

# Employer contexts per family; `signature` stays held out (ood_family), the rest train.
EMPLOYER = {
    "introduction": [
        "I'm {P} and I work at {E} as a data engineer. How do I ask for a raise?",
        "My name is {P}, I'm a nurse at {E}, and I need help with a rota.",
    ],
    "letter": ["Draft a reference letter for {P}, who worked with us at {E} for three years."],
    "support": [
        "{P} from {E} called about the late delivery.",
        "Ticket #{N}: {P} ({E}) cannot log in since the update.",
    ],
    "hr": [
        "{P} joined {E} as a senior analyst in March.",
        "Verify the employment of {P} at {E} for the mortgage application.",
        "{P}, Head of Procurement at {E}, will join the call.",
    ],
    "notes": [
        "Intro call with {P} ({E}) about the partnership.",
        "Met {P}, CTO of {E}, at the conference; follow up next week.",
    ],
    "narrative": ["{P} left {E} last spring to open her own bakery."],
    "form": ["Name: {P}\nEmployer: {E}\nPosition: analyst", "applicant={P}; employer={E}; city={C}"],
    "travel": ["Book a flight for {P} of {E}; the company pays."],
    "finance": ["{P}, employed by {E} since 2019, applies for a personal loan."],
    "signature": [
        "Thanks!\n-- \n{P} | {E}",
        "Kind regards, {P}, {E}, {A}",
        "Cheers,\n{F}\nSenior Buyer, {E}",
    ],
}


def main():
    # the templates that already name a company next to a person use {O} (unlabelled): they
    # become employers too
    for fam, ts in entity_data.FAMILIES.items():
        fixed = [t.replace("{O}", "{E}") if "{P}" in t or "{F}" in t else t for t in ts]
        entity_data.FAMILIES[fam] = fixed + [t for t in EMPLOYER.get(fam, []) if t not in fixed]
    entity_data.LABELS[:] = entity_data.LABELS + ["B-ORGANIZATION", "I-ORGANIZATION"]
    entity_data.ENTITY_TYPES["E"] = "organization"
    entity_head.TYPES[:] = entity_head.TYPES + ["organization"]
    _, report, counts = entity_head.build(ROOT / ".deps" / "encoder", ["fp32", "int8"])
    r = report["int8"]
    print(f"INT8 bundle, threshold {r['threshold']} (public_calibration <= 5% flagged); texts {counts}")
    types = entity_head.TYPES
    print("| split | texts flagged | " + " | ".join(f"{t} recall / precision / entity recall" for t in types) + " |")
    print("|---|---|" + "---|" * len(types))
    for split, v in r["splits"].items():
        cells = []
        for t in types:
            e = v.get(t)
            cells.append(
                "—" if not e or not e["entities"]
                else f"{e['char_recall']:.3f} / {e['char_precision'] or 0:.3f} / {e['entity_recall']:.3f}"
            )
        print(f"| {split} | {v['flagged_texts']:.3f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

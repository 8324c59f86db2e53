#!/usr/bin/env python3
"""Presidio pattern-recognizer baseline for the PII corpus.

Runs Presidio's *pattern* recognizers directly on every text of a corpus
written by generate_corpus.py, with no NLP engine and no spaCy model: each
recognizer's ``analyze(text=..., entities=[...], nlp_artifacts=None)`` is
called on its own.  (``AnalyzerEngine`` is deliberately not used: it builds a
spaCy NLP engine and would try to load/download ``en_core_web_lg``.)

Consequences of running without an NLP engine, by design:
  * no context-word score boosting (that is done by the engine's
    ContextAwareEnhancer from spaCy lemmas), so scores are the raw pattern
    scores (e.g. 0.05 for "very weak" SSN shapes, 1.0 after a checksum passes);
  * no cross-recognizer conflict resolution; every result with score > 0 is
    kept and written out with its score, so thresholds can be applied later.

Offline workaround: EmailRecognizer validates domains with ``tldextract``,
whose default extractor tries to download the Public Suffix List over HTTP on
first use (falling back to a bundled snapshot after the request fails).  We set
``TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS`` to empty before importing anything, which
makes tldextract use its bundled snapshot without touching the network.

Output JSONL, one line per corpus text::

    {"id": int, "findings": [{"type": str, "start": int, "end": int, "score": float}]}

with UTF-8 byte offsets (Presidio reports Python character offsets; we
convert).  A sidecar ``<out>.timing.json`` records texts, bytes and seconds
(analysis loop only) plus the import/initialisation time and the types this
predictor can emit (read by score.py).

Usage::

    python benches/pii/presidio_baseline.py --corpus corpus.jsonl --out presidio.jsonl
"""

from __future__ import annotations

import os

# Must happen before tldextract is imported (presidio imports it): an empty URL
# list makes tldextract use its bundled Public Suffix List snapshot offline.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from importlib.metadata import version  # noqa: E402

_T_IMPORT = time.perf_counter()
from presidio_analyzer.predefined_recognizers import (  # noqa: E402
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)
_IMPORT_SECONDS = time.perf_counter() - _T_IMPORT

# Presidio entity name -> corpus type.
ENTITY_MAP = {
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "CREDIT_CARD": "card",
    "IBAN_CODE": "iban",
    "US_SSN": "ssn",
    "IP_ADDRESS": "ip_address",
}

# Regions for phonenumbers matching, covering the corpus locales.
PHONE_REGIONS = ("US", "GB", "DE", "FR", "NL", "ES", "IT")


def build_recognizers() -> list:
    """Instantiate the pattern recognizers (no NLP engine, no model)."""
    return [
        EmailRecognizer(),
        PhoneRecognizer(supported_regions=PHONE_REGIONS),
        CreditCardRecognizer(),
        IbanRecognizer(),
        UsSsnRecognizer(),
        IpRecognizer(),
    ]


def char_to_byte_offsets(text: str):
    """Return a function mapping a character offset to a UTF-8 byte offset."""
    if text.isascii():
        return lambda i: i
    prefix = [0]
    total = 0
    for ch in text:
        total += len(ch.encode("utf-8"))
        prefix.append(total)
    return prefix.__getitem__


def analyze(recognizers: list, text: str) -> list[dict]:
    """Run every recognizer on ``text``; return findings with byte offsets."""
    to_byte = char_to_byte_offsets(text)
    findings = []
    for rec in recognizers:
        for res in rec.analyze(text=text, entities=rec.supported_entities, nlp_artifacts=None):
            if res.score <= 0:
                continue
            findings.append({
                "type": ENTITY_MAP[res.entity_type],
                "start": to_byte(res.start),
                "end": to_byte(res.end),
                "score": round(float(res.score), 4),
            })
    findings.sort(key=lambda f: (f["start"], f["end"], f["type"]))
    return findings


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Presidio pattern-recognizer baseline (no spaCy model).")
    ap.add_argument("--corpus", required=True, help="corpus JSONL from generate_corpus.py")
    ap.add_argument("--out", required=True, help="predictions JSONL to write")
    args = ap.parse_args(argv)

    # Presidio logs a warning per recognizer about missing NLP artifacts in some
    # versions; keep stderr readable.
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)

    t0 = time.perf_counter()
    recognizers = build_recognizers()
    init_seconds = time.perf_counter() - t0

    with open(args.corpus, encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]

    n_bytes = 0
    n_findings = 0
    out_lines = []
    t0 = time.perf_counter()
    for rec in records:
        text = rec["text"]
        n_bytes += len(text.encode("utf-8"))
        findings = analyze(recognizers, text)
        n_findings += len(findings)
        out_lines.append(json.dumps({"id": rec["id"], "findings": findings}))
    seconds = time.perf_counter() - t0

    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(out_lines) + ("\n" if out_lines else ""))

    timing = {
        "predictor": "presidio-patterns",
        "texts": len(records),
        "bytes": n_bytes,
        "seconds": round(seconds, 4),              # analysis loop only
        "init_seconds": round(init_seconds, 4),    # recognizer construction
        "import_seconds": round(_IMPORT_SECONDS, 4),
        "texts_per_second": round(len(records) / seconds, 1) if seconds else None,
        "mb_per_second": round(n_bytes / 1e6 / seconds, 3) if seconds else None,
        "findings": n_findings,
        "supported_types": sorted(ENTITY_MAP.values()),
        "presidio_analyzer_version": version("presidio-analyzer"),
        "phonenumbers_version": version("phonenumbers"),
        "phone_regions": list(PHONE_REGIONS),
        "python": platform.python_version(),
        "single_thread": True,
    }
    with open(args.out + ".timing.json", "w", encoding="utf-8") as fh:
        json.dump(timing, fh, indent=2)
        fh.write("\n")

    print(f"presidio: {len(records)} texts, {n_bytes} bytes, {n_findings} findings in "
          f"{seconds:.2f}s ({timing['texts_per_second']} texts/s); init {init_seconds:.2f}s, "
          f"import {_IMPORT_SECONDS:.2f}s -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

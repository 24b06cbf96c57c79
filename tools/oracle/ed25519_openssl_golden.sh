#!/usr/bin/env bash
# Golden file for src/models/signing.rs: an Ed25519 manifest signature made by OpenSSL (an
# independent implementation) over exactly the bytes nephrod signs — the domain line
# "nephrod model package manifest v1\n" followed by manifest.toml — with a fixed seed.
# Ed25519 is deterministic, so nephrod's signature must equal OpenSSL's byte for byte. It is
# also the recipe for a vendor who signs with OpenSSL or an HSM instead of `nephrod models sign`.
#
# Pinned: OpenSSL 3.x (`openssl pkeyutl -rawin`, 3.0.19 when the golden was made).
# Usage: bash tools/oracle/ed25519_openssl_golden.sh  (writes tests/data/signing/openssl_golden.json)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=tests/data/signing
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

seed=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
# PKCS#8 DER of an Ed25519 private key = fixed 16-byte prefix (RFC 8410) + the 32-byte seed.
printf '302e020100300506032b657004220420%s' "$seed" | xxd -r -p > "$work/key.der"
openssl pkey -inform DER -in "$work/key.der" -out "$work/key.pem"
# SubjectPublicKeyInfo DER: 12-byte prefix + the 32-byte public key.
public=$(openssl pkey -in "$work/key.pem" -pubout -outform DER | tail -c 32 | xxd -p -c 64)

cp "$out/manifest.toml" "$work/manifest.toml"
{ printf 'nephrod model package manifest v1\n'; cat "$work/manifest.toml"; } > "$work/message"
openssl pkeyutl -sign -rawin -inkey "$work/key.pem" -in "$work/message" -out "$work/sig"
signature=$(xxd -p -c 128 "$work/sig")

cat > "$out/openssl_golden.json" <<JSON
{
  "tool": "$(openssl version)",
  "seed": "$seed",
  "public_key": "$public",
  "manifest": "manifest.toml",
  "signature": "$signature"
}
JSON
echo "wrote $out/openssl_golden.json"

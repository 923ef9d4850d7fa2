"""Verifies a SentryAgent marketplace listing with code independent of the
project: RFC 8785 canonical JSON from the `rfc8785` package, JWS verification from
`joserfc`, Ed25519 from `cryptography`.

    verify_listing.py card <agent-card.json> <jwks.json>
        Checks every signature of an A2A agent card: the payload is the
        card without `signatures` in RFC 8785 form, the key is the JWKS key
        named by the protected header's `kid`.
    verify_listing.py did <did.json> <jwks.json> <expected did>
        Checks that the IdP's did:web document lists every Ed25519 key of
        the JWKS as a Multikey `<did>#<kid>` with the same public key.
    verify_listing.py badge <badge.json> <did.json> <status-list.json>
        Checks the eddsa-jcs-2022 proofs of an agent badge and of its status
        list with the did:web key they name (`cryptography` for Ed25519),
        then reads the badge's bit in the GZIP-compressed bitstring.

Prints one line starting with `verified` and exits 0, or prints the reason
and exits 1.
"""

import base64
import gzip
import hashlib
import json
import sys

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b58decode(text: str) -> bytes:
    n = 0
    for ch in text:
        n = n * 58 + B58.index(ch)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + raw


def fail(reason: str) -> None:
    print(f"FAILED: {reason}")
    sys.exit(1)


def verify_card(card_path: str, jwks_path: str) -> None:
    with open(card_path, "rb") as f:
        card = json.load(f)
    with open(jwks_path, "rb") as f:
        keys = KeySet.import_key_set(json.load(f))
    signatures = card.pop("signatures", None)
    if not signatures:
        fail("the card has no signatures")
    payload = rfc8785.dumps(card)
    kids = []
    for sig in signatures:
        header = json.loads(b64url_decode(sig["protected"]))
        if header.get("typ") != "JOSE" or "kid" not in header:
            fail(f"unexpected protected header {header}")
        compact = f"{sig['protected']}.{b64url(payload)}.{sig['signature']}"
        try:
            jws.deserialize_compact(compact, keys, algorithms=[header["alg"]])
        except JoseError as e:
            fail(f"signature by {header['kid']} does not verify: {e!r}")
        except ValueError as e:
            fail(f"signature by {header['kid']} refused: {e!r}")
        kids.append(header["kid"])
    print("verified card signed by " + ",".join(kids))


def verify_did(did_path: str, jwks_path: str, expected: str) -> None:
    with open(did_path, "rb") as f:
        doc = json.load(f)
    with open(jwks_path, "rb") as f:
        jwks = json.load(f)
    if doc.get("id") != expected:
        fail(f"document id {doc.get('id')!r} is not {expected!r}")
    methods = {m["id"]: m for m in doc.get("verificationMethod", [])}
    checked = 0
    for key in jwks["keys"]:
        if key.get("crv") != "Ed25519":
            continue
        mid = f"{expected}#{key['kid']}"
        m = methods.get(mid)
        if m is None or m.get("type") != "Multikey" or m.get("controller") != expected:
            fail(f"{mid} is not a Multikey of the document")
        if mid not in doc.get("assertionMethod", []):
            fail(f"{mid} is not an assertion method")
        mb = m["publicKeyMultibase"]
        if not mb.startswith("z"):
            fail(f"{mid}: not base58btc")
        raw = b58decode(mb[1:])
        if raw[:2] != b"\xed\x01" or raw[2:] != b64url_decode(key["x"]):
            fail(f"{mid}: the Multikey is not the JWKS key")
        checked += 1
    if checked == 0:
        fail("no Ed25519 key checked")
    print(f"verified did:web document with {checked} Ed25519 key(s)")


def verify_proof(doc, did_doc):
    """eddsa-jcs-2022 (Data Integrity EdDSA Cryptosuites v1.0, 3.3): an
    Ed25519 signature over SHA-256(JCS(proof options)) || SHA-256(JCS(doc))."""
    doc = dict(doc)
    proof = dict(doc.pop("proof"))
    if proof.get("type") != "DataIntegrityProof" or proof.get("cryptosuite") != "eddsa-jcs-2022":
        fail(f"unexpected proof {proof.get('type')}/{proof.get('cryptosuite')}")
    value = proof.pop("proofValue")
    if "@context" in proof:
        doc["@context"] = proof["@context"]
    method = proof["verificationMethod"]
    if method not in did_doc.get("assertionMethod", []):
        fail(f"{method} is not an assertion method of {did_doc.get('id')}")
    vm = next((m for m in did_doc["verificationMethod"] if m["id"] == method), None)
    if vm is None or vm.get("type") != "Multikey":
        fail(f"{method} is not a Multikey")
    raw = b58decode(vm["publicKeyMultibase"][1:])
    if raw[:2] != b"\xed\x01":
        fail(f"{method} is not an Ed25519 key")
    digest = hashlib.sha256(rfc8785.dumps(proof)).digest() + hashlib.sha256(rfc8785.dumps(doc)).digest()
    try:
        Ed25519PublicKey.from_public_bytes(raw[2:]).verify(b58decode(value[1:]), digest)
    except InvalidSignature:
        fail(f"the proof by {method} does not verify")


def verify_badge(badge_path, did_path, status_path):
    with open(badge_path, "rb") as f:
        badge = json.load(f)
    with open(did_path, "rb") as f:
        did_doc = json.load(f)
    with open(status_path, "rb") as f:
        status_list = json.load(f)
    for doc in (badge, status_list):
        if doc.get("issuer") != did_doc.get("id"):
            fail(f"issuer {doc.get('issuer')!r} is not {did_doc.get('id')!r}")
        verify_proof(doc, did_doc)
    entry = badge["credentialStatus"]
    if entry["statusListCredential"] != status_list["id"] or entry["type"] != "BitstringStatusListEntry":
        fail("the status list is not the badge's")
    subject = status_list["credentialSubject"]
    if subject["statusPurpose"] != entry["statusPurpose"]:
        fail("status purposes differ")
    encoded = subject["encodedList"]
    if not encoded.startswith("u"):
        fail("encodedList is not multibase base64url")
    bits = gzip.decompress(b64url_decode(encoded[1:]))
    if len(bits) * 8 < 131072:
        fail("the status list is shorter than 16 KB")
    index = int(entry["statusListIndex"])
    revoked = (bits[index // 8] >> (7 - index % 8)) & 1
    print(f"verified badge status={'revoked' if revoked else 'valid'}")


def main() -> None:
    if len(sys.argv) >= 4 and sys.argv[1] == "card":
        verify_card(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 5 and sys.argv[1] == "did":
        verify_did(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) >= 5 and sys.argv[1] == "badge":
        verify_badge(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        fail("usage: verify_listing.py card|did|badge ...")


if __name__ == "__main__":
    main()

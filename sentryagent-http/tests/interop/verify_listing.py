"""Verifies a SentryAgent marketplace listing with code independent of the
project: RFC 8785 canonical JSON from the `rfc8785` package and JWS
verification from `joserfc`.

    verify_listing.py card <agent-card.json> <jwks.json>
        Checks every signature of an A2A agent card: the payload is the
        card without `signatures` in RFC 8785 form, the key is the JWKS key
        named by the protected header's `kid`.
    verify_listing.py did <did.json> <jwks.json> <expected did>
        Checks that the IdP's did:web document lists every Ed25519 key of
        the JWKS as a Multikey `<did>#<kid>` with the same public key.

Prints one line starting with `verified` and exits 0, or prints the reason
and exits 1.
"""

import base64
import json
import sys

import rfc8785
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


def main() -> None:
    if len(sys.argv) >= 4 and sys.argv[1] == "card":
        verify_card(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 5 and sys.argv[1] == "did":
        verify_did(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        fail("usage: verify_listing.py card|did ...")


if __name__ == "__main__":
    main()

"""Password hashing (scrypt, from the standard library) and JWT bearer tokens.

The signing secret is generated on first start and kept in the data dir with mode 0600;
there is no built-in fallback secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import jwt

from dumont_plan.files import create_atomic

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "sub", "jti", "uid", "gen"]


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        digest = hashlib.scrypt(
            password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except ValueError:  # a damaged hash (bad split, base64 or parameters) matches nothing
        return False
    return hmac.compare_digest(digest, expected)


# Verified against when the e-mail is unknown, so both failures take the same time.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def verify_unknown_user(password: str) -> bool:
    """Spend the time of a real check on an unknown account; always False."""
    verify_password(password, _DUMMY_HASH)
    return False


def load_or_create_secret(data_dir: Path) -> str:
    """The per-install JWT secret, created (0600) on first start.

    The file appears complete or not at all (written aside, then hard-linked into place), so
    two servers starting at once on one data dir agree on one secret.
    """
    path = data_dir / "jwt-secret"
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        create_atomic(path, secrets.token_urlsafe(48))  # False: another server was first
    secret = path.read_text(encoding="utf-8").strip()
    if len(secret) < 32:
        raise RuntimeError(f"{path} is damaged (too short); delete it to generate a new secret")
    return secret


def issue_token(secret: str, email: str, ttl_seconds: int, *, user_id: int, generation: int) -> str:
    """A token naming the account by id and e-mail, and the account's token generation.

    The id is never reused (AUTOINCREMENT), so a token of a removed account does not work for a
    new account of the same e-mail; a bumped generation (logout-all) ends every older token.
    """
    now = int(time.time())
    claims = {
        "sub": email,
        "uid": user_id,
        "gen": generation,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(secret: str, token: str) -> dict[str, Any] | None:
    """The claims of a valid token, or None (bad signature, expired, malformed)."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": REQUIRED_CLAIMS}
        )
    except jwt.PyJWTError:
        return None
    if not all(type(claims[key]) is int for key in ("uid", "gen")):
        return None
    return claims

"""Client authentication: JWTs signed with HS256 (a shared secret) or RS256/ES256 (a public key).

A token carries ``sub`` (the user id), ``exp`` and optionally ``roles``. Verification gives a
:class:`Principal`; anything wrong raises :class:`AuthError` with a reason that is safe to show
the client (never the key, never the token).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from gateway.settings import GatewaySettings
from shared.events import is_user

MAX_TOKEN_CHARS = 8192  # at connect the 8 KiB line limit (gateway/server.py) bites first


class AuthError(Exception):
    """The token was refused; ``str(exc)`` is safe to send to the client."""


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    roles: frozenset[str]
    expires_at: float | None  # epoch seconds

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) >= self.expires_at


class Authenticator:
    def __init__(self, settings: GatewaySettings) -> None:
        self._audience = settings.jwt_audience or None
        self._issuer = settings.jwt_issuer or None
        self._key: str | bytes | None
        if settings.jwt_secret:
            self._key, self._algorithms = settings.jwt_secret.reveal(), ["HS256"]
        elif settings.jwt_public_key:
            self._key, self._algorithms = settings.public_key_pem(), ["RS256", "ES256"]
        else:
            self._key, self._algorithms = None, []

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def verify(self, token: str) -> Principal:
        if self._key is None:
            raise AuthError("this gateway has no JWT key configured: tokens cannot be checked")
        if not token:
            raise AuthError("token missing")
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError(f"token too long: {len(token)} characters, at most {MAX_TOKEN_CHARS}")
        try:
            claims = jwt.decode(
                token, self._key, algorithms=self._algorithms, audience=self._audience,
                issuer=self._issuer, options={"require": ["sub", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        sub = claims.get("sub")
        if not is_user(sub):
            raise AuthError("invalid token: 'sub' must be 1-256 characters without control characters")
        roles = claims.get("roles") or []
        if isinstance(roles, str):
            roles = [roles]
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise AuthError("invalid token: 'roles' must be a list of strings")
        exp = claims.get("exp")
        return Principal(sub, frozenset(roles), float(exp) if exp is not None else None)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if that is what it is."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None

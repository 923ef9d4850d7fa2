//! JOSE: JWK, compact JWS and JWT.

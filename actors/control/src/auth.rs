//! The bearer token check, as extractors a handler lists first: [`Mutating`] on routes that
//! change the pod, [`Reading`] on the others (checked only with `protect_reads`).

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use ochopod_config::Secret;

use crate::{ControlError, ControlState};

/// Proof that a mutating request carried the token (or that none is configured).
pub struct Mutating;

/// Proof that a read request may proceed.
pub struct Reading;

impl FromRequest for Mutating {
    type Error = ControlError;
    type Future = Ready<Result<Self, ControlError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(check(req, true).map(|_| Mutating))
    }
}

impl FromRequest for Reading {
    type Error = ControlError;
    type Future = Ready<Result<Self, ControlError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(check(req, false).map(|_| Reading))
    }
}

fn check(req: &HttpRequest, mutating: bool) -> Result<(), ControlError> {
    let state = req.app_data::<web::Data<ControlState>>().ok_or(ControlError::Unavailable("control state"))?;
    if !mutating && !state.protect_reads {
        return Ok(());
    }
    let presented = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if token_matches(state.token.as_ref(), presented) {
        Ok(())
    } else {
        Err(ControlError::Unauthorized)
    }
}

/// `true` when no token is configured, or when `authorization` is `Bearer <the token>`.
pub(crate) fn token_matches(token: Option<&Secret>, authorization: Option<&str>) -> bool {
    let Some(Secret(expected)) = token else { return true };
    let Some(value) = authorization else { return false };
    let Some((scheme, presented)) = value.trim().split_once(' ') else { return false };
    scheme.eq_ignore_ascii_case("bearer") && ct_eq(presented.trim().as_bytes(), expected.as_bytes())
}

/// Compares in time that depends only on the lengths, so response timing tells an attacker
/// nothing about how many leading bytes of a guess were right.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare_is_an_equality() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"s3cret", b"s3cret"));
        assert!(!ct_eq(b"s3cret", b"s3cres"));
        assert!(!ct_eq(b"s3cret", b"s3cret!"));
        assert!(!ct_eq(b"", b"x"));
        // Lengths that differ by a multiple of 256 must not look equal.
        assert!(!ct_eq(&[0u8; 256], b""));
    }

    #[test]
    fn the_bearer_header_is_parsed_strictly() {
        let t = Secret("tok".into());
        assert!(token_matches(None, None));
        assert!(token_matches(None, Some("Bearer whatever")));
        assert!(token_matches(Some(&t), Some("Bearer tok")));
        assert!(token_matches(Some(&t), Some("bearer tok")));
        assert!(!token_matches(Some(&t), None));
        assert!(!token_matches(Some(&t), Some("tok")));
        assert!(!token_matches(Some(&t), Some("Basic tok")));
        assert!(!token_matches(Some(&t), Some("Bearer tok2")));
        assert!(!token_matches(Some(&t), Some("Bearer ")));
    }
}

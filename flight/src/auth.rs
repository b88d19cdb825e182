//! Every call's token, checked before any handler runs: `authorization: Bearer <token>`,
//! or `Basic` with the token as the password (what ADBC's and pyarrow's handshakes send).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use chiso_api::{Auth, Principal};
use tonic::{Request, Status};

/// The interceptor in front of the service: puts the caller's [`Principal`] (and its token,
/// for the handshake to hand back) into the request.
#[derive(Clone)]
pub(crate) struct Authenticate {
    auth: Auth,
    /// Whether the listener speaks TLS (then a token may come from any host).
    secure: bool,
}

/// The token a call came with.
#[derive(Clone)]
pub(crate) struct Token(pub String);

impl Authenticate {
    pub(crate) fn new(auth: Auth, secure: bool) -> Self {
        Self { auth, secure }
    }
}

impl tonic::service::Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let token = match request.metadata().get("authorization") {
            Some(value) => {
                let value = value
                    .to_str()
                    .map_err(|_| Status::unauthenticated("the authorization header is not text"))?;
                Some(credential(value)?)
            }
            None => None,
        };
        if !self.auth.is_enabled() {
            let principal = self.auth.principal_of("").map_err(|_| denied())?;
            request.extensions_mut().insert(principal);
            request
                .extensions_mut()
                .insert(Token(token.unwrap_or_default()));
            return Ok(request);
        }
        let Some(token) = token else {
            return Err(Status::unauthenticated(
                "send a chiso token: `authorization: Bearer <token>`, or the token as the password of a Basic handshake",
            ));
        };
        let loopback = request
            .remote_addr()
            .is_some_and(|address| address.ip().to_canonical().is_loopback());
        if !self.secure && !loopback {
            return Err(Status::unauthenticated(
                "chiso takes a token from another host only over TLS: connect with grpc+tls://",
            ));
        }
        let principal: Principal = self.auth.principal_of(&token).map_err(|_| denied())?;
        principal
            .require_query()
            .map_err(|_| Status::permission_denied("this token has no `query` scope"))?;
        request.extensions_mut().insert(principal);
        request.extensions_mut().insert(Token(token));
        Ok(request)
    }
}

fn denied() -> Status {
    Status::unauthenticated("the token is unknown or was revoked")
}

/// The token in an `authorization` value: `Bearer <token>` (or `Token <token>`), or `Basic`
/// with `user:token` in base64, padded or not (Go clients leave the padding out).
fn credential(value: &str) -> Result<String, Status> {
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
        return Ok(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        const BASE64: GeneralPurpose = GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let decoded = BASE64
            .decode(rest)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| Status::unauthenticated("Basic credentials are not base64 text"))?;
        let (_user, password) = decoded.split_once(':').unwrap_or(("", &decoded));
        return Ok(password.to_owned());
    }
    Err(Status::unauthenticated(
        "authorization must be `Bearer <token>` or `Basic` with the token as the password",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_padded_or_not_give_the_token() {
        assert_eq!(credential("Bearer abc").unwrap(), "abc");
        assert_eq!(credential("bearer  abc ").unwrap(), "abc");
        // "chiso:tok" is "Y2hpc286dG9r"; "chiso:to" needs padding: "Y2hpc286dG8="
        assert_eq!(credential("Basic Y2hpc286dG9r").unwrap(), "tok");
        assert_eq!(credential("Basic Y2hpc286dG8=").unwrap(), "to");
        assert_eq!(credential("Basic Y2hpc286dG8").unwrap(), "to");
        assert!(credential("Digest x").is_err());
        assert!(credential("Basic %%%").is_err());
    }
}

//! The claim checks of a verified token: `exp` and `nbf` as NumericDates,
//! and the configured `aud`, `iss` and `typ`, each required once configured.

use serde_json::{Map, Value};

use super::error::AuthError;

/// Claim checks beyond the signature. A configured claim is required: a
/// token without it is refused like one with a wrong value.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// `aud` must be this string, or an array that contains it.
    pub audience: Option<String>,
    /// `iss` must be this string.
    pub issuer: Option<String>,
    /// Required value of the `typ` claim.
    pub typ: Option<String>,
    /// A `typ` value this verifier refuses: the subscriber token type, for
    /// publisher tokens verified with the subscriber key.
    pub refused_typ: Option<String>,
    pub leeway_secs: u64,
}

/// A NumericDate claim (RFC 7519 §2: seconds, possibly fractional).
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or(AuthError::ClaimFormat(name)),
        Some(_) => Err(AuthError::ClaimFormat(name)),
    }
}

impl Rules {
    /// Checks the verified claims; returns `exp` in whole seconds (rounded
    /// down, so a stream never outlives its token).
    pub(super) fn check(&self, claims: &Map<String, Value>, now: f64) -> Result<u64, AuthError> {
        let leeway = self.leeway_secs as f64;
        let exp = numeric_date(claims, "exp")?
            .ok_or_else(|| AuthError::MissingClaim("exp".to_owned()))?;
        if exp + leeway <= now {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = numeric_date(claims, "nbf")? {
            if nbf > now + leeway {
                return Err(AuthError::NotYetValid);
            }
        }
        if let Some(want) = &self.audience {
            let accepted = match claims.get("aud") {
                None => return Err(AuthError::MissingClaim("aud".to_owned())),
                Some(Value::String(aud)) => aud == want,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(want)),
                Some(_) => false,
            };
            if !accepted {
                return Err(AuthError::Audience);
            }
        }
        if let Some(want) = &self.issuer {
            match claims.get("iss") {
                None => return Err(AuthError::MissingClaim("iss".to_owned())),
                Some(Value::String(iss)) if iss == want => {}
                Some(_) => return Err(AuthError::Issuer),
            }
        }
        let typ = claims.get("typ");
        if let Some(want) = &self.typ {
            match typ {
                None => return Err(AuthError::MissingClaim("typ".to_owned())),
                Some(Value::String(t)) if t == want => {}
                Some(_) => return Err(AuthError::Type(want.clone())),
            }
        }
        if let Some(refused) = &self.refused_typ {
            if typ.and_then(Value::as_str) == Some(refused.as_str()) {
                return Err(AuthError::SubscriberType(refused.clone()));
            }
        }
        // `as` saturates: an `exp` past u64::MAX seconds is "never".
        Ok(exp.floor().max(0.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: f64 = 1_800_000_000.0;

    fn check(rules: &Rules, claims: Value) -> Result<u64, AuthError> {
        let Value::Object(map) = claims else {
            panic!("claims object")
        };
        rules.check(&map, NOW)
    }

    fn strict() -> Rules {
        Rules {
            audience: Some("aud1".into()),
            issuer: Some("iss1".into()),
            typ: Some("access".into()),
            ..Rules::default()
        }
    }

    #[test]
    fn configured_claims_are_required_not_only_matched() {
        let exp = NOW + 60.0;
        let ok = json!({"exp": exp, "aud": "aud1", "iss": "iss1", "typ": "access"});
        assert_eq!(check(&strict(), ok), Ok(exp as u64));
        let missing = |name: &str| {
            let mut c = json!({"exp": exp, "aud": "aud1", "iss": "iss1", "typ": "access"});
            c.as_object_mut().unwrap().remove(name);
            check(&strict(), c)
        };
        for name in ["exp", "aud", "iss", "typ"] {
            assert_eq!(missing(name), Err(AuthError::MissingClaim(name.into())));
        }
        let with = |name: &str, v: Value| {
            let mut c = json!({"exp": exp, "aud": "aud1", "iss": "iss1", "typ": "access"});
            c[name] = v;
            check(&strict(), c)
        };
        assert!(with("aud", json!(["x", "aud1"])).is_ok());
        assert_eq!(with("aud", json!(["x"])), Err(AuthError::Audience));
        assert_eq!(with("aud", json!("aud2")), Err(AuthError::Audience));
        assert_eq!(with("aud", json!(7)), Err(AuthError::Audience));
        assert_eq!(with("iss", json!(["iss1"])), Err(AuthError::Issuer));
        assert_eq!(with("iss", json!("iss2")), Err(AuthError::Issuer));
        assert_eq!(
            with("typ", json!("refresh")),
            Err(AuthError::Type("access".into()))
        );
        // Nothing configured: the claims are not looked at.
        assert!(check(&Rules::default(), json!({"exp": exp, "aud": 1, "iss": []})).is_ok());
    }

    #[test]
    fn numeric_dates_may_be_fractional_and_saturate() {
        let rules = Rules::default();
        assert_eq!(check(&rules, json!({"exp": NOW + 0.5})), Ok(NOW as u64));
        assert_eq!(
            check(&rules, json!({"exp": NOW - 0.5})),
            Err(AuthError::Expired)
        );
        assert_eq!(check(&rules, json!({"exp": u64::MAX})), Ok(u64::MAX));
        assert_eq!(check(&rules, json!({"exp": 1e300})), Ok(u64::MAX));
        assert_eq!(check(&rules, json!({"exp": -5})), Err(AuthError::Expired));
        assert_eq!(
            check(&rules, json!({"exp": "tomorrow"})),
            Err(AuthError::ClaimFormat("exp"))
        );
        assert_eq!(
            check(&rules, json!({"exp": NOW + 60.0, "nbf": NOW + 0.5})),
            Err(AuthError::NotYetValid)
        );
        let lenient = Rules {
            leeway_secs: 5,
            ..Rules::default()
        };
        assert!(check(&lenient, json!({"exp": NOW - 4.0, "nbf": NOW + 4.0})).is_ok());
    }

    #[test]
    fn a_publisher_verifier_refuses_the_subscriber_type() {
        let rules = Rules {
            refused_typ: Some("access".into()),
            ..Rules::default()
        };
        let exp = NOW + 60.0;
        assert_eq!(
            check(&rules, json!({"exp": exp, "typ": "access"})),
            Err(AuthError::SubscriberType("access".into()))
        );
        assert!(check(&rules, json!({"exp": exp})).is_ok());
        assert!(check(&rules, json!({"exp": exp, "typ": "service"})).is_ok());
    }
}

//! Turns request bodies into domain values in one step that gathers every
//! field error, so a client learns of all its mistakes at once.

use rocket::http::uri::Origin;

use super::problem::ApiError;
use crate::accounts::Caller;
use crate::domain::{FieldError, Password};

/// The field errors of one request, gathered while its fields are parsed.
#[derive(Default)]
pub(super) struct Fields {
    errors: Vec<FieldError>,
}

impl Fields {
    /// Parses a required field; its error is kept, not returned.
    pub(super) fn required<T>(
        &mut self,
        field: &str,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let Some(value) = value else {
            self.errors.push(FieldError::new(field, "is required"));
            return None;
        };
        parse(value)
            .map_err(|message| self.errors.push(FieldError::new(field, message)))
            .ok()
    }

    /// Parses a field that may be absent: `Some(None)` when it is.
    pub(super) fn optional<T>(
        &mut self,
        field: &str,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        match value {
            None => Some(None),
            Some(value) => self.required(field, Some(value), parse).map(Some),
        }
    }

    /// The current password offered as proof in a body. Required only when
    /// the caller has no credential that could stand in for it.
    pub(super) fn proof_password(
        &mut self,
        caller: &Caller,
        password: Option<&str>,
    ) -> Option<Option<Password>> {
        match (password, caller) {
            (None, Caller::Anonymous(_)) => self.required("password", None, candidate).map(Some),
            (password, _) => self.optional("password", password, candidate),
        }
    }

    /// Keeps an error about `field` found outside the parsing.
    pub(super) fn invalid(&mut self, field: &str, reason: String) {
        self.errors.push(FieldError::new(field, reason));
    }

    /// The problem listing every error gathered.
    pub(super) fn into_error(self) -> ApiError {
        ApiError::invalid_fields(self.errors)
    }

    /// The same problem, with its own `detail`.
    pub(super) fn into_error_saying(self, detail: &str) -> ApiError {
        ApiError::Validation {
            detail: detail.to_owned(),
            errors: self.errors,
        }
    }
}

/// A password offered as proof of identity: any non-empty string.
pub(super) fn candidate(raw: &str) -> Result<Password, String> {
    if raw.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(Password::candidate(raw))
    }
}

/// Refuses every query parameter of `uri` that the route does not take,
/// naming each: a misspelt one (`limt`) would otherwise be ignored without
/// a word, as an unknown body field is not.
pub(super) fn only_query_parameters(uri: &Origin<'_>, taken: &[&str]) -> Result<(), ApiError> {
    let mut unknown: Vec<String> = Vec::new();
    for (name, _) in uri.query().into_iter().flat_map(|query| query.segments()) {
        if !taken.contains(&name) && !unknown.iter().any(|seen| seen == name) {
            unknown.push(name.to_owned());
        }
    }
    if unknown.is_empty() {
        return Ok(());
    }
    let reason = format!(
        "is not a query parameter of this request (it takes {})",
        taken.join(", ")
    );
    Err(ApiError::invalid_fields(
        unknown
            .into_iter()
            .map(|name| FieldError::new(name, reason.clone()))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserName;

    #[test]
    fn a_missing_required_field_is_named() {
        let mut fields = Fields::default();
        assert!(fields.required("name", None, UserName::parse).is_none());
        assert_eq!(fields.errors, vec![FieldError::new("name", "is required")]);
    }

    #[test]
    fn an_absent_optional_field_is_no_error() {
        let mut fields = Fields::default();
        let absent = fields.optional("name", None, UserName::parse);
        assert!(matches!(absent, Some(None)));
        assert!(fields.errors.is_empty());
    }

    #[test]
    fn every_bad_field_is_kept() {
        let mut fields = Fields::default();
        fields.required("name", Some(""), UserName::parse);
        fields.required("password", Some(""), candidate);
        let named: Vec<&str> = fields.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(named, ["name", "password"]);
    }
}

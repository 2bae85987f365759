//! JSON in and out. In: a body guard whose every failure is a precise
//! problem response: 415 for another media type, 413 over the size limit,
//! 400 for malformed JSON, 422 naming the field whose value has the wrong
//! type. Out: a body that ends with a newline, so that what `curl` prints
//! does not run into the shell prompt.

use std::io::Cursor;

use rocket::data::{self, Data, FromData, ToByteUnit};
use rocket::http::{ContentType, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::problem::{to_json_line, ApiError};
use crate::domain::FieldError;

/// The default limit when `Rocket.toml` sets none for `json`.
const DEFAULT_LIMIT_KIB: u64 = 16;

pub struct JsonBody<T>(pub T);

/// A JSON answer, `application/json`, ending with a newline.
pub struct Json<T>(pub T);

/// A body that only says what happened: `{"message": …}`.
#[derive(Serialize)]
pub(super) struct Message {
    pub(super) message: &'static str,
}

impl<'r, T: Serialize> Responder<'r, 'static> for Json<T> {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let body = to_json_line(&self.0)?;
        Response::build()
            .header(ContentType::JSON)
            .sized_body(body.len(), Cursor::new(body))
            .ok()
    }
}

/// The fields a body may carry. Any other is refused (`422`, naming it),
/// so that a misspelt field cannot silently miss; but those in `IGNORED`,
/// which a client that sends back what it read may send, pass unread.
pub(super) trait BodyFields {
    const FIELDS: &'static [&'static str];
    const IGNORED: &'static [&'static str] = &[];
}

#[rocket::async_trait]
impl<'r, T: DeserializeOwned + BodyFields> FromData<'r> for JsonBody<T> {
    type Error = ApiError;

    async fn from_data(request: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        match parse(request, data).await {
            Ok(value) => data::Outcome::Success(JsonBody(value)),
            Err(error) => data::Outcome::Error((Status::BadRequest, error)),
        }
    }
}

async fn parse<T: DeserializeOwned + BodyFields>(
    request: &Request<'_>,
    data: Data<'_>,
) -> Result<T, ApiError> {
    if !request.content_type().is_some_and(|media| media.is_json()) {
        return Err(ApiError::UnsupportedMediaType(
            "the body must be JSON, sent with Content-Type: application/json".into(),
        ));
    }
    let limit = request
        .limits()
        .get("json")
        .unwrap_or(DEFAULT_LIMIT_KIB.kibibytes());
    let body =
        data.open(limit).into_bytes().await.map_err(|error| {
            ApiError::BadRequest(format!("the body could not be read: {error}"))
        })?;
    if !body.is_complete() {
        return Err(ApiError::PayloadTooLarge(format!(
            "the body exceeds {limit}"
        )));
    }
    // serde would also read a struct from a JSON array; only objects are bodies.
    if body.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::invalid_fields(vec![FieldError::new(
            "body",
            "must be a JSON object",
        )]));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(&body);
    let fields: BodyObject =
        serde_path_to_error::deserialize(&mut deserializer).map_err(into_api_error)?;
    deserializer
        .end()
        .map_err(|error| ApiError::BadRequest(format!("malformed JSON: {error}")))?;
    let repeated = fields
        .repeated
        .into_iter()
        .map(|key| FieldError::new(key, "appears more than once; send each field once"));
    let unknown = fields
        .object
        .keys()
        .filter(|key| !T::FIELDS.contains(&key.as_str()) && !T::IGNORED.contains(&key.as_str()))
        .map(|key| {
            FieldError::new(
                key.clone(),
                format!(
                    "is not a field of this request (it takes {})",
                    T::FIELDS.join(", ")
                ),
            )
        });
    let mistakes: Vec<FieldError> = repeated.chain(unknown).collect();
    if !mistakes.is_empty() {
        return Err(ApiError::invalid_fields(mistakes));
    }
    serde_path_to_error::deserialize(serde_json::Value::Object(fields.object))
        .map_err(into_api_error)
}

/// A body's top-level object, and the keys it holds more than once: JSON
/// leaves a repeated key's meaning open (parsers differ on which one wins),
/// so a body that repeats one is refused rather than read one way here and
/// another way by a proxy in front.
struct BodyObject {
    object: serde_json::Map<String, serde_json::Value>,
    repeated: Vec<String>,
}

impl<'de> serde::Deserialize<'de> for BodyObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(BodyObjectVisitor)
    }
}

struct BodyObjectVisitor;

impl<'de> serde::de::Visitor<'de> for BodyObjectVisitor {
    type Value = BodyObject;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<BodyObject, A::Error> {
        let mut fields = BodyObject {
            object: serde_json::Map::new(),
            repeated: Vec::new(),
        };
        while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
            if fields.object.contains_key(&key) {
                if !fields.repeated.contains(&key) {
                    fields.repeated.push(key);
                }
            } else {
                fields.object.insert(key, value);
            }
        }
        Ok(fields)
    }
}

fn into_api_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    if inner.is_data() {
        ApiError::invalid_fields(vec![FieldError::new(path, strip_position(&inner))])
    } else if strip_position(&inner) == "recursion limit exceeded" {
        // Well-formed JSON, nested deeper than the parser follows (128).
        ApiError::invalid_fields(vec![FieldError::new(path, "nests too deeply")])
    } else {
        ApiError::BadRequest(format!("malformed JSON: {inner}"))
    }
}

/// serde_json appends " at line L column C", which means nothing once the
/// field is named.
fn strip_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message,
    }
}

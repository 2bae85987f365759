//! `/api/users`: create, read, update, delete and list accounts.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rocket::response::status::Created;
use rocket::serde::json::Json;
use rocket::{delete, get, patch, post, put, routes, Route};
use serde::{Deserialize, Serialize};

use super::auth::MaybeAuthenticated;
use super::json::JsonBody;
use super::problem::ApiError;
use crate::accounts::{Accounts, NewUser, Proof};
use crate::domain::{parse_field, FieldError, Password, User, UserEmail, UserId, UserName};
use crate::store::{ListQuery, RedisConn};

pub fn routes() -> Vec<Route> {
    routes![
        post_user,
        get_user,
        put_user,
        patch_user_password,
        delete_user,
        get_users
    ]
}

pub(super) type Body<T> = Result<JsonBody<T>, ApiError>;

/// Absent fields are `None`, so the answer can name every missing one.
#[derive(Deserialize)]
struct UserData {
    name: Option<String>,
    email: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
struct PasswordChangeData {
    password: Option<String>,
    new_password: Option<String>,
}

#[derive(Deserialize)]
struct PasswordData {
    password: Option<String>,
}

#[post("/users", data = "<body>")]
async fn post_user(
    accounts: Accounts<'_>,
    body: Body<UserData>,
) -> Result<Created<Json<User>>, ApiError> {
    let JsonBody(data) = body?;
    let mut errors = Vec::new();
    let name = parse_field(&mut errors, "name", data.name.as_deref(), UserName::parse);
    let email = parse_field(
        &mut errors,
        "email",
        data.email.as_deref(),
        UserEmail::parse,
    );
    let password = parse_field(
        &mut errors,
        "password",
        data.password.as_deref(),
        Password::parse,
    );
    let (Some(name), Some(email), Some(password)) = (name, email, password) else {
        return Err(ApiError::invalid_fields(errors));
    };
    let user = accounts
        .sign_up(NewUser {
            name,
            email,
            password,
        })
        .await?;
    Ok(Created::new(format!("/api/users/{}", user.id)).body(Json(user)))
}

/// `user` is an id when it parses as a UUID, else an email. One route for
/// both: a UUID-typed route for ids would forward every email to a second
/// route, and Rocket logs a warning line for each forward.
#[get("/users/<user>")]
async fn get_user(user: &str, conn: RedisConn) -> Result<Json<User>, ApiError> {
    let found = match UserId::parse(user) {
        Some(id) => conn
            .public_user_by_id(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("id {id} not found")))?,
        None => {
            let not_found =
                || ApiError::NotFound(format!("user {} not found", UserEmail::normalize(user)));
            let email = UserEmail::parse(user).map_err(|_| not_found())?;
            conn.public_user_by_email(&email)
                .await?
                .ok_or_else(not_found)?
        }
    };
    Ok(Json(found))
}

/// Authenticated by the current password in the body, or by a Bearer
/// session of the same user.
#[put("/users/<id>", data = "<body>")]
async fn put_user(
    id: &str,
    caller: MaybeAuthenticated,
    accounts: Accounts<'_>,
    body: Body<UserData>,
) -> Result<Json<User>, ApiError> {
    let id = parse_id(id)?;
    let JsonBody(data) = body?;
    let mut errors = Vec::new();
    let name = parse_field(&mut errors, "name", data.name.as_deref(), UserName::parse);
    let email = parse_field(
        &mut errors,
        "email",
        data.email.as_deref(),
        UserEmail::parse,
    );
    let proof = proof(&mut errors, caller, id, data.password.as_deref())?;
    let (Some(name), Some(email), Some(proof)) = (name, email, proof) else {
        return Err(ApiError::invalid_fields(errors));
    };
    Ok(Json(accounts.update_profile(id, proof, name, email).await?))
}

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

#[patch("/users/<id>", data = "<body>")]
async fn patch_user_password(
    id: &str,
    caller: MaybeAuthenticated,
    accounts: Accounts<'_>,
    body: Body<PasswordChangeData>,
) -> Result<Json<Message>, ApiError> {
    let id = parse_id(id)?;
    let JsonBody(data) = body?;
    let mut errors = Vec::new();
    let proof = proof(&mut errors, caller, id, data.password.as_deref())?;
    let missing_new_password = data.new_password.is_none();
    let new_password = parse_field(
        &mut errors,
        "new_password",
        data.new_password.as_deref(),
        Password::parse,
    );
    let (Some(proof), Some(new_password)) = (proof, new_password) else {
        let mut error = ApiError::invalid_fields(errors);
        if missing_new_password {
            if let ApiError::Validation { detail, .. } = &mut error {
                *detail = "Password not provided".into();
            }
        }
        return Err(error);
    };
    accounts.change_password(id, proof, new_password).await?;
    Ok(Json(Message {
        message: "Password updated",
    }))
}

/// With a Bearer session of the user, no body is needed.
#[delete("/users/<id>", data = "<body>")]
async fn delete_user(
    id: &str,
    caller: MaybeAuthenticated,
    accounts: Accounts<'_>,
    body: Body<PasswordData>,
) -> Result<Json<User>, ApiError> {
    let id = parse_id(id)?;
    let password = match (&caller.0, body) {
        (Some(_), _) => None,
        (None, body) => body?.0.password,
    };
    let mut errors = Vec::new();
    let Some(proof) = proof(&mut errors, caller, id, password.as_deref())? else {
        return Err(ApiError::invalid_fields(errors));
    };
    Ok(Json(accounts.delete(id, proof).await?))
}

/// The caller's session when there is one (403 if it is another user's),
/// else the `password` field, which is then required.
fn proof(
    errors: &mut Vec<FieldError>,
    caller: MaybeAuthenticated,
    id: UserId,
    password: Option<&str>,
) -> Result<Option<Proof>, ApiError> {
    if caller.0.is_some() {
        return caller.proof_for(id);
    }
    Ok(parse_field(errors, "password", password, candidate).map(Proof::Password))
}

#[derive(Serialize)]
struct UserList {
    users: Vec<User>,
    total: usize,
    next: Option<String>,
}

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;

#[get("/users?<limit>&<after>&<prefix>")]
async fn get_users(
    limit: Option<&str>,
    after: Option<&str>,
    prefix: Option<&str>,
    conn: RedisConn,
) -> Result<Json<UserList>, ApiError> {
    let mut errors = Vec::new();
    let limit = match limit {
        None => Some(DEFAULT_PAGE),
        Some(raw) => parse_field(&mut errors, "limit", Some(raw), parse_limit),
    };
    let after = match after {
        None => Some(None),
        Some(raw) => parse_field(&mut errors, "after", Some(raw), decode_cursor).map(Some),
    };
    let (Some(limit), Some(after)) = (limit, after) else {
        return Err(ApiError::invalid_fields(errors));
    };
    let query = ListQuery {
        prefix: prefix.map(UserEmail::normalize).unwrap_or_default(),
        after,
        limit,
    };
    let page = conn.list_users(&query).await?;
    Ok(Json(UserList {
        users: page.users,
        total: page.total,
        next: page.next.as_deref().map(encode_cursor),
    }))
}

fn parse_limit(raw: &str) -> Result<usize, String> {
    match raw.parse::<usize>() {
        Ok(limit) if (1..=MAX_PAGE).contains(&limit) => Ok(limit),
        _ => Err(format!("must be a whole number from 1 to {MAX_PAGE}")),
    }
}

/// A cursor is the last index member of a page, opaque to clients.
fn encode_cursor(member: &str) -> String {
    URL_SAFE_NO_PAD.encode(member)
}

fn decode_cursor(raw: &str) -> Result<String, String> {
    URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|member| crate::store::parse_index_member(member).is_some())
        .ok_or_else(|| "is not a cursor from a previous page's next".into())
}

/// An id in the path that is not a UUID names no user.
pub(super) fn parse_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).ok_or_else(|| ApiError::NotFound(format!("id {raw} not found")))
}

/// A password offered as proof of identity: any non-empty string.
pub(super) fn candidate(raw: &str) -> Result<Password, String> {
    if raw.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(Password::candidate(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips() {
        let member = format!("jo@m.co\0{}", UserId::generate());
        assert_eq!(decode_cursor(&encode_cursor(&member)), Ok(member));
    }

    #[test]
    fn a_forged_cursor_is_rejected() {
        assert!(decode_cursor("not base64!").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("no separator")).is_err());
    }

    #[test]
    fn limits_outside_1_to_1000_are_rejected() {
        assert!(parse_limit("0").is_err());
        assert!(parse_limit("1001").is_err());
        assert!(parse_limit("ten").is_err());
        assert_eq!(parse_limit("1000"), Ok(1000));
    }

    #[test]
    fn field_errors_name_their_field() {
        let mut errors = Vec::new();
        assert!(parse_field(&mut errors, "name", None, UserName::parse).is_none());
        assert_eq!(errors, vec![FieldError::new("name", "is required")]);
    }
}

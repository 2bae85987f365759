//! `/api/users`: create, read, update, delete and list accounts.

use std::sync::Arc;

use rocket::http::uri::Origin;
use rocket::response::status::{Accepted, Created};
use rocket::{delete, get, patch, post, put, routes, Responder, Route, State};
use serde::{Deserialize, Serialize};

use super::fields::{only_query_parameters, Fields};
use super::guards::Bearer;
use super::json::{BodyFields, Json, JsonBody, Message};
use super::problem::ApiError;
use crate::accounts::{AccountError, Accounts, Caller, Client, NewUser, SignedUp};
use crate::domain::{Password, User, UserEmail, UserId, UserName};

pub fn routes() -> Vec<Route> {
    routes![
        post_user,
        get_user,
        put_user,
        patch_user_password,
        delete_user,
        get_users,
        post_user_disable,
        post_user_enable
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

impl BodyFields for UserData {
    const FIELDS: &'static [&'static str] = &["name", "email", "password"];
}

/// The body of a `PUT`: a user's fields, and the read-only ones a client
/// that sends back what it read may carry, ignored.
#[derive(Deserialize)]
#[serde(transparent)]
struct ProfileData(UserData);

impl BodyFields for ProfileData {
    const FIELDS: &'static [&'static str] = UserData::FIELDS;
    const IGNORED: &'static [&'static str] =
        &["id", "created", "updated", "disabled", "email_verified"];
}

#[derive(Deserialize)]
struct PasswordChangeData {
    password: Option<String>,
    new_password: Option<String>,
}

impl BodyFields for PasswordChangeData {
    const FIELDS: &'static [&'static str] = &["password", "new_password"];
}

#[derive(Deserialize)]
struct PasswordData {
    password: Option<String>,
}

impl BodyFields for PasswordData {
    const FIELDS: &'static [&'static str] = &["password"];
}

/// The sign-up in `data`, or every invalid field of it. A valid password
/// is judged for strength even when other fields are invalid, so that the
/// answer names all of them at once.
async fn new_user(accounts: &Accounts, data: UserData) -> Result<NewUser, ApiError> {
    let mut fields = Fields::default();
    let name = fields.required("name", data.name.as_deref(), UserName::parse);
    let email = fields.required("email", data.email.as_deref(), UserEmail::parse);
    let password = fields.required("password", data.password.as_deref(), Password::parse);
    match (name, email, password) {
        (Some(name), Some(email), Some(password)) => Ok(NewUser {
            name,
            email,
            password,
        }),
        (name, email, Some(password)) => {
            if let Some(reason) = accounts
                .weakness_of(&password, email.as_ref(), name.as_ref())
                .await?
            {
                fields.invalid("password", reason);
            }
            Err(fields.into_error())
        }
        _ => Err(fields.into_error()),
    }
}

/// A new name and email, and the password that proves the caller may set
/// them, unless the caller's credential does.
struct ProfileUpdate {
    name: UserName,
    email: UserEmail,
    password: Option<Password>,
}

impl ProfileUpdate {
    fn parse(data: UserData, caller: &Caller) -> Result<Self, ApiError> {
        let mut fields = Fields::default();
        let name = fields.required("name", data.name.as_deref(), UserName::parse);
        let email = fields.required("email", data.email.as_deref(), UserEmail::parse);
        let password = fields.proof_password(caller, data.password.as_deref());
        match (name, email, password) {
            (Some(name), Some(email), Some(password)) => Ok(Self {
                name,
                email,
                password,
            }),
            _ => Err(fields.into_error()),
        }
    }
}

/// A new password, and the current one unless the caller's credential
/// stands in for it.
struct PasswordChange {
    new_password: Password,
    password: Option<Password>,
}

impl PasswordChange {
    fn parse(data: PasswordChangeData, caller: &Caller) -> Result<Self, ApiError> {
        let mut fields = Fields::default();
        let password = fields.proof_password(caller, data.password.as_deref());
        let new_password = fields.required(
            "new_password",
            data.new_password.as_deref(),
            Password::parse,
        );
        match (password, new_password) {
            (Some(password), Some(new_password)) => Ok(Self {
                new_password,
                password,
            }),
            _ if data.new_password.is_none() => {
                Err(fields.into_error_saying("Password not provided"))
            }
            _ => Err(fields.into_error()),
        }
    }
}

#[post("/users", data = "<body>")]
async fn post_user(
    caller: Result<Caller, ApiError>,
    accounts: &State<Arc<Accounts>>,
    body: Body<UserData>,
) -> Result<SignUpReply, ApiError> {
    let caller = caller?;
    accounts.admit_sign_up(&caller)?;
    let new_user = new_user(accounts, body?.0).await?;
    Ok(match accounts.sign_up(&caller, new_user).await? {
        SignedUp::Created(user) => {
            SignUpReply::Created(Created::new(format!("/api/users/{}", user.id)).body(Json(user)))
        }
        SignedUp::Accepted => SignUpReply::Accepted(Accepted(Json(Message {
            message: "Accepted: a mail to the address tells what to do next",
        }))),
    })
}

/// `201` with the user, or, with `SIGNUP_EXISTING=notify`, the same `202`
/// for every email.
#[derive(Responder)]
enum SignUpReply {
    Created(Created<Json<User>>),
    Accepted(Accepted<Json<Message>>),
}

/// `user` is an id when it parses as a UUID, else an email. One route for
/// both: a UUID-typed route for ids would forward every email to a second
/// route, and Rocket logs a warning line for each forward.
#[get("/users/<user>")]
async fn get_user(
    user: &str,
    bearer: Bearer<'_>,
    accounts: &Accounts,
) -> Result<Json<User>, ApiError> {
    let found = match UserId::parse(user) {
        Some(id) => accounts.user_for_bearer(bearer.0, id).await?,
        None => {
            let caller = accounts.caller_of(bearer.0).await?;
            // Who may look up emails at all, before what the email is.
            caller.require_email_lookup()?;
            let email = UserEmail::parse(user)
                .map_err(|_| caller.no_such_email(UserEmail::normalize(user)))?;
            accounts.user_by_email(&caller, &email).await?
        }
    };
    Ok(Json(found))
}

/// Proven by the current password in the body, by a session of the same
/// user, or by an admin key.
#[put("/users/<id>", data = "<body>")]
async fn put_user(
    id: &str,
    caller: Result<Caller, ApiError>,
    client: Client,
    accounts: &Accounts,
    body: Body<ProfileData>,
) -> Result<Json<User>, ApiError> {
    let id = parse_id(id)?;
    let caller = caller?;
    let update = ProfileUpdate::parse(body?.0 .0, &caller)?;
    let user = accounts
        .update_profile(
            &caller,
            &client.address,
            id,
            update.password,
            update.name,
            update.email,
        )
        .await?;
    Ok(Json(user))
}

#[patch("/users/<id>", data = "<body>")]
async fn patch_user_password(
    id: &str,
    caller: Result<Caller, ApiError>,
    client: Client,
    accounts: &Accounts,
    body: Body<PasswordChangeData>,
) -> Result<Json<Message>, ApiError> {
    let id = parse_id(id)?;
    let caller = caller?;
    let change = PasswordChange::parse(body?.0, &caller)?;
    accounts
        .change_password(
            &caller,
            &client.address,
            id,
            change.password,
            change.new_password,
        )
        .await?;
    Ok(Json(Message {
        message: "Password updated",
    }))
}

/// With a credential that proves enough, no body is needed.
#[delete("/users/<id>", data = "<body>")]
async fn delete_user(
    id: &str,
    caller: Result<Caller, ApiError>,
    client: Client,
    accounts: &Accounts,
    body: Body<PasswordData>,
) -> Result<Json<User>, ApiError> {
    let id = parse_id(id)?;
    let caller = caller?;
    let password = match (&caller, body) {
        (Caller::Anonymous(_), body) => body?.0.password,
        (_, body) => body.ok().and_then(|body| body.0.password),
    };
    let mut fields = Fields::default();
    let Some(password) = fields.proof_password(&caller, password.as_deref()) else {
        return Err(fields.into_error());
    };
    let user = accounts
        .delete(&caller, &client.address, id, password)
        .await?;
    Ok(Json(user))
}

/// Ends the user's sessions and refuses its logins until it is enabled.
#[post("/users/<id>/disable")]
async fn post_user_disable(
    id: &str,
    caller: Result<Caller, ApiError>,
    accounts: &Accounts,
) -> Result<Json<User>, ApiError> {
    let id = parse_id(id)?;
    Ok(Json(accounts.set_disabled(&caller?, id, true).await?))
}

#[post("/users/<id>/enable")]
async fn post_user_enable(
    id: &str,
    caller: Result<Caller, ApiError>,
    accounts: &Accounts,
) -> Result<Json<User>, ApiError> {
    let id = parse_id(id)?;
    Ok(Json(accounts.set_disabled(&caller?, id, false).await?))
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
    uri: &Origin<'_>,
    caller: Result<Caller, ApiError>,
    accounts: &Accounts,
) -> Result<Json<UserList>, ApiError> {
    let caller = caller?;
    // Who may list comes first: a caller who may not learns nothing of the query.
    caller.require_reader()?;
    only_query_parameters(uri, &["limit", "after", "prefix"])?;
    let mut fields = Fields::default();
    let Some(limit) = fields.optional("limit", limit, parse_limit) else {
        return Err(fields.into_error());
    };
    let prefix = prefix.map(UserEmail::normalize).unwrap_or_default();
    let page = accounts
        .list_users(&caller, prefix, after, limit.unwrap_or(DEFAULT_PAGE))
        .await?;
    Ok(Json(UserList {
        users: page.users,
        total: page.total,
        next: page.next,
    }))
}

fn parse_limit(raw: &str) -> Result<usize, String> {
    match raw.parse::<usize>() {
        Ok(limit) if (1..=MAX_PAGE).contains(&limit) => Ok(limit),
        _ => Err(format!("must be a whole number from 1 to {MAX_PAGE}")),
    }
}

/// An id in the path that is not a UUID names no user.
pub(super) fn parse_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).ok_or_else(|| AccountError::NotFound(raw.to_owned()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_1_to_1000_are_rejected() {
        assert!(parse_limit("0").is_err());
        assert!(parse_limit("1001").is_err());
        assert!(parse_limit("ten").is_err());
        assert_eq!(parse_limit("1000"), Ok(1000));
    }
}

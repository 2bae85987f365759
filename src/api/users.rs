//! `/api/users`: create, read, update, delete and list accounts.

use rocket::response::status::Created;
use rocket::serde::json::Json;
use rocket::{delete, get, patch, post, put, routes, Route};
use serde::{Deserialize, Serialize};

use super::fields::Fields;
use super::guards::MaybeAuthenticated;
use super::json::JsonBody;
use super::problem::ApiError;
use crate::accounts::{AccountError, Accounts, NewUser, Proof};
use crate::domain::{Password, User, UserEmail, UserId, UserName};

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
pub(super) type Caller = Result<MaybeAuthenticated, ApiError>;

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

impl TryFrom<UserData> for NewUser {
    type Error = ApiError;

    fn try_from(data: UserData) -> Result<Self, ApiError> {
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
            _ => Err(fields.into_error()),
        }
    }
}

/// A new name and email, and the proof that the caller may set them.
struct ProfileUpdate {
    name: UserName,
    email: UserEmail,
    proof: Proof,
}

impl ProfileUpdate {
    fn parse(data: UserData, caller: &MaybeAuthenticated, id: UserId) -> Result<Self, ApiError> {
        let mut fields = Fields::default();
        let name = fields.required("name", data.name.as_deref(), UserName::parse);
        let email = fields.required("email", data.email.as_deref(), UserEmail::parse);
        let proof = fields.proof(caller, id, data.password.as_deref())?;
        match (name, email, proof) {
            (Some(name), Some(email), Some(proof)) => Ok(Self { name, email, proof }),
            _ => Err(fields.into_error()),
        }
    }
}

/// A new password, and the proof that the caller may set it.
struct PasswordChange {
    new_password: Password,
    proof: Proof,
}

impl PasswordChange {
    fn parse(
        data: PasswordChangeData,
        caller: &MaybeAuthenticated,
        id: UserId,
    ) -> Result<Self, ApiError> {
        let mut fields = Fields::default();
        let proof = fields.proof(caller, id, data.password.as_deref())?;
        let new_password = fields.required(
            "new_password",
            data.new_password.as_deref(),
            Password::parse,
        );
        match (proof, new_password) {
            (Some(proof), Some(new_password)) => Ok(Self {
                new_password,
                proof,
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
    accounts: &Accounts,
    body: Body<UserData>,
) -> Result<Created<Json<User>>, ApiError> {
    let new_user = NewUser::try_from(body?.0)?;
    let user = accounts.sign_up(new_user).await?;
    Ok(Created::new(format!("/api/users/{}", user.id)).body(Json(user)))
}

/// `user` is an id when it parses as a UUID, else an email. One route for
/// both: a UUID-typed route for ids would forward every email to a second
/// route, and Rocket logs a warning line for each forward.
#[get("/users/<user>")]
async fn get_user(user: &str, accounts: &Accounts) -> Result<Json<User>, ApiError> {
    let found = match UserId::parse(user) {
        Some(id) => accounts.user(id).await?,
        None => {
            let email = UserEmail::parse(user)
                .map_err(|_| AccountError::EmailNotFound(UserEmail::normalize(user)))?;
            accounts.user_by_email(&email).await?
        }
    };
    Ok(Json(found))
}

/// Authenticated by the current password in the body, or by a Bearer
/// session of the same user.
#[put("/users/<id>", data = "<body>")]
async fn put_user(
    id: &str,
    caller: Caller,
    accounts: &Accounts,
    body: Body<UserData>,
) -> Result<Json<User>, ApiError> {
    let id = parse_id(id)?;
    let update = ProfileUpdate::parse(body?.0, &caller?, id)?;
    let user = accounts
        .update_profile(id, update.proof, update.name, update.email)
        .await?;
    Ok(Json(user))
}

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

#[patch("/users/<id>", data = "<body>")]
async fn patch_user_password(
    id: &str,
    caller: Caller,
    accounts: &Accounts,
    body: Body<PasswordChangeData>,
) -> Result<Json<Message>, ApiError> {
    let id = parse_id(id)?;
    let change = PasswordChange::parse(body?.0, &caller?, id)?;
    accounts
        .change_password(id, change.proof, change.new_password)
        .await?;
    Ok(Json(Message {
        message: "Password updated",
    }))
}

/// With a Bearer session of the user, no body is needed.
#[delete("/users/<id>", data = "<body>")]
async fn delete_user(
    id: &str,
    caller: Caller,
    accounts: &Accounts,
    body: Body<PasswordData>,
) -> Result<Json<User>, ApiError> {
    let id = parse_id(id)?;
    let caller = caller?;
    let password = match (&caller.0, body) {
        (Some(_), _) => None,
        (None, body) => body?.0.password,
    };
    let mut fields = Fields::default();
    let Some(proof) = fields.proof(&caller, id, password.as_deref())? else {
        return Err(fields.into_error());
    };
    Ok(Json(accounts.delete(id, proof).await?))
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
    accounts: &Accounts,
) -> Result<Json<UserList>, ApiError> {
    let mut fields = Fields::default();
    let Some(limit) = fields.optional("limit", limit, parse_limit) else {
        return Err(fields.into_error());
    };
    let prefix = prefix.map(UserEmail::normalize).unwrap_or_default();
    let page = accounts
        .list_users(prefix, after, limit.unwrap_or(DEFAULT_PAGE))
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

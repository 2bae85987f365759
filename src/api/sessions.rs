//! `/api/sessions` (log in, check, log out) and a user's own sessions and
//! activity under `/api/users/{id}`.

use chrono::{DateTime, Utc};
use rocket::http::Status;
use rocket::response::status::Created;
use rocket::serde::json::Json;
use rocket::{delete, get, post, routes, Route};
use serde::{Deserialize, Serialize};

use super::auth::Authenticated;
use super::json::JsonBody;
use super::problem::ApiError;
use super::users::{candidate, parse_id, Body};
use crate::accounts::{Accounts, Client};
use crate::domain::{parse_field, SessionId, User, UserEmail};
use crate::store::{Event, RedisConn, SessionRecord};

pub fn routes() -> Vec<Route> {
    routes![
        post_session,
        get_current_session,
        delete_current_session,
        get_user_sessions,
        delete_user_session,
        delete_user_sessions,
        get_user_activity
    ]
}

#[derive(Deserialize)]
struct LoginData {
    email: Option<String>,
    password: Option<String>,
}

#[derive(Serialize)]
struct SessionCreated {
    token: String,
    expires_at: DateTime<Utc>,
    user: User,
}

#[post("/sessions", data = "<body>")]
async fn post_session(
    accounts: Accounts<'_>,
    client: Client,
    body: Body<LoginData>,
) -> Result<Created<Json<SessionCreated>>, ApiError> {
    let JsonBody(data) = body?;
    let mut errors = Vec::new();
    let email = parse_field(
        &mut errors,
        "email",
        data.email.as_deref(),
        UserEmail::parse,
    );
    let password = parse_field(&mut errors, "password", data.password.as_deref(), candidate);
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::invalid_fields(errors));
    };
    let session = accounts.log_in(email, password, client).await?;
    Ok(
        Created::new("/api/sessions/current").body(Json(SessionCreated {
            token: session.token.expose().to_owned(),
            expires_at: session.expires_at,
            user: session.user,
        })),
    )
}

#[derive(Serialize)]
struct CurrentSession {
    user: User,
    expires_at: DateTime<Utc>,
}

#[get("/sessions/current")]
async fn get_current_session(
    caller: Authenticated,
    accounts: Accounts<'_>,
    conn: RedisConn,
) -> Result<Json<CurrentSession>, ApiError> {
    let session = caller.0;
    let user = conn
        .public_user_by_id(session.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    Ok(Json(CurrentSession {
        user,
        expires_at: accounts.session_ends_at(&session),
    }))
}

#[delete("/sessions/current")]
async fn delete_current_session(
    caller: Authenticated,
    mut conn: RedisConn,
) -> Result<Status, ApiError> {
    let session = caller.0;
    conn.revoke_session(session.user_id, session.id).await?;
    Ok(Status::NoContent)
}

/// A session as its user sees it: never the token.
#[derive(Serialize)]
struct SessionView {
    id: SessionId,
    created: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    ip: String,
    user_agent: String,
    current: bool,
}

#[get("/users/<id>/sessions")]
async fn get_user_sessions(
    id: &str,
    caller: Authenticated,
    accounts: Accounts<'_>,
    mut conn: RedisConn,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let current = caller.acting_on(parse_id(id)?)?;
    let sessions = conn.sessions_of(current.user_id).await?;
    Ok(Json(
        sessions
            .into_iter()
            .map(|session: SessionRecord| SessionView {
                current: session.id == current.id,
                expires_at: accounts.session_ends_at(&session),
                id: session.id,
                created: session.created,
                last_seen: session.last_seen,
                ip: session.ip,
                user_agent: session.user_agent,
            })
            .collect(),
    ))
}

#[delete("/users/<id>/sessions/<session_id>")]
async fn delete_user_session(
    id: &str,
    session_id: &str,
    caller: Authenticated,
    mut conn: RedisConn,
) -> Result<Status, ApiError> {
    let current = caller.acting_on(parse_id(id)?)?;
    let not_found = || ApiError::NotFound(format!("session {session_id} not found"));
    let session_id = SessionId::parse(session_id).ok_or_else(not_found)?;
    if conn.revoke_session(current.user_id, session_id).await? {
        Ok(Status::NoContent)
    } else {
        Err(not_found())
    }
}

#[delete("/users/<id>/sessions?<keep_current>")]
async fn delete_user_sessions(
    id: &str,
    keep_current: Option<bool>,
    caller: Authenticated,
    mut conn: RedisConn,
) -> Result<Status, ApiError> {
    let current = caller.acting_on(parse_id(id)?)?;
    let keep = keep_current.unwrap_or(false).then(|| current.id.clone());
    conn.revoke_sessions(current.user_id, keep).await?;
    Ok(Status::NoContent)
}

#[get("/users/<id>/activity")]
async fn get_user_activity(
    id: &str,
    caller: Authenticated,
    conn: RedisConn,
) -> Result<Json<Vec<Event>>, ApiError> {
    let current = caller.acting_on(parse_id(id)?)?;
    Ok(Json(conn.activity(current.user_id).await?))
}
